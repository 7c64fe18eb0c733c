"""The server enforces releasability: it refuses any audience that would give a key to a
device not eligible for the message's label, and decides again at delivery.

Each case builds audiences and messages with protocol.envelopes, as a client would, and
attacks one check at a time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select, update

from clients.sdk import ApiError
from protocol import envelopes, keys
from protocol.catalog import load_default_catalog
from protocol.labels import parse_label
from server.audit.models import AuditEvent
from server.channels.models import AudienceEnvelope, Delivery, Message
from server.directory.models import User
from tests.factories import Member, World

CATALOG = load_default_catalog()


async def _count(world: World, model: Any) -> int:
    async with world.app.state.sessionmaker() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def _events(world: World, action: str, decision: str | None = None) -> list[AuditEvent]:
    async with world.app.state.sessionmaker() as session:
        stmt = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        if decision:
            stmt = stmt.where(AuditEvent.decision == decision)
        return list((await session.execute(stmt)).scalars().all())


async def _audience(
    sender: Member, channel_id: str, recipients: list[Member]
) -> tuple[dict[str, Any], bytes, str]:
    audience_id = str(uuid.uuid4())
    sealed, key = envelopes.create_audience(
        sender.device_keys,
        audience_id=audience_id,
        container=channel_id,
        creator_user=sender.user.id,
        creator_device=sender.device_id,
        recipients=[envelopes.Recipient(m.device_id, m.device_keys.public()) for m in recipients],
        created_at=datetime.now(UTC),
    )
    return sealed.to_json(), key, audience_id


def _message(
    sender: Member,
    channel_id: str,
    audience_id: str,
    key: bytes,
    banner: str,
    text: bytes = b"Meeting moved to 14:00",
) -> dict[str, Any]:
    label = parse_label(banner, CATALOG, originator=sender.user.nationality)
    return envelopes.encrypt_message(
        sender.device_keys,
        key,
        text,
        message_id=str(uuid.uuid4()),
        container=channel_id,
        sender_user=sender.user.id,
        sender_device=sender.device_id,
        audience_id=audience_id,
        sent_at=datetime.now(UTC),
        label=label,
        content_type="text/plain; charset=utf-8",
    ).to_json()


async def _refused(call: Any, status: int, code: str | None = None) -> ApiError:
    with pytest.raises(ApiError) as refused:
        await call
    assert refused.value.status == status, refused.value.problem
    if code:
        assert refused.value.code == code, refused.value.problem
    return refused.value


class Three:
    """USA, GBR and FRA officers in one NATO SECRET channel."""

    def __init__(self, usa: Member, gbr: Member, fra: Member, channel: dict[str, Any]) -> None:
        self.usa, self.gbr, self.fra, self.channel = usa, gbr, fra, channel
        self.id = channel["id"]


async def _three(world: World, ceiling: str = "NATO SECRET") -> Three:
    for nation in ("USA", "GBR", "FRA"):
        await world.nation(nation)
    usa = await world.member("alice", "USA")
    gbr = await world.member("bob", "GBR")
    fra = await world.member("chloe", "FRA")
    channel = await usa.client.create_channel("liaison", ceiling)
    await usa.client.add_member("liaison", "bob")
    await usa.client.add_member("liaison", "chloe")
    return Three(usa, gbr, fra, channel)


REL_USA_GBR = "NATO SECRET//REL TO USA, GBR"


async def test_release_to_usa_and_gbr_only(world: World) -> None:
    t = await _three(world)
    audience, key, audience_id = await _audience(t.usa, t.id, [t.usa, t.gbr])
    await t.usa.client.create_audience("liaison", audience)
    accepted = await t.usa.client.submit_message(
        "liaison", _message(t.usa, t.id, audience_id, key, REL_USA_GBR)
    )
    assert accepted["label"] == REL_USA_GBR
    assert sorted(accepted["released_to"]) == sorted([t.usa.device_id, t.gbr.device_id])
    (event,) = await _events(world, "message.submit")
    assert event.decision == "allow"
    assert event.label_banner == REL_USA_GBR
    assert event.details["not_released"] == [
        {
            "user_id": t.fra.user.id,
            "nation": "FRA",
            "reasons": ["nationality FRA not in REL TO USA, GBR"],
        }
    ]

    for member in (t.usa, t.gbr):
        synced = await member.client.sync()
        (item,) = synced["items"]
        assert item["label"] == REL_USA_GBR
        # Each device gets its own envelope and no other.
        async with world.app.state.sessionmaker() as session:
            row = await session.get(AudienceEnvelope, (audience_id, member.device_id))
        assert row is not None
        assert keys.b64u_decode(item["audience"]["envelope"]) == row.envelope
        sealed = envelopes.SealedMessage.from_json(item["message"])
        audience_key = envelopes.open_audience_envelope(
            member.device_keys,
            member.device_id,
            item["audience"]["header"],
            keys.b64u_decode(item["audience"]["signature"]),
            keys.b64u_decode(item["audience"]["envelope"]),
            t.usa.device_keys.public().signing_key,
        )
        plaintext = envelopes.decrypt_message(
            sealed, audience_key, t.usa.device_keys.public().signing_key
        )
        assert plaintext == b"Meeting moved to 14:00"
    assert (await t.fra.client.sync())["items"] == []


async def test_an_audience_with_an_ineligible_device_is_refused_and_audited(world: World) -> None:
    t = await _three(world)
    audience, key, audience_id = await _audience(t.usa, t.id, [t.usa, t.gbr, t.fra])
    await t.usa.client.create_audience("liaison", audience)
    error = await _refused(
        t.usa.client.submit_message(
            "liaison", _message(t.usa, t.id, audience_id, key, REL_USA_GBR)
        ),
        403,
        "refused",
    )
    assert error.problem["ineligible"] == [
        {
            "device_id": t.fra.device_id,
            "user_id": t.fra.user.id,
            "nation": "FRA",
            "reasons": ["nationality FRA not in REL TO USA, GBR"],
        }
    ]
    assert await _count(world, Message) == 0
    (event,) = await _events(world, "message.submit", "deny")
    assert event.details["ineligible"][0]["device_id"] == t.fra.device_id
    assert event.reasons == ["nationality FRA not in REL TO USA, GBR"]


async def test_missing_eligible_devices_get_409_listing_them(world: World) -> None:
    t = await _three(world)
    audience, key, audience_id = await _audience(t.usa, t.id, [t.usa])
    await t.usa.client.create_audience("liaison", audience)
    error = await _refused(
        t.usa.client.submit_message(
            "liaison", _message(t.usa, t.id, audience_id, key, REL_USA_GBR)
        ),
        409,
        "audience-incomplete",
    )
    assert error.problem["devices"] == [t.gbr.device_id]
    assert await _count(world, Message) == 0


async def test_a_label_above_the_ceiling_is_refused(world: World) -> None:
    t = await _three(world)
    audience, key, audience_id = await _audience(t.usa, t.id, [t.usa])
    await t.usa.client.create_audience("liaison", audience)
    error = await _refused(
        t.usa.client.submit_message(
            "liaison",
            _message(t.usa, t.id, audience_id, key, "NATO TOP SECRET//REL TO USA"),
        ),
        403,
        "refused",
    )
    assert any("ceiling" in r for r in error.problem["reasons"])
    assert [e.decision for e in await _events(world, "message.submit")] == ["deny"]


async def test_a_sender_writing_above_their_own_clearance_is_refused(world: World) -> None:
    t = await _three(world)
    async with world.app.state.sessionmaker() as session, session.begin():
        await session.execute(
            update(User)
            .where(User.id == t.usa.user.id)
            .values(clearance={"policy": "NATO", "level": "CONFIDENTIAL", "categories": {}})
        )
    audience, key, audience_id = await _audience(t.usa, t.id, [t.usa, t.gbr])
    await t.usa.client.create_audience("liaison", audience)
    error = await _refused(
        t.usa.client.submit_message(
            "liaison", _message(t.usa, t.id, audience_id, key, REL_USA_GBR)
        ),
        403,
    )
    assert error.problem["reasons"] == ["clearance NATO CONFIDENTIAL below NATO SECRET"]


async def test_an_audience_made_before_a_member_left_is_refused(world: World) -> None:
    t = await _three(world)
    audience, key, audience_id = await _audience(t.usa, t.id, [t.usa, t.gbr, t.fra])
    await t.usa.client.create_audience("liaison", audience)
    await t.usa.client.remove_member("liaison", "chloe")
    error = await _refused(
        t.usa.client.submit_message(
            "liaison", _message(t.usa, t.id, audience_id, key, "NATO SECRET")
        ),
        403,
    )
    assert error.problem["ineligible"][0]["reasons"] == ["not a member"]


async def test_a_replayed_submit_is_idempotent(world: World) -> None:
    t = await _three(world)
    audience, key, audience_id = await _audience(t.usa, t.id, [t.usa, t.gbr])
    await t.usa.client.create_audience("liaison", audience)
    message = _message(t.usa, t.id, audience_id, key, REL_USA_GBR)
    first = await t.usa.client.submit_message("liaison", message)
    again = await t.usa.client.submit_message("liaison", message)
    assert first["created"] is True
    assert again["created"] is False
    assert again["seq"] == first["seq"]
    assert await _count(world, Message) == 1
    assert len(await _events(world, "message.submit")) == 1
    # The same id with other content is a conflict, not an overwrite.
    other = _message(t.usa, t.id, audience_id, key, REL_USA_GBR, b"other")
    other_header = dict(other["header"])
    other_header["message_id"] = message["header"]["message_id"]
    forged = envelopes.encrypt_message(
        t.usa.device_keys,
        key,
        b"other",
        message_id=message["header"]["message_id"],
        container=t.id,
        sender_user=t.usa.user.id,
        sender_device=t.usa.device_id,
        audience_id=audience_id,
        sent_at=datetime.now(UTC),
        label=message["header"]["label"],
        content_type="text/plain; charset=utf-8",
    ).to_json()
    await _refused(t.usa.client.submit_message("liaison", forged), 409)


@pytest.mark.parametrize("field", ["label", "container", "sender_device", "body", "signature"])
async def test_tampered_messages_are_refused(world: World, field: str) -> None:
    t = await _three(world)
    audience, key, audience_id = await _audience(t.usa, t.id, [t.usa, t.gbr])
    await t.usa.client.create_audience("liaison", audience)
    message = _message(t.usa, t.id, audience_id, key, REL_USA_GBR)
    if field == "label":
        message["header"]["label"]["rel_to"] = ["USA", "GBR", "FRA"]
    elif field == "container":
        message["header"]["container"] = str(uuid.uuid4())
    elif field == "sender_device":
        message["header"]["sender_device"] = t.gbr.device_id
    elif field == "body":
        body = bytearray(keys.b64u_decode(message["body"]))
        body[-1] ^= 1
        message["body"] = keys.b64u_encode(bytes(body))
    else:
        message["signature"] = keys.b64u_encode(b"\x00" * 64)
    await _refused(t.usa.client.submit_message("liaison", message), 422)
    assert await _count(world, Message) == 0


async def test_a_body_moved_to_another_header_is_refused(world: World) -> None:
    t = await _three(world)
    audience, key, audience_id = await _audience(t.usa, t.id, [t.usa, t.gbr])
    await t.usa.client.create_audience("liaison", audience)
    first = _message(t.usa, t.id, audience_id, key, REL_USA_GBR, b"first")
    second = _message(t.usa, t.id, audience_id, key, REL_USA_GBR, b"second")
    first["body"] = second["body"]
    await _refused(t.usa.client.submit_message("liaison", first), 422)


@pytest.mark.parametrize(
    "attack", ["other-creator", "stranger-device", "wrong-keys", "missing-envelope"]
)
async def test_bad_audiences_are_refused(world: World, attack: str) -> None:
    t = await _three(world)
    outsider = await world.member("dave", "USA")
    recipients = [t.usa, t.gbr]
    signer = t.usa
    if attack == "stranger-device":
        recipients = [t.usa, outsider]
    audience, _, _ = await _audience(signer, t.id, recipients)
    if attack == "other-creator":
        audience, _, _ = await _audience(t.gbr, t.id, recipients)
    elif attack == "wrong-keys":
        fake = Member(
            t.gbr.user, t.gbr.keystore, t.gbr.device_id, keys.DeviceKeys.generate(), t.gbr.client
        )
        audience, _, _ = await _audience(t.usa, t.id, [t.usa, fake])
    elif attack == "missing-envelope":
        audience["envelopes"].pop(t.gbr.device_id)
    await _refused(t.usa.client.create_audience("liaison", audience), 422)


async def test_oversized_bodies_are_refused(world: World) -> None:
    t = await _three(world)
    audience, key, audience_id = await _audience(t.usa, t.id, [t.usa, t.gbr])
    await t.usa.client.create_audience("liaison", audience)
    message = _message(t.usa, t.id, audience_id, key, REL_USA_GBR)
    message["body"] = keys.b64u_encode(b"\x00" * 300_000)
    await _refused(t.usa.client.submit_message("liaison", message), 422)


async def test_non_members_see_nothing(world: World) -> None:
    t = await _three(world)
    outsider = await world.member("dave", "USA")
    await _refused(outsider.client.channel("liaison"), 404)
    await _refused(outsider.client.roster("liaison"), 404)
    audience, _, _ = await _audience(outsider, t.id, [outsider])
    await _refused(outsider.client.create_audience("liaison", audience), 404)
    assert [c["name"] for c in await outsider.client.channels()] == []


async def test_members_must_be_cleared_for_the_ceiling(world: World) -> None:
    await world.nation("USA")
    await world.nation("FRA")
    alice = await world.member("alice", "USA")
    await world.member("low", "USA", clearance="NATO CONFIDENTIAL")
    await world.member("chloe", "FRA")
    await alice.client.create_channel("bilateral", "NATO SECRET//REL TO USA, GBR")
    error = await _refused(alice.client.add_member("bilateral", "low"), 403, "refused")
    assert error.problem["reasons"] == ["clearance NATO CONFIDENTIAL below NATO SECRET"]
    error = await _refused(alice.client.add_member("bilateral", "chloe"), 403)
    assert error.problem["reasons"] == ["nationality FRA not in REL TO USA, GBR"]
    denied = await _events(world, "channel.member_add", "deny")
    assert len(denied) == 2


async def test_channel_creation_checks_labels(world: World) -> None:
    await world.nation("USA")
    alice = await world.member("alice", "USA")
    low = await world.member("low", "USA", clearance="NATO CONFIDENTIAL")
    await _refused(low.client.create_channel("c1", "NATO SECRET"), 403)
    error = await _refused(alice.client.create_channel("c2", "NATO SEKRET"), 422)
    assert "SEKRET" in error.detail
    error = await _refused(
        alice.client.create_channel("c3", "NATO CONFIDENTIAL", labels=["NATO SECRET"]), 422
    )
    assert "exceeds the ceiling" in error.detail
    made = await alice.client.create_channel(
        "c4",
        "NATO SECRET",
        labels=["NATO CONFIDENTIAL", "NATO SECRET//REL TO USA"],
        default_label="NATO CONFIDENTIAL",
    )
    assert made["default_label"] == "NATO CONFIDENTIAL"
    await _refused(alice.client.create_channel("c4", "NATO SECRET"), 409)


async def test_delivery_is_decided_again(world: World) -> None:
    t = await _three(world)
    audience, key, audience_id = await _audience(t.usa, t.id, [t.usa, t.gbr, t.fra])
    await t.usa.client.create_audience("liaison", audience)
    await t.usa.client.submit_message(
        "liaison", _message(t.usa, t.id, audience_id, key, "NATO SECRET")
    )
    # Bob's clearance is lowered and Chloe leaves, after the message was sent.
    async with world.app.state.sessionmaker() as session, session.begin():
        await session.execute(
            update(User)
            .where(User.id == t.gbr.user.id)
            .values(clearance={"policy": "NATO", "level": "CONFIDENTIAL", "categories": {}})
        )
    await t.fra.client.remove_member("liaison", "chloe")
    assert (await t.gbr.client.sync())["items"] == []
    assert (await t.fra.client.sync())["items"] == []
    assert len((await t.usa.client.sync())["items"]) == 1
    # Asking again does not audit the same withholding twice.
    await t.gbr.client.sync()
    withheld = await _events(world, "message.withhold", "deny")
    assert sorted(e.actor_user_id or "" for e in withheld) == sorted([t.gbr.user.id, t.fra.user.id])
    reasons = {e.actor_user_id: e.reasons for e in withheld}
    assert reasons[t.gbr.user.id] == ["clearance NATO CONFIDENTIAL below NATO SECRET"]
    assert reasons[t.fra.user.id] == ["not a member"]
    # Withholdings are recorded, once per device; deliveries are not (the recipients are
    # named by the submit's audit event, a device's progress is its cursor).
    assert await _count(world, Delivery) == 2


async def test_sync_pages_in_order(world: World) -> None:
    t = await _three(world)
    audience, key, audience_id = await _audience(t.usa, t.id, [t.usa, t.gbr, t.fra])
    await t.usa.client.create_audience("liaison", audience)
    for _ in range(5):
        await t.usa.client.submit_message(
            "liaison", _message(t.usa, t.id, audience_id, key, "NATO SECRET")
        )
    seen: list[int] = []
    cursor = 0
    while True:
        page = await t.gbr.client.sync(after=cursor, limit=2)
        seen += [item["seq"] for item in page["items"]]
        cursor = page["cursor"]
        if not page["more"]:
            break
    assert seen == sorted(seen)
    assert len(seen) == 5


async def test_a_revoked_device_neither_sends_nor_receives(world: World) -> None:
    t = await _three(world)
    audience, key, audience_id = await _audience(t.usa, t.id, [t.usa, t.gbr, t.fra])
    await t.usa.client.create_audience("liaison", audience)
    await t.gbr.client.revoke_device(t.gbr.device_id, "stolen")
    await _refused(t.gbr.client.sync(), 401)
    error = await _refused(
        t.usa.client.submit_message(
            "liaison", _message(t.usa, t.id, audience_id, key, "NATO SECRET")
        ),
        403,
    )
    assert error.problem["ineligible"][0]["device_id"] == t.gbr.device_id
    fresh, _, _ = await _audience(t.usa, t.id, [t.usa, t.gbr, t.fra])
    await _refused(t.usa.client.create_audience("liaison", fresh), 422)


async def test_a_channel_first_read_by_a_request_that_rolls_back_stays_usable(
    world: World,
) -> None:
    # The channel is first looked up by id here, by a submit refused with 412 (its session
    # rolls back): the cached channel must not be that session's, now expired, instance.
    t = await _three(world)
    audience, key, audience_id = await _audience(t.usa, t.id, [t.usa, t.gbr])
    await t.usa.client.create_audience("liaison", audience)  # by name: the id is not cached
    sealed = _message(t.usa, t.id, audience_id, key, REL_USA_GBR)
    await _refused(
        t.usa.client.submit_message(t.id, sealed, roster_tag='"stale"'), 412, "roster-changed"
    )
    assert (await t.usa.client.channel(t.id))["id"] == t.id
    accepted = await t.usa.client.submit_message(t.id, sealed)
    assert accepted["created"] is True
