"""The audit log: RFC 9162 tree, signed checkpoints, proofs, auditor scope, and tampering
caught by the auditor's own verification (clients.sdk.audit)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pymerkle import InmemoryTree
from sqlalchemy import delete, select, update

from clients.sdk import ApiError
from clients.sdk.audit import prove_event, verify_log
from protocol import checkpoint as notes
from protocol import keys
from server.audit import log as audit
from server.audit.integrator import integrate
from server.audit.models import AuditCheckpoint, AuditEvent, AuditLeaf, AuditNode
from tests.factories import Member, World


async def _integrate(world: World) -> AuditCheckpoint | None:
    async with world.app.state.sessionmaker() as session, session.begin():
        return await integrate(session, world.app.state.audit_signer)


async def _activity(world: World) -> tuple[Member, Member]:
    """Some real history: nations, users, devices, a channel; then the log is integrated."""
    await world.nation("USA")
    await world.nation("GBR")
    alice = await world.member("alice", "USA")
    await world.member("bob", "GBR")
    await alice.client.create_channel("liaison", "NATO SECRET")
    await alice.client.add_member("liaison", "bob")
    auditor = await world.member("audrey", None, roles=("auditor",))
    await _integrate(world)
    return alice, auditor


async def _event_at(world: World, index: int) -> AuditEvent:
    async with world.app.state.sessionmaker() as session:
        stmt = (
            select(AuditEvent)
            .join(AuditLeaf, AuditLeaf.event_id == AuditEvent.id)
            .where(AuditLeaf.index == index)
        )
        return (await session.execute(stmt)).scalar_one()


async def _verify(auditor: Member, home: Path) -> Any:
    return await verify_log(auditor.client, home)


async def test_a_clean_log_verifies_and_an_independent_library_agrees(
    world: World, tmp_path: Path
) -> None:
    _, auditor = await _activity(world)
    report = await _verify(auditor, tmp_path)
    assert report.ok, report.problems
    assert report.key_pinned_now
    assert report.size > 10
    # pymerkle, a third-party RFC 9162 implementation, computes the same root from the
    # exported leaves.
    page = await auditor.client.request(
        "GET", "/v1/audit/leaves", params={"start": 0, "end": report.size}
    )
    tree = InmemoryTree(algorithm="sha256")
    for leaf in page["leaves"]:
        tree.append_entry(leaf["data"].encode("utf-8"))
    assert tree.get_root() == report.root
    # Reading the log is itself audited.
    async with world.app.state.sessionmaker() as session:
        reads = (
            (await session.execute(select(AuditEvent).where(AuditEvent.action == "audit.read")))
            .scalars()
            .all()
        )
    assert {r.object_id for r in reads} >= {"leaves"}


async def test_a_second_verification_checks_consistency(world: World, tmp_path: Path) -> None:
    alice, auditor = await _activity(world)
    assert (await _verify(auditor, tmp_path)).ok
    await alice.client.create_channel("second", "NATO SECRET")
    await _integrate(world)
    report = await _verify(auditor, tmp_path)
    assert report.ok, report.problems
    assert report.previous_size is not None
    assert report.size > report.previous_size


@pytest.mark.parametrize("tamper", ["edit", "delete", "reorder"])
async def test_row_tampering_is_caught_and_named(world: World, tmp_path: Path, tamper: str) -> None:
    _, auditor = await _activity(world)
    assert (await _verify(auditor, tmp_path)).ok
    target = await _event_at(world, 3)
    async with world.app.state.sessionmaker() as session, session.begin():
        if tamper == "edit":
            assert '"decision":"allow"' in target.body
            await session.execute(
                update(AuditEvent)
                .where(AuditEvent.id == target.id)
                .values(
                    decision="deny",
                    body=target.body.replace('"decision":"allow"', '"decision":"deny"'),
                )
            )
        elif tamper == "delete":
            await session.execute(delete(AuditEvent).where(AuditEvent.id == target.id))
        else:
            other = await _event_at(world, 5)
            await session.execute(
                update(AuditEvent).where(AuditEvent.id == target.id).values(body=other.body)
            )
            await session.execute(
                update(AuditEvent).where(AuditEvent.id == other.id).values(body=target.body)
            )
    report = await _verify(auditor, tmp_path)
    assert not report.ok
    assert report.first_bad_index == 3
    assert any("leaf 3" in p for p in report.problems), report.problems


async def test_an_insertion_with_a_resigned_checkpoint_is_caught(
    world: World, tmp_path: Path
) -> None:
    """The worst case: someone holding the server's database and its audit key inserts an
    event into history and signs a new checkpoint. The auditor's record of what it verified
    before catches it."""
    _, auditor = await _activity(world)
    assert (await _verify(auditor, tmp_path)).ok
    async with world.app.state.sessionmaker() as session, session.begin():
        leaves = (
            (await session.execute(select(AuditLeaf).order_by(AuditLeaf.index))).scalars().all()
        )
        fake = audit.record(
            session, actor=None, action="device.certify", object_type="device", object_id="forged"
        )
        await session.flush()
        # Rebuild the log with the fake event at index 2, as a forger would.
        order = [leaf.event_id for leaf in leaves]
        order.insert(2, fake.id)
        await session.execute(delete(AuditLeaf))
        await session.execute(delete(AuditNode))
        await session.execute(delete(AuditCheckpoint))
        await session.execute(update(AuditEvent).values(leaf_index=None))
    async with world.app.state.sessionmaker() as session, session.begin():
        # Re-integrate in the forged order.
        for position, event_id in enumerate(order):
            await session.execute(
                update(AuditEvent).where(AuditEvent.id == event_id).values(id=-(position + 1))
            )
    async with world.app.state.sessionmaker() as session, session.begin():
        for position in range(len(order)):
            await session.execute(
                update(AuditEvent)
                .where(AuditEvent.id == -(position + 1))
                .values(id=100_000 + position)
            )
    await _integrate(world)
    report = await _verify(auditor, tmp_path)
    assert not report.ok
    assert report.first_bad_index is not None
    assert report.first_bad_index <= 2


async def test_a_rollback_is_caught(world: World, tmp_path: Path) -> None:
    alice, auditor = await _activity(world)
    first = await _verify(auditor, tmp_path)
    assert first.ok
    await alice.client.create_channel("later", "NATO SECRET")
    await _integrate(world)
    assert (await _verify(auditor, tmp_path)).ok
    async with world.app.state.sessionmaker() as session, session.begin():
        await session.execute(delete(AuditCheckpoint).where(AuditCheckpoint.size > first.size))
        await session.execute(delete(AuditLeaf).where(AuditLeaf.index >= first.size))
    report = await _verify(auditor, tmp_path)
    assert not report.ok
    assert "rolled back" in report.problems[0]


async def test_a_forged_checkpoint_signature_is_caught(world: World, tmp_path: Path) -> None:
    _, auditor = await _activity(world)
    assert (await _verify(auditor, tmp_path)).ok
    async with world.app.state.sessionmaker() as session, session.begin():
        latest = (
            await session.execute(
                select(AuditCheckpoint).order_by(AuditCheckpoint.size.desc()).limit(1)
            )
        ).scalar_one()
        latest.note = latest.note.replace("\n", "\n ", 1)
    report = await _verify(auditor, tmp_path)
    assert not report.ok
    assert "signature" in report.problems[0]


async def test_a_checkpoint_of_another_log_signed_by_the_same_key_is_caught(
    world: World, tmp_path: Path
) -> None:
    """A key that signs two logs' checkpoints must not let one log pass for the other: the
    checkpoint's origin must be the pinned key's name."""
    _, auditor = await _activity(world)
    assert (await _verify(auditor, tmp_path)).ok
    signer = world.app.state.audit_signer
    async with world.app.state.sessionmaker() as session, session.begin():
        latest = (
            await session.execute(
                select(AuditCheckpoint).order_by(AuditCheckpoint.size.desc()).limit(1)
            )
        ).scalar_one()
        body, _ = notes.open_note(latest.note, [signer.verifier()])
        honest = notes.Checkpoint.parse(body)
        other = notes.Checkpoint("another.example/log", honest.size, honest.root)
        latest.note = notes.sign_checkpoint(other, signer)  # the log's own key, another origin
    report = await _verify(auditor, tmp_path)
    assert not report.ok
    assert "another.example/log" in report.problems[0]
    with pytest.raises(notes.CheckpointError, match="origin"):
        await prove_event(auditor.client, tmp_path, (await _event_at(world, 1)).id)


async def test_inclusion_proof_checked_locally(world: World, tmp_path: Path) -> None:
    _, auditor = await _activity(world)
    event = await _event_at(world, 4)
    result = await prove_event(auditor.client, tmp_path, event.id)
    assert result.index == 4
    assert result.event["uid"] == event.uid


async def test_only_auditors_read_and_nations_see_their_own(world: World, tmp_path: Path) -> None:
    alice, _ = await _activity(world)
    with pytest.raises(ApiError) as refused:
        await alice.client.request("GET", "/v1/audit/events")
    assert refused.value.status == 403
    usa_auditor = await world.member("ursula", "USA", roles=("auditor",))
    await _integrate(world)
    events = await usa_auditor.client.request("GET", "/v1/audit/events", params={"limit": 1000})
    nations = {
        (e["event"]["actor"]["nation"], e["event"]["subject_nation"]) for e in events["events"]
    }
    assert all("USA" in pair for pair in nations)
    assert any(pair == ("GBR", "GBR") for pair in nations) is False
    # A nation-scoped auditor still verifies the whole tree, from hashes where it may not look.
    report = await verify_log(usa_auditor.client, tmp_path / "usa")
    assert report.ok, report.problems
    page = await usa_auditor.client.request(
        "GET", "/v1/audit/leaves", params={"start": 0, "end": report.size}
    )
    assert {leaf["status"] for leaf in page["leaves"]} == {"shown", "out-of-scope"}


async def test_event_leaves_carry_no_plaintext_or_private_keys(world: World) -> None:
    alice, _ = await _activity(world)
    async with world.app.state.sessionmaker() as session:
        rows = (await session.execute(select(AuditEvent))).scalars().all()
    blob = "".join(r.body for r in rows).encode()
    private = alice.device_keys.to_private_bytes()
    assert keys.b64u_encode(private[:32]).encode() not in blob
    assert keys.b64u_encode(private[32:]).encode() not in blob


async def test_auditors_read_what_the_log_commits_to(world: World, tmp_path: Path) -> None:
    """The index columns only find events; what an auditor reads is the hashed body. An edited
    column cannot change what the auditor sees, and verification names it."""
    _, auditor = await _activity(world)
    target = await _event_at(world, 3)
    async with world.app.state.sessionmaker() as session, session.begin():
        await session.execute(
            update(AuditEvent).where(AuditEvent.id == target.id).values(action="forged")
        )
    found = await auditor.client.request(
        "GET", "/v1/audit/events", params={"after": target.id - 1, "limit": 1}
    )
    assert found["events"][0]["event"]["action"] == target.action
    report = await _verify(auditor, tmp_path)
    assert not report.ok
    assert report.first_bad_index == 3
    assert any(f"event {target.id}" in p and "column action" in p for p in report.problems), (
        report.problems
    )


async def _events(auditor: Member, **params: Any) -> list[dict[str, Any]]:
    found = await auditor.client.request(
        "GET", "/v1/audit/events", params={"limit": 1000, **params}
    )
    return list(found["events"])


async def _deny(world: World, member: Member) -> int:
    """A real denial in the log, as a refused member addition records it."""
    async with world.app.state.sessionmaker() as session, session.begin():
        denial = audit.record(
            session,
            actor=audit.Actor(user_id=member.user.id, device_id=member.device_id, nation="USA"),
            action="channel.member_add",
            object_type="channel",
            object_id="liaison",
            decision=audit.DENY,
            reasons=["not cleared"],
            subject_nation="USA",
        )
    await _integrate(world)
    return denial.id


async def test_a_steered_decision_column_finds_nothing_and_verification_names_it(
    world: World, tmp_path: Path
) -> None:
    """Issue 9, item 11: an allowed event whose decision column is edited to deny is not what
    a query for denials returns, is served as its leaf says, and fails verification, which
    names the event and the column."""
    alice, auditor = await _activity(world)
    denials = [await _deny(world, alice), await _deny(world, alice)]
    assert [e["id"] for e in await _events(auditor, decision="deny")] == denials
    target = await _event_at(world, 3)
    assert '"decision":"allow"' in target.body
    async with world.app.state.sessionmaker() as session, session.begin():
        await session.execute(
            update(AuditEvent).where(AuditEvent.id == target.id).values(decision="deny")
        )
    # Found by its column, left out by its leaf; the page is still filled with real denials.
    assert [e["id"] for e in await _events(auditor, decision="deny", limit=2)] == denials
    served = await _events(auditor, after=target.id - 1, limit=1)
    assert served[0]["id"] == target.id
    assert served[0]["event"]["decision"] == "allow"

    report = await _verify(auditor, tmp_path)
    assert not report.ok
    assert report.first_bad_index == 3
    assert any(
        f"leaf 3, event {target.id}" in p
        and "column decision says 'deny'" in p
        and "the logged event says 'allow'" in p
        for p in report.problems
    ), report.problems


async def test_a_denial_hidden_by_its_column_is_named_by_verification(
    world: World, tmp_path: Path
) -> None:
    """The other way round: a denial whose column says allow drops out of a query for
    denials (the columns find candidates), and verification names it."""
    alice, auditor = await _activity(world)
    denial = await _deny(world, alice)
    assert [e["id"] for e in await _events(auditor, decision="deny")] == [denial]
    async with world.app.state.sessionmaker() as session, session.begin():
        await session.execute(
            update(AuditEvent).where(AuditEvent.id == denial).values(decision="allow")
        )
    assert await _events(auditor, decision="deny") == []
    report = await _verify(auditor, tmp_path)
    assert not report.ok
    assert any(
        f"event {denial}" in p and "column decision says 'allow'" in p for p in report.problems
    ), report.problems


async def test_a_steered_nation_column_shows_a_nation_nothing_of_another(
    world: World, tmp_path: Path
) -> None:
    """An event of GBR alone, its nation columns edited to USA, is not shown to a USA auditor:
    not by a query, not as a leaf, not by an inclusion proof."""
    _, auditor = await _activity(world)
    usa_auditor = await world.member("ursula", "USA", roles=("auditor",))
    await _integrate(world)
    async with world.app.state.sessionmaker() as session:
        stmt = select(AuditEvent).where(
            AuditEvent.actor_nation.is_(None) | (AuditEvent.actor_nation == "GBR"),
            AuditEvent.subject_nation == "GBR",
            AuditEvent.leaf_index.is_not(None),
        )
        target = (await session.execute(stmt)).scalars().first()
    assert target is not None
    async with world.app.state.sessionmaker() as session, session.begin():
        await session.execute(
            update(AuditEvent)
            .where(AuditEvent.id == target.id)
            .values(actor_nation="USA", subject_nation="USA")
        )
    assert target.id not in {e["id"] for e in await _events(usa_auditor)}
    assert target.id not in {e["id"] for e in await _events(usa_auditor, nation="USA")}
    assert target.leaf_index is not None
    page = await usa_auditor.client.request(
        "GET",
        "/v1/audit/leaves",
        params={"start": target.leaf_index, "end": target.leaf_index + 1},
    )
    assert page["leaves"][0]["status"] == "out-of-scope"
    assert page["leaves"][0]["data"] is None
    with pytest.raises(ApiError) as hidden:
        await usa_auditor.client.request(
            "GET", "/v1/audit/proofs/inclusion", params={"event": target.id}
        )
    assert hidden.value.status == 404
    # An auditor of all nations sees the leaf, and its verification names the column.
    report = await _verify(auditor, tmp_path)
    assert any(f"event {target.id}" in p and "column actor_nation" in p for p in report.problems), (
        report.problems
    )


async def _reads(world: World) -> list[AuditEvent]:
    async with world.app.state.sessionmaker() as session:
        stmt = select(AuditEvent).where(AuditEvent.action == "audit.read").order_by(AuditEvent.id)
        return list((await session.execute(stmt)).scalars().all())


async def test_a_query_is_one_read_event_with_its_filters_and_count(world: World) -> None:
    _, auditor = await _activity(world)
    before = len(await _reads(world))
    page = await auditor.client.request(
        "GET", "/v1/audit/events", params={"action": "user.create", "limit": 2}
    )
    assert len(page["events"]) == 2
    reads = (await _reads(world))[before:]
    assert len(reads) == 1
    details = reads[0].details
    assert details["query"] == {"action": "user.create", "after_id": 0, "limit": 2}
    assert details["returned"] == 2
    # The leaf, which the auditor verifies, says the same as the column.
    assert '"returned":2' in reads[0].body


async def test_reads_stay_out_of_other_reads_unless_asked_for(world: World) -> None:
    """Paging to the end, as an export does, ends: no page returns the read of the page
    before. Asked for by action, the reads are there, with what each returned."""
    _, auditor = await _activity(world)
    async with world.app.state.sessionmaker() as session:
        logged = (await session.execute(select(AuditEvent.id))).scalars().all()
    seen: list[dict[str, Any]] = []
    after, pages = 0, 0
    while pages < 100:
        pages += 1
        page = await auditor.client.request(
            "GET", "/v1/audit/events", params={"after": after, "limit": 5}
        )
        if not page["events"]:
            break
        seen += page["events"]
        after = page["cursor"]
    # Full pages, then what is left, then (if that was not empty) an empty page.
    returned = [5] * (len(logged) // 5) + [len(logged) % 5]
    if returned[-1]:
        returned.append(0)
    assert pages == len(returned)
    assert [e["id"] for e in seen] == sorted(logged)
    assert all(e["event"]["action"] != "audit.read" for e in seen)
    asked = await auditor.client.request(
        "GET", "/v1/audit/events", params={"action": "audit.read", "limit": 1000}
    )
    reads = [e["event"] for e in asked["events"]]
    assert len(reads) == pages
    assert [r["details"]["returned"] for r in reads] == returned


async def test_a_read_event_can_still_be_proven(world: World, tmp_path: Path) -> None:
    _, auditor = await _activity(world)
    await auditor.client.request("GET", "/v1/audit/events", params={"limit": 1})
    read = (await _reads(world))[-1]
    await _integrate(world)
    result = await prove_event(auditor.client, tmp_path, read.id)
    assert result.event["action"] == "audit.read"
