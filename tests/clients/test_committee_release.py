"""Issue 5's story end to end: a committee of four nations holds a meeting whose agenda
carries one document releasable to all and one REL TO USA, GBR; the FRA member gets the first
and not the second; a release request adds FRA, a disclosure officer of the originator's
nation approves, and the FRA member can then open it; the audit log shows each step."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from clients.sdk import ApiError, Committees, MessagingError, Messenger
from clients.sdk.documents import Documents
from clients.sdk.releases import Releases
from server.audit.models import AuditEvent
from tests.factories import Member, World

REL_USA_GBR = "NATO SECRET//REL TO USA, GBR"


async def _messenger(member: Member) -> Messenger:
    return await Messenger.from_client(
        member.client, member.keystore, member.device_keys, owns_client=False
    )


async def test_committee_meeting_documents_and_release(world: World, tmp_path: Path) -> None:
    for nation in ("USA", "GBR", "FRA", "DEU"):
        await world.nation(nation)
    alice = await world.member("alice", "USA")
    bob = await world.member("bob", "GBR")
    chloe = await world.member("chloe", "FRA")
    dieter = await world.member("dieter", "DEU")
    gwen = await world.member("gwen", "GBR", roles=("officer", "disclosure_officer"))
    m = {p.user.username: await _messenger(p) for p in (alice, bob, chloe, dieter, gwen)}

    # The committee: alice (USA) chairs, bob (GBR) is the secretary.
    await Committees(m["alice"]).create_committee(
        "cell", "NATO SECRET", chair="alice", secretary="bob"
    )
    for name in ("chloe", "dieter"):
        await bob.client.add_committee_member("cell", name)
    meeting = await Committees(m["bob"]).schedule_meeting(
        "cell", datetime(2026, 12, 1, 10, tzinfo=UTC), "Planning", "Room 4"
    )
    item = await Committees(m["bob"]).add_agenda_item(meeting["id"], "Logistics")

    # Two documents from bob (GBR): one releasable to all NATO, one REL TO USA, GBR.
    shared = tmp_path / "shared.txt"
    shared.write_bytes(b"fuel plan " * 10_000)
    restricted = tmp_path / "restricted.txt"
    restricted.write_bytes(b"source details " * 10_000)
    first = await Documents(m["bob"]).put("cell", shared, label="NATO SECRET")
    second = await Documents(m["bob"]).put("cell", restricted, label=REL_USA_GBR)
    for version in (first, second):
        await Committees(m["bob"]).attach_document(meeting["id"], item["id"], version["id"])

    # USA and GBR see both on the agenda; FRA sees the item and only the first document.
    usa_agenda = await Committees(m["alice"]).agenda(meeting["id"])
    assert set(usa_agenda.items[0].documents) == {first["id"], second["id"]}
    fra_agenda = await Committees(m["chloe"]).agenda(meeting["id"])
    assert [i.title for i in fra_agenda.items] == ["Logistics"]
    assert fra_agenda.items[0].documents == (first["id"],)
    opened = await Documents(m["chloe"]).get(first["id"], tmp_path / "chloe" / "shared.txt")
    assert opened.path.read_bytes() == shared.read_bytes()
    with pytest.raises(ApiError) as refused:
        await Documents(m["chloe"]).get(second["id"], tmp_path / "chloe" / "restricted.txt")
    assert refused.value.status == 404

    # Alice (USA) asks to add FRA; GBR originated it, so GBR's disclosure officer decides.
    request = await Releases(m["alice"]).request(
        "document_version", second["id"], ["FRA"], reason="FRA leads the logistics cell"
    )
    assert request["originator"] == "GBR"
    with pytest.raises(ApiError):
        await Releases(m["alice"]).approve(request["id"])  # not GBR's disclosure officer
    pending = await Releases(m["gwen"]).list(status="pending")
    assert [r["id"] for r in pending] == [request["id"]]
    await Releases(m["gwen"]).approve(request["id"], reason="agreed at the cell's request")
    await Releases(m["alice"]).grant(request["id"])

    # Chloe can now open it, under its new label; Dieter (DEU) still cannot.
    opened = await Documents(m["chloe"]).get(second["id"], tmp_path / "chloe" / "restricted.txt")
    assert opened.path.read_bytes() == restricted.read_bytes()
    assert opened.banner == "NATO SECRET//REL TO USA, GBR, FRA"
    fra_agenda = await Committees(m["chloe"]).agenda(meeting["id"])
    assert set(fra_agenda.items[0].documents) == {first["id"], second["id"]}
    with pytest.raises(ApiError):
        await Documents(m["dieter"]).get(second["id"], tmp_path / "dieter" / "restricted.txt")

    # The audit log shows each step.
    async with world.app.state.sessionmaker() as session:
        events: list[Any] = list(
            (await session.execute(select(AuditEvent).order_by(AuditEvent.id))).scalars().all()
        )
    steps = [(e.action, e.decision) for e in events]
    for step in [
        ("committee.create", "allow"),
        ("meeting.schedule", "allow"),
        ("agenda.add", "allow"),
        ("document.upload", "allow"),
        ("agenda.attach", "allow"),
        ("document.access", "deny"),
        ("release.request", "allow"),
        ("release.approve", "deny"),
        ("release.approve", "allow"),
        ("release.grant", "allow"),
    ]:
        assert step in steps, step
    chloe_access = [
        e.decision
        for e in events
        if e.action == "document.access" and e.actor_user_id == chloe.user.id
    ]
    assert chloe_access[-1] == "allow"


async def test_an_agenda_document_above_the_ceiling_is_refused(
    world: World, tmp_path: Path
) -> None:
    for nation in ("USA", "GBR"):
        await world.nation(nation)
    alice = await world.member("alice", "USA")
    await world.member("bob", "GBR")
    m = await _messenger(alice)
    await Committees(m).create_committee(
        "cell", "NATO CONFIDENTIAL", chair="alice", secretary="bob"
    )
    paper = tmp_path / "paper.txt"
    paper.write_bytes(b"x" * 100)
    with pytest.raises(MessagingError, match="ceiling"):
        await Documents(m).put("cell", paper, label="NATO SECRET")
    assert await Documents(m).versions("cell") == []
