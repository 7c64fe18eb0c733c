"""History grants from the SDK (PROTOCOL.md §16.7): a member who joins later sees what waits
for a key, a member's client that holds the keys shares exactly what the label admits (on its
own decision, from verified certificates), the newcomer's client opens it and says who shared
it, and a listening client shares when its stream says the roster changed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clients.sdk import ApiError, History, Messenger
from clients.sdk.documents import Documents
from tests.clients.test_messaging import _messenger, _trio, _until
from tests.clients.test_roster_notices import _listening
from tests.factories import World

REL_USA_GBR = "NATO SECRET//REL TO USA, GBR"
REL_USA = "NATO SECRET//REL TO USA"


async def test_a_later_member_waits_then_reads_what_the_label_admits(world: World) -> None:
    t = await _trio(world)
    shared = await t.am.send("liaison", "Meeting moved to 14:00", label=REL_USA_GBR)
    usa_only = await t.am.send("liaison", "For US eyes", label=REL_USA)
    dave = await world.member("dave", "USA")
    gary = await world.member("gary", "GBR")
    await t.alice.client.add_member("liaison", "dave")
    await t.alice.client.add_member("liaison", "gary")
    dm, gm = await _messenger(dave), await _messenger(gary)
    assert await dm.read("liaison") == []
    waiting = await History(dm).waiting("liaison")
    assert [(w.item_id, w.label) for w in waiting] == [
        (shared.message_id, REL_USA_GBR),
        (usa_only.message_id, REL_USA),
    ]
    assert [w.item_id for w in await History(gm).waiting("liaison")] == [shared.message_id]
    # Bob (GBR) holds only the first; his client shares it with both newcomers.
    (by_bob,) = await History(t.bm).share("liaison")
    assert by_bob.problem is None
    assert by_bob.created
    assert set(by_bob.devices) == {dave.device_id, gary.device_id}
    # Alice holds both: the first is shared already, the second goes to dave alone.
    (by_alice,) = await History(t.am).share("liaison")
    assert (by_alice.item_id, by_alice.devices) == (usa_only.message_id, (dave.device_id,))
    assert await History(t.am).share("liaison") == []  # nothing left to share
    read = await dm.read("liaison")
    assert [(m.text, m.banner, m.shared_by, m.verified) for m in read] == [
        ("Meeting moved to 14:00", REL_USA_GBR, "bob", True),
        ("For US eyes", REL_USA, "alice", True),
    ]
    assert all(m.released_by is None and m.original_banner is None for m in read)
    assert await History(dm).waiting("liaison") == []
    # Gary (GBR) never gets the REL TO USA message: the server would refuse it, and no client
    # seals it to him.
    assert [m.text for m in await gm.read("liaison")] == ["Meeting moved to 14:00"]


async def test_a_listening_member_shares_when_the_roster_changes(world: World, live: str) -> None:
    t = await _trio(world)
    sent = await t.am.send("liaison", "Before dave joined", label=REL_USA)
    History(t.am).share_on_roster_changes()
    outcomes: list[object] = []
    t.am.on_history = lambda channel_id, outcome: outcomes.append(outcome)
    async with _listening(t.am):
        await _until(lambda: world.app.state.bus.subscribers == 1)
        dave = await world.member("dave", "USA")
        await t.alice.client.add_member("liaison", "dave")
        await _until(lambda: any(outcomes))
    dm: Messenger = await _messenger(dave)
    (message,) = await dm.read("liaison")
    assert (message.message_id, message.text, message.shared_by) == (
        sent.message_id,
        "Before dave joined",
        "alice",
    )


async def test_a_document_shared_before_a_member_joined(world: World, tmp_path: Path) -> None:
    t = await _trio(world)
    source = tmp_path / "brief.bin"
    source.write_bytes(os.urandom(70_000))
    version = await Documents(t.am).put("liaison", source, label=REL_USA_GBR)
    dave = await world.member("dave", "USA")
    await t.alice.client.add_member("liaison", "dave")
    dm = await _messenger(dave)
    (waiting,) = await History(dm).waiting("liaison")
    assert (waiting.item_type, waiting.item_id, waiting.label) == (
        "document_version",
        version["id"],
        REL_USA_GBR,
    )
    with pytest.raises(ApiError):
        await Documents(dm).get(version["id"], tmp_path / "too-early.bin")
    (shared,) = await History(t.bm).share("liaison")
    assert (shared.item_type, shared.devices, shared.created) == (
        "document_version",
        (dave.device_id,),
        True,
    )
    opened = await Documents(dm).get(version["id"], tmp_path / "got.bin")
    assert (tmp_path / "got.bin").read_bytes() == source.read_bytes()
    assert opened.banner == REL_USA_GBR
    assert (opened.shared_by, opened.released_by, opened.original_banner) == ("bob", None, None)
    assert await History(dm).waiting("liaison") == []


async def test_a_client_back_online_shares_in_every_channel(world: World) -> None:
    t = await _trio(world)
    await t.alice.client.create_channel("cell", "NATO SECRET")
    first = await t.am.send("liaison", "Sent in liaison", label=REL_USA)
    second = await t.am.send("cell", "Sent in cell", label=REL_USA)
    dave = await world.member("dave", "USA")
    for channel in ("liaison", "cell"):
        await t.alice.client.add_member(channel, "dave")
    # Alice's client was not listening when dave joined; it comes back and shares everywhere.
    History(t.am).share_on_roster_changes()
    t.am.history_jitter = 0
    outcomes: dict[str, object] = {}
    t.am.on_history = outcomes.__setitem__
    t.am.share_history_soon()
    await _until(lambda: len(outcomes) == 2)
    dm = await _messenger(dave)
    assert [m.message_id for m in await dm.read("liaison")] == [first.message_id]
    assert [m.message_id for m in await dm.read("cell")] == [second.message_id]
    await t.am.aclose()  # no background work outlives the Messenger
    assert t.am._sharing == {}
