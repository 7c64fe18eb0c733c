"""attache audit log against the app served over TCP: an export is one read of the log, and
reads of the log are listed only when asked for (issue 9, item 10)."""

from __future__ import annotations

import asyncio
import json

from click.testing import CliRunner, Result
from sqlalchemy import func, select

from clients.cli import main
from server.audit.models import AuditEvent
from tests.factories import PASSPHRASE, Member, World


async def _invoke(member: Member, *args: str) -> Result:
    env = {
        "ATTACHE_HOME": str(member.keystore.home),
        "ATTACHE_PASSPHRASE": PASSPHRASE,
        "COLUMNS": "200",
        "NO_COLOR": "1",
    }
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, main, list(args), env=env, catch_exceptions=False)


async def _export(member: Member, *args: str) -> list[dict[str, object]]:
    result = await _invoke(member, "audit", "log", "--format", "json", *args)
    assert result.exit_code == 0, result.output
    return list(json.loads(result.output))


async def _counts(world: World) -> tuple[int, int]:
    """(events that are not reads of the log, reads of the log)."""
    async with world.app.state.sessionmaker() as session:
        reads = AuditEvent.action == "audit.read"
        stmt = select(func.count()).select_from(AuditEvent)
        others = (await session.execute(stmt.where(~reads))).scalar_one()
        read = (await session.execute(stmt.where(reads))).scalar_one()
    return int(others), int(read)


async def test_an_export_is_one_read_and_does_not_list_reads(world: World, live: str) -> None:
    await world.nation("USA")
    alice = await world.member("alice", "USA")
    await alice.client.create_channel("liaison", "NATO SECRET")
    auditor = await world.member("audrey", None, roles=("auditor",))
    assert (await _invoke(auditor, "login")).exit_code == 0
    others, reads = await _counts(world)

    exported = await _export(auditor)
    first, after_first = await _counts(world)
    assert len(exported) == first == others
    assert all(e["action"] != "audit.read" for e in exported)
    assert after_first == reads + 1

    # Asking for far more than there is reads no further, and adds one read.
    exported = await _export(auditor, "--limit", "3000")
    second, after_second = await _counts(world)
    assert len(exported) == second == others
    assert after_second == reads + 2

    listed = await _export(auditor, "--action", "audit.read")
    assert [e["details"]["returned"] for e in listed][-2:] == [others, others]
    assert [e["details"]["query"]["limit"] for e in listed][-2:] == [1000, 1000]
