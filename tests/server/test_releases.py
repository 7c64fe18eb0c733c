"""Foreign disclosure: request, decision by the originator nation's disclosure officer only,
and a grant checked against the approved label; the newly eligible member then opens the item
through the grant."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, update

from clients.sdk import ApiError
from protocol import envelopes, grants, keys
from server.audit.models import AuditEvent
from server.directory.models import User
from tests.factories import Member, World
from tests.server.test_channels import REL_USA_GBR, _audience, _message, _three

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


async def _actions(world: World) -> list[tuple[str, str]]:
    async with world.app.state.sessionmaker() as session:
        rows = (
            await session.execute(
                select(AuditEvent.action, AuditEvent.decision)
                .where(AuditEvent.action.like("release.%"))
                .order_by(AuditEvent.id)
            )
        ).all()
    return [(a, d) for a, d in rows]


async def _sent(world: World) -> tuple[Any, dict[str, Any], bytes, Member]:
    """USA, GBR, FRA in a channel; alice (USA) sends REL TO USA, GBR; a USA disclosure officer."""
    t = await _three(world)
    audience, key, audience_id = await _audience(t.usa, t.id, [t.usa, t.gbr])
    await t.usa.client.create_audience("liaison", audience)
    message = _message(t.usa, t.id, audience_id, key, REL_USA_GBR)
    await t.usa.client.submit_message("liaison", message)
    officer = await world.member("dora", "USA", roles=("officer", "disclosure_officer"))
    return t, message, key, officer


def _grant(
    grantor: Member,
    request: dict[str, Any],
    message: dict[str, Any],
    audience_key: bytes,
    recipients: list[Member],
    channel_id: str,
) -> dict[str, Any]:
    item_key = envelopes.message_key(audience_key, message["header"])
    return grants.create_grant(
        grantor.device_keys,
        item_key,
        grant_id=str(uuid.uuid4()),
        request_id=request["id"],
        item_type="message",
        item_id=message["header"]["message_id"],
        container=channel_id,
        grantor_user=grantor.user.id,
        grantor_device=grantor.device_id,
        previous_label=request["label_canonical"],
        label=request["requested_label_canonical"],
        recipients=[envelopes.Recipient(m.device_id, m.device_keys.public()) for m in recipients],
        created_at=datetime.now(UTC),
    ).to_json()


async def test_release_to_fra_after_approval(world: World) -> None:
    t, message, key, officer = await _sent(world)
    message_id = message["header"]["message_id"]
    assert (await t.fra.client.sync())["items"] == []
    request = await t.gbr.client.request(
        "POST",
        "/v1/releases",
        json={
            "item_type": "message",
            "item_id": message_id,
            "add": ["FRA"],
            "reason": "FRA leads the cell",
        },
    )
    assert request["requested_label"] == "NATO SECRET//REL TO USA, GBR, FRA"
    assert request["originator"] == "USA"
    pending = await officer.client.request("GET", "/v1/releases", params={"status": "pending"})
    assert [r["id"] for r in pending] == [request["id"]]
    approved = await officer.client.request(
        "POST", f"/v1/releases/{request['id']}/approve", json={"reason": "agreed"}
    )
    assert approved["status"] == "approved"
    # Bob (GBR) holds the key: he carries out the release to chloe's device.
    sealed = _grant(t.gbr, approved, message, key, [t.fra], t.id)
    granted = await t.gbr.client.request(
        "POST", f"/v1/releases/{request['id']}/grant", json={"grant": sealed}
    )
    assert granted["status"] == "granted"
    (item,) = (await t.fra.client.sync())["items"]
    assert item["label"] == "NATO SECRET//REL TO USA, GBR, FRA"
    assert item["audience"]["envelope"] is None
    grant = item["grant"]
    item_key = grants.open_grant(
        t.fra.device_keys,
        t.fra.device_id,
        grant["header"],
        keys.b64u_decode(grant["signature"]),
        keys.b64u_decode(grant["envelope"]),
        t.gbr.device_keys.public().signing_key,
    )
    sealed_message = envelopes.SealedMessage.from_json(item["message"])
    plaintext = envelopes.decrypt_with_item_key(
        sealed_message, item_key, t.usa.device_keys.public().signing_key
    )
    assert plaintext == b"Meeting moved to 14:00"
    assert await _actions(world) == [
        ("release.request", "allow"),
        ("release.approve", "allow"),
        ("release.grant", "allow"),
    ]


async def test_only_the_originators_disclosure_officer_decides(world: World) -> None:
    t, message, _, officer = await _sent(world)
    gbr_officer = await world.member("gary", "GBR", roles=("officer", "disclosure_officer"))
    message_id = message["header"]["message_id"]
    # Alice (USA) is made a disclosure officer too, and asks for her own message's release.
    async with world.app.state.sessionmaker() as session, session.begin():
        await session.execute(
            update(User)
            .where(User.id == t.usa.user.id)
            .values(roles=["disclosure_officer", "officer"])
        )
    request = await t.usa.client.request(
        "POST", "/v1/releases", json={"item_type": "message", "item_id": message_id, "add": ["FRA"]}
    )
    # Another nation's disclosure officer does not even see it.
    with pytest.raises(ApiError) as hidden:
        await gbr_officer.client.request("POST", f"/v1/releases/{request['id']}/approve", json={})
    assert hidden.value.status == 404
    assert await gbr_officer.client.request("GET", "/v1/releases") == []
    # The requester cannot decide their own request, though of the originator nation.
    with pytest.raises(ApiError) as own:
        await t.usa.client.request("POST", f"/v1/releases/{request['id']}/approve", json={})
    assert own.value.status == 403
    assert "their own request" in own.value.detail
    refused = await officer.client.request(
        "POST", f"/v1/releases/{request['id']}/refuse", json={"reason": "not yet"}
    )
    assert refused["status"] == "refused"
    with pytest.raises(ApiError) as again:
        await officer.client.request("POST", f"/v1/releases/{request['id']}/approve", json={})
    assert again.value.status == 409
    # Both refusals are audited: the GBR officer's (to whom the request does not exist) and the
    # requester's.
    assert await _actions(world) == [
        ("release.request", "allow"),
        ("release.approve", "deny"),
        ("release.approve", "deny"),
        ("release.refuse", "allow"),
    ]


async def test_a_grant_beyond_the_approved_label_is_refused(world: World) -> None:
    t, message, key, officer = await _sent(world)
    outsider = await world.member("otto", "USA")  # a member the original label already covers
    await t.usa.client.add_member("liaison", "otto")
    request = await t.gbr.client.request(
        "POST",
        "/v1/releases",
        json={"item_type": "message", "item_id": message["header"]["message_id"], "add": ["FRA"]},
    )
    approved = await officer.client.request(
        "POST", f"/v1/releases/{request['id']}/approve", json={}
    )
    # Sealing to a device the approved label does not newly admit: refused and audited.
    sealed = _grant(t.gbr, approved, message, key, [t.fra, outsider], t.id)
    with pytest.raises(ApiError) as refused:
        await t.gbr.client.request(
            "POST", f"/v1/releases/{request['id']}/grant", json={"grant": sealed}
        )
    assert refused.value.status == 403
    # A grant for a wider label than approved does not match the request.
    wider = dict(approved)
    wider["requested_label_canonical"] = {
        **approved["requested_label_canonical"],
        "rel_to": ["USA", "GBR", "FRA", "DEU"],
    }
    sealed = _grant(t.gbr, wider, message, key, [t.fra], t.id)
    with pytest.raises(ApiError) as mismatch:
        await t.gbr.client.request(
            "POST", f"/v1/releases/{request['id']}/grant", json={"grant": sealed}
        )
    assert mismatch.value.status == 422
    assert ("release.grant", "deny") in await _actions(world)
    assert (await t.fra.client.sync())["items"] == []


async def test_a_grant_before_approval_and_by_a_non_holder_is_refused(world: World) -> None:
    t, message, key, _ = await _sent(world)
    request = await t.gbr.client.request(
        "POST",
        "/v1/releases",
        json={"item_type": "message", "item_id": message["header"]["message_id"], "add": ["FRA"]},
    )
    pending = {**request}
    sealed = _grant(t.gbr, pending, message, key, [t.fra], t.id)
    with pytest.raises(ApiError) as early:
        await t.gbr.client.request(
            "POST", f"/v1/releases/{request['id']}/grant", json={"grant": sealed}
        )
    assert early.value.status == 409
    # Chloe does not hold the item: for her, the request does not exist.
    with pytest.raises(ApiError) as hidden:
        await t.fra.client.request(
            "POST", f"/v1/releases/{request['id']}/grant", json={"grant": sealed}
        )
    assert hidden.value.status == 404
    # Nor can she ask for its release: she cannot read it.
    with pytest.raises(ApiError) as unseen:
        await t.fra.client.request(
            "POST",
            "/v1/releases",
            json={
                "item_type": "message",
                "item_id": message["header"]["message_id"],
                "add": ["DEU"],
            },
        )
    assert unseen.value.status == 404
