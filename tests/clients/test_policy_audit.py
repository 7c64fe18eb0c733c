"""Coalition policy versions in the audit log, as auditors check them (issue 13, item 3;
PROTOCOL.md §18.6): the ``policy.publish`` leaves, in log order, form one chain (versions 1,
2, 3 ..., each naming the one before) and record the versions the server serves.

The server is played as a compromised one, on SQLite and PostgreSQL: a second publication of
a version (the successor shown to other nations), a gap, a version served other than the log
publishes it, and one served that the log never published. Each is named with its leaf by an
auditor of all nations and, since publications concern the whole coalition and every auditor
is shown them, by a nation-scoped one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from clients.sdk.audit import verify_log
from protocol.coalition import CoalitionPolicy
from server.audit import leaves, repository, service
from server.audit import log as audit
from server.audit.integrator import integrate
from server.audit.models import AuditEvent
from tests.clients.test_cli_audit import _invoke
from tests.clients.test_coalition_pinning import (
    _founded,
    _publish,
    _serve,
    _signed,
    _successor,
    _unpublish,
)
from tests.factories import Member, World


async def _integrated(world: World) -> None:
    async with world.app.state.sessionmaker() as session, session.begin():
        await integrate(session, world.app.state.audit_signer)


async def _publication_leaf(world: World, policy: CoalitionPolicy) -> int:
    """The leaf index of ``policy``'s publication, once integrated."""
    await _integrated(world)
    async with world.app.state.sessionmaker() as session:
        rows = (
            await session.execute(
                select(AuditEvent).where(
                    AuditEvent.action == "policy.publish",
                    AuditEvent.object_id == str(policy.policy_version),
                )
            )
        ).scalars()
        for row in rows:
            if json.loads(row.body)["details"]["digest"] == policy.digest_b64u:
                assert row.leaf_index is not None
                return row.leaf_index
    raise AssertionError(f"no publication of {policy.digest_b64u}")


async def _log_publication(world: World, policy: CoalitionPolicy, previous: str | None) -> int:
    """What a compromised server writes into its own log: a publication of its choosing."""
    async with world.app.state.sessionmaker() as session, session.begin():
        audit.record(
            session,
            actor=audit.OPERATOR_CLI,
            action="policy.publish",
            object_type="policy",
            object_id=str(policy.policy_version),
            details={
                "coalition": policy.coalition,
                "digest": policy.digest_b64u,
                "previous": previous,
            },
        )
    return await _publication_leaf(world, policy)


# --- the auditors --------------------------------------------------------------------------------


async def _auditors(world: World) -> tuple[Member, Member]:
    everyone = await world.member("audrey", None, roles=("auditor",))
    usa = await world.member("ursula", "USA", roles=("auditor",))
    return everyone, usa


async def test_auditors_verify_the_chain_and_nation_scoped_ones_see_it(
    world: World, live: str, tmp_path: Path
) -> None:
    c = await _founded(world)
    v2 = _successor(c.v1, groups={"DUO": ["FRA", "GBR", "USA"]})
    await _publish(world, _signed(world, v2, "USA", "GBR"))
    everyone, usa = await _auditors(world)
    leaves = [await _publication_leaf(world, c.v1), await _publication_leaf(world, v2)]
    for auditor, home in ((everyone, tmp_path / "all"), (usa, tmp_path / "usa")):
        report = await verify_log(auditor.client, home)
        assert report.ok, report.problems
        assert report.policy == [
            (1, c.v1.digest_b64u, leaves[0]),
            (2, v2.digest_b64u, leaves[1]),
        ]
    assert usa.user.nationality == "USA"
    # The nation-scoped auditor is shown the publications (the operator's, of no nation).
    assert (await _invoke(usa, "login")).exit_code == 0
    out = await _invoke(usa, "audit", "verify")
    assert out.exit_code == 0, out.output
    assert (
        "coalition policy: versions 1 to 2 published in the log as one chain, each as the "
        f"server serves it and validly signed (version 2: digest {v2.digest_b64u}, leaf "
        f"{leaves[1]})"
    ) in out.output


async def test_auditors_name_a_forked_chain_by_its_leaf(world: World, live: str) -> None:
    c = await _founded(world)
    v2 = _successor(c.v1, groups={"DUO": ["FRA", "GBR", "USA"]})
    other = _successor(c.v1, threshold=3)
    await _publish(world, _signed(world, v2, "USA", "GBR"))
    first = await _publication_leaf(world, v2)
    everyone, usa = await _auditors(world)
    # The server publishes another version 2 too (shown, say, to other nations' clients).
    fork = await _log_publication(world, other, c.v1.digest_b64u)
    for auditor in (everyone, usa):
        assert (await _invoke(auditor, "login")).exit_code == 0
        out = await _invoke(auditor, "audit", "verify")
        assert out.exit_code == 1, out.output
        assert (
            f"leaf {fork}: FORK: coalition policy version 2 is published again (digest "
            f"{other.digest_b64u}); leaf {first} published it first"
        ) in out.output
        assert f"VERIFICATION FAILED (first bad leaf: {fork})" in out.output


async def test_auditors_name_a_gap_and_a_version_served_other_than_logged(
    world: World, tmp_path: Path
) -> None:
    c = await _founded(world)
    v2 = _successor(c.v1, groups={"DUO": ["FRA", "GBR", "USA"]})
    v3 = _successor(v2, threshold=3)
    v4 = _successor(v3)
    await _publish(world, _signed(world, v2, "USA", "GBR"))
    logged = await _publication_leaf(world, v2)
    everyone, _ = await _auditors(world)
    # Version 2 served other than the log publishes it.
    shown = _successor(c.v1, threshold=3)
    await _serve(world, _signed(world, shown, "USA", "GBR"))
    report = await verify_log(everyone.client, tmp_path / "a")
    assert (
        f"leaf {logged}: the log publishes coalition policy version 2 with digest "
        f"{v2.digest_b64u}, but the server serves version 2 with digest {shown.digest_b64u}"
    ) in report.problems
    assert report.first_bad_index == logged
    # Version 4 published in the log, 3 never was: a gap.
    await _serve(world, _signed(world, v2, "USA", "GBR"))
    gap = await _log_publication(world, v4, v3.digest_b64u)
    report = await verify_log(everyone.client, tmp_path / "b")
    assert (
        f"leaf {gap}: coalition policy version 4 is published, but version 3 never was: a gap "
        "in the chain"
    ) in report.problems


async def test_auditors_name_a_version_served_that_the_log_never_published(
    world: World, tmp_path: Path
) -> None:
    c = await _founded(world)
    everyone, _ = await _auditors(world)
    v2 = _successor(c.v1, groups={"DUO": ["FRA", "GBR", "USA"]})
    await _serve(world, _signed(world, v2, "USA", "GBR"))
    await _integrated(world)
    report = await verify_log(everyone.client, tmp_path)
    assert (
        "coalition policy version 2 is served, but the audit log does not publish it (the "
        "server says: the audit log has no publication of coalition policy version 2)"
    ) in report.problems
    assert report.policy == [(1, c.v1.digest_b64u, await _publication_leaf(world, c.v1))]


async def test_a_publication_hidden_from_a_nation_scoped_auditor_is_named(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that shows a nation's auditor the publications as another nation's business
    (out of scope, as an older server did): the auditor finds none in the leaves it is
    shown, but the version the server serves proves its publication at a leaf below the
    checkpoint verified, which the auditor names. A version the log publishes that the server
    no longer serves is named too."""
    c = await _founded(world)
    _, usa = await _auditors(world)
    index = await _publication_leaf(world, c.v1)
    for module in (leaves, service, repository):
        monkeypatch.setattr(module, "COALITION_WIDE", frozenset())
    report = await verify_log(usa.client, tmp_path / "usa")
    assert report.policy == []
    assert (
        f"leaf {index}: publishes coalition policy version 1, but the server did not show it "
        "to you as one"
    ) in report.problems
    monkeypatch.undo()
    await _unpublish(world, 1)
    report = await verify_log(usa.client, tmp_path / "again")
    assert (
        f"leaf {index}: coalition policy version 1 is in the log, but the server does not serve it"
    ) in report.problems
