"""Message submits, committed together (``server.db.group``).

The request checks the message's form and signature on its own; the rest (the id's
uniqueness, the decision, the rows, the push) runs in a batch with the submits that arrived
meanwhile: their ids locked and read in one statement each, their messages and audit events
inserted together, one commit, then their pushes published in the order of their ``seq``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from protocol import envelopes
from protocol.catalog import Catalog
from server.auth.principal import Principal
from server.channels import repository as repo
from server.channels import service
from server.channels.delivery import push_of
from server.channels.models import Channel, Message
from server.db.engine import after_commit, serialise_all
from server.db.group import GroupCommit
from server.realtime.bus import InProcessBus


@dataclass(frozen=True)
class SubmitWork:
    principal: Principal
    catalog: Catalog
    channel: Channel
    message: envelopes.SealedMessage
    header: envelopes.MessageHeader
    roster_tag: str | None

    @property
    def key(self) -> str:
        return self.header.message_id

    async def __call__(
        self, session: AsyncSession, stored: Mapping[str, Message]
    ) -> service.Submitted:
        return await service.submit_message_in(
            session,
            self.principal,
            self.catalog,
            self.channel,
            self.message,
            self.header,
            existing=stored.get(self.header.message_id),
            roster_tag=self.roster_tag,
        )


async def _prepare(session: AsyncSession, works: Sequence[SubmitWork]) -> dict[str, Message]:
    """Lock the batch's message ids, then read those already stored, in one query."""
    ids = sorted(work.header.message_id for work in works)
    await serialise_all(session, [("message", i) for i in ids])
    return {m.id: m for m in await repo.stored_messages(session, ids)}


def submit_queue(
    sessionmaker: async_sessionmaker[AsyncSession],
    bus: InProcessBus,
    on_commit: Callable[[], object] | None = None,
) -> GroupCommit[service.Submitted]:
    async def publish_after_commit(
        session: AsyncSession, works: Sequence[SubmitWork], outcomes: Sequence[Any]
    ) -> None:
        created = [
            (outcome, work)
            for work, outcome in zip(works, outcomes, strict=True)
            if isinstance(outcome, service.Submitted) and outcome.created
        ]
        for submitted, work in sorted(created, key=lambda pair: pair[0].message.seq):
            push = await push_of(session, submitted, work.principal.device.certificate)
            after_commit(session, partial(bus.publish, push))

    return GroupCommit(sessionmaker, _prepare, publish_after_commit, on_commit=on_commit)
