"""Release requests from the SDK and the CLI: a GBR member asks for alice's (USA) message and
document to be released to FRA too, a USA disclosure officer approves, bob's device seals the
items' keys to chloe's (FRA) device, and chloe's client opens them under the wider label,
checking the grant as it checks the sender."""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clients.sdk import MessagingError, Messenger, Releases
from clients.sdk.documents import Documents
from protocol import keys
from tests.clients.test_cli_messages import People, _fails, _ok
from tests.clients.test_messaging import Trio, _messenger, _trio
from tests.factories import Member, World

REL_USA_GBR = "NATO SECRET//REL TO USA, GBR"
REL_USA_GBR_FRA = "NATO SECRET//REL TO USA, GBR, FRA"


@dataclass
class Scene:
    t: Trio
    dora: Member
    dm: Messenger
    message_id: str
    version_id: str
    source: Path


async def _scene(world: World, tmp_path: Path) -> Scene:
    t = await _trio(world)
    dora = await world.member("dora", "USA", roles=("officer", "disclosure_officer"))
    await t.alice.client.add_member("liaison", "dora")
    sent = await t.am.send("liaison", "Meeting moved to 14:00", label=REL_USA_GBR)
    source = tmp_path / "brief.bin"
    source.write_bytes(os.urandom(70_000))
    version = await Documents(t.am).put("liaison", source, label=REL_USA_GBR)
    return Scene(t, dora, await _messenger(dora), sent.message_id, version["id"], source)


async def _released(world: World, tmp_path: Path) -> Scene:
    s = await _scene(world, tmp_path)
    bob, dora = Releases(s.t.bm), Releases(s.dm)
    for item_type, item_id in (("message", s.message_id), ("document_version", s.version_id)):
        request = await bob.request(item_type, item_id, ["FRA"], reason="FRA leads the cell")
        assert request["requested_label"] == REL_USA_GBR_FRA
        await dora.approve(request["id"], reason="agreed")
        granted = await bob.grant(request["id"])
        assert granted["status"] == "granted"
    return s


async def test_a_release_reaches_the_newly_eligible_member(world: World, tmp_path: Path) -> None:
    s = await _scene(world, tmp_path)
    t = s.t
    assert await t.cm.read("liaison") == []
    assert await Documents(t.cm).versions("liaison") == []
    bob, dora = Releases(t.bm), Releases(s.dm)
    message_request = await bob.request("message", s.message_id, ["FRA"], reason="FRA leads")
    document_request = await bob.request("document_version", s.version_id, ["FRA"])
    pending = await dora.list("pending")
    assert {r["id"] for r in pending} == {message_request["id"], document_request["id"]}
    assert {(r["label"], r["requested_label"]) for r in pending} == {(REL_USA_GBR, REL_USA_GBR_FRA)}
    # Not yet approved: nothing to carry out.
    with pytest.raises(MessagingError, match="is pending"):
        await bob.grant(message_request["id"])
    for request in (message_request, document_request):
        assert (await dora.approve(request["id"], reason="agreed"))["status"] == "approved"
        assert (await bob.grant(request["id"]))["status"] == "granted"
    assert await dora.list("pending") == []

    (message,) = await t.cm.read("liaison")
    assert message.verified, message.problem
    assert message.text == "Meeting moved to 14:00"
    assert (message.sender, message.sender_nation) == ("alice", "USA")
    assert message.banner == REL_USA_GBR_FRA
    assert message.released_by == "bob"
    assert message.original_banner == REL_USA_GBR

    opened = await Documents(t.cm).get(s.version_id, tmp_path / "chloe" / "brief.bin")
    assert opened.path.read_bytes() == s.source.read_bytes()
    assert (opened.banner, opened.released_by, opened.sender) == (REL_USA_GBR_FRA, "bob", "alice")
    assert opened.original_banner == REL_USA_GBR


async def test_the_original_audience_still_reads_a_released_message(
    world: World, tmp_path: Path
) -> None:
    s = await _released(world, tmp_path)
    (for_bob,) = await s.t.bm.read("liaison")
    assert for_bob.verified, for_bob.problem


async def test_a_refused_request_releases_nothing(world: World, tmp_path: Path) -> None:
    s = await _scene(world, tmp_path)
    request = await Releases(s.t.bm).request("message", s.message_id, ["FRA"])
    refused = await Releases(s.dm).refuse(request["id"], reason="not yet")
    assert refused["status"] == "refused"
    with pytest.raises(MessagingError, match="is refused"):
        await Releases(s.t.bm).grant(request["id"])
    assert await s.t.cm.read("liaison") == []


def _flip_envelope(item: dict[str, Any], _: Scene) -> None:
    envelope = bytearray(keys.b64u_decode(item["grant"]["envelope"]))
    envelope[-1] ^= 1
    item["grant"]["envelope"] = keys.b64u_encode(bytes(envelope))


def _shown_label(item: dict[str, Any], _: Scene) -> None:
    item["label"] = REL_USA_GBR


def _widened_further(item: dict[str, Any], _: Scene) -> None:
    item["grant"]["header"]["label"]["releasable_to"] = ["USA", "GBR", "FRA", "DEU"]
    item["label"] = "NATO SECRET//REL TO USA, GBR, FRA, DEU"


def _grantor_is_sender(item: dict[str, Any], _: Scene) -> None:
    item["grant"]["grantor_certificate"] = item["sender_certificate"]


def _no_grantor_certificate(item: dict[str, Any], _: Scene) -> None:
    item["grant"]["grantor_certificate"] = None


TAMPERING: dict[str, tuple[Callable[[dict[str, Any], Scene], None], str]] = {
    "envelope": (_flip_envelope, "does not open for device"),
    "shown label": (_shown_label, f"but bob released it as {REL_USA_GBR_FRA}"),
    "label widened further": (_widened_further, "the message does not verify or decrypt"),
    "grantor certificate": (_grantor_is_sender, "the grantor's certificate is for another"),
    "no grantor certificate": (_no_grantor_certificate, "the grantor's device cannot be trusted"),
}


@pytest.mark.parametrize("case", list(TAMPERING))
async def test_a_tampered_grant_is_reported_unverified(
    world: World, tmp_path: Path, case: str
) -> None:
    s = await _released(world, tmp_path)
    (item,) = (await s.t.chloe.client.channel_messages("liaison"))["items"]
    assert item["grant"] is not None
    assert item["audience"]["envelope"] is None
    assert (await s.t.cm.open_item(copy.deepcopy(item))).verified
    tamper, problem = TAMPERING[case]
    tamper(item, s)
    opened = await s.t.cm.open_item(item)
    assert not opened.verified
    assert opened.text is None
    assert opened.problem is not None
    assert problem in opened.problem


async def test_a_tampered_document_grant_is_refused(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = await _released(world, tmp_path)
    client = s.t.cm.client
    real = client.open_document_version

    async def tampered(version_id: str) -> dict[str, Any]:
        access = await real(version_id)
        _flip_envelope(access, s)
        return access

    monkeypatch.setattr(client, "open_document_version", tampered)
    target = tmp_path / "chloe" / "brief.bin"
    with pytest.raises(MessagingError, match=r"cannot be trusted.*does not open"):
        await Documents(s.t.cm).get(s.version_id, target)
    assert not target.exists()


async def test_a_genuine_other_version_is_not_released_in_place_of_the_one_asked_about(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = await _scene(world, tmp_path)
    other = tmp_path / "other.bin"
    other.write_bytes(os.urandom(1_000))
    secret = await Documents(s.t.am).put("liaison", other, label=REL_USA_GBR)
    bob, dora = Releases(s.t.bm), Releases(s.dm)
    request = await bob.request("document_version", s.version_id, ["FRA"])
    await dora.approve(request["id"], reason="agreed")
    client = s.t.bm.client
    real = client.open_document_version

    async def swapped(version_id: str) -> dict[str, Any]:
        # The server answers with another version, whole and genuine.
        return await real(secret["id"] if version_id == s.version_id else version_id)

    monkeypatch.setattr(client, "open_document_version", swapped)
    with pytest.raises(MessagingError) as refused:
        await bob.grant(request["id"])
    assert f"the server gave version {secret['id']} for {s.version_id}" in str(refused.value)
    monkeypatch.undo()
    assert (await dora.list("approved"))[0]["id"] == request["id"]  # nothing was granted
    assert await Documents(s.t.cm).versions("liaison") == []


# --- the command line ------------------------------------------------------------------------


async def test_release_from_the_command_line(world: World, live: str, tmp_path: Path) -> None:
    s = await _scene(world, tmp_path)
    p = People(s.t.alice, s.t.bob, s.t.chloe)
    out = await _ok(
        p.bob, "release", "request", "--message", s.message_id, "--add", "FRA", "--reason", "cell"
    )
    made = re.match(r"release request (\S+): message ", out)
    assert made is not None, out
    request_id = made.group(1)
    assert f"to {REL_USA_GBR_FRA}, pending a decision by USA" in out
    listed = await _ok(s.dora, "release", "list", "--status", "pending")
    assert request_id in listed
    assert "pending" in listed
    refused = await _fails(p.bob, "release", "approve", request_id)
    assert "only a disclosure officer of USA decides" in refused
    out = await _ok(s.dora, "release", "approve", request_id, "--reason", "agreed")
    assert f"approved {request_id}" in out
    out = await _ok(p.bob, "release", "grant", request_id)
    assert f"released message {s.message_id} as {REL_USA_GBR_FRA} (granted)" in out
    (message,) = await s.t.cm.read("liaison")
    assert message.verified, message.problem
    assert (message.banner, message.released_by) == (REL_USA_GBR_FRA, "bob")
    out = await _fails(p.bob, "release", "request", "--add", "FRA")
    assert "name exactly one item" in out
