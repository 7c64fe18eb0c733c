"""attache audit log and verify against the app served over TCP: an export is one read of the
log, and reads of the log are listed only when asked for (issue 9, item 10); a steered index
column fails verification, named (item 11)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from click.testing import CliRunner, Result
from sqlalchemy import func, select, update

from clients.cli import main
from server.audit.integrator import integrate
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


async def _export(member: Member, *args: str) -> list[dict[str, Any]]:
    """The exported events as the log commits to them (each entry also carries its id and
    leaf index)."""
    result = await _invoke(member, "audit", "log", "--format", "json", *args)
    assert result.exit_code == 0, result.output
    return [entry["event"] for entry in json.loads(result.output)]


async def _counts(world: World) -> tuple[int, int]:
    """(events that are not reads of the log, reads of the log). Key directory leaves are left
    out: the live server's integrator adds one whenever its round finds events, at a moment of
    its own (PROTOCOL.md §19.2)."""
    async with world.app.state.sessionmaker() as session:
        reads = AuditEvent.action == "audit.read"
        stmt = select(func.count()).select_from(AuditEvent)
        stmt = stmt.where(AuditEvent.action != "keys.directory")
        others = (await session.execute(stmt.where(~reads))).scalar_one()
        read = (await session.execute(stmt.where(reads))).scalar_one()
    return int(others), int(read)


def _not_directories(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["action"] != "keys.directory"]


async def test_an_export_is_one_read_and_does_not_list_reads(world: World, live: str) -> None:
    await world.nation("USA")
    alice = await world.member("alice", "USA")
    await alice.client.create_channel("liaison", "NATO SECRET")
    auditor = await world.member("audrey", None, roles=("auditor",))
    assert (await _invoke(auditor, "login")).exit_code == 0
    others, reads = await _counts(world)

    whole = await _export(auditor)
    exported = _not_directories(whole)
    directories = [len(whole) - len(exported)]
    first, after_first = await _counts(world)
    assert len(exported) == first == others
    assert all(e["action"] != "audit.read" for e in exported)
    assert after_first == reads + 1

    # Asking for far more than there is reads no further, and adds one read.
    whole = await _export(auditor, "--limit", "3000")
    exported = _not_directories(whole)
    directories.append(len(whole) - len(exported))
    second, after_second = await _counts(world)
    assert len(exported) == second == others
    assert after_second == reads + 2

    listed = await _export(auditor, "--action", "audit.read")
    returned = [e["details"]["returned"] for e in listed][-2:]
    assert returned == [others + directories[0], others + directories[1]]
    assert [e["details"]["query"]["limit"] for e in listed][-2:] == [1000, 1000]


async def test_verify_names_a_steered_column(world: World, live: str) -> None:
    await world.nation("USA")
    alice = await world.member("alice", "USA")
    await alice.client.create_channel("liaison", "NATO SECRET")
    auditor = await world.member("audrey", None, roles=("auditor",))
    async with world.app.state.sessionmaker() as session, session.begin():
        await integrate(session, world.app.state.audit_signer)
    assert (await _invoke(auditor, "login")).exit_code == 0
    verified = await _invoke(auditor, "audit", "verify")
    assert verified.exit_code == 0, verified.output
    assert "audit log verified" in verified.output

    async with world.app.state.sessionmaker() as session, session.begin():
        target = (
            await session.execute(select(AuditEvent).where(AuditEvent.action == "channel.create"))
        ).scalar_one()
        await session.execute(
            update(AuditEvent).where(AuditEvent.id == target.id).values(decision="deny")
        )
    # What a query for denials returns is what the leaves say: nothing was denied.
    assert await _export(auditor, "--decision", "deny") == []
    failed = await _invoke(auditor, "audit", "verify")
    assert failed.exit_code == 1
    assert f"leaf {target.leaf_index}, event {target.id}" in failed.output
    assert "column decision says 'deny' but the logged event says 'allow'" in failed.output
    assert f"VERIFICATION FAILED (first bad leaf: {target.leaf_index})" in failed.output
