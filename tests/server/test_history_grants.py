"""History grants (PROTOCOL.md §16.7): a member who joins later is given, by a member's client
that holds the keys, the past items whose own label admits them. The server checks the labels,
the window and each device's eligibility with the submit's decide; it refuses, and audits, a
grant to a device the label does not admit; the first grant wins and repeats are idempotent,
also when sent many times at once."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from clients.sdk import ApiError
from protocol import envelopes, grants, keys
from server.audit.models import AuditEvent
from server.channels.models import Message
from server.directory.models import User
from server.releases.models import ItemGrant
from tests.factories import Member, World
from tests.race import Call, assert_no_server_error, describe, race, race_same
from tests.server.test_channels import REL_USA_GBR, Three, _audience, _message, _three

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

REL_USA = "NATO SECRET//REL TO USA"


@dataclass
class Later:
    t: Three
    shared: dict[str, Any]  # REL TO USA, GBR: alice and bob hold it
    shared_key: bytes
    usa_only: dict[str, Any]  # REL TO USA: alice alone holds it
    usa_key: bytes
    dave: Member  # USA, joined after both were sent
    gary: Member  # GBR, joined after both were sent


async def _later(world: World) -> Later:
    t = await _three(world)
    audience, shared_key, audience_id = await _audience(t.usa, t.id, [t.usa, t.gbr])
    await t.usa.client.create_audience("liaison", audience)
    shared = _message(t.usa, t.id, audience_id, shared_key, REL_USA_GBR)
    await t.usa.client.submit_message("liaison", shared)
    audience, usa_key, audience_id = await _audience(t.usa, t.id, [t.usa])
    await t.usa.client.create_audience("liaison", audience)
    usa_only = _message(t.usa, t.id, audience_id, usa_key, REL_USA, b"For US eyes")
    await t.usa.client.submit_message("liaison", usa_only)
    dave = await world.member("dave", "USA")
    gary = await world.member("gary", "GBR")
    await t.usa.client.add_member("liaison", "dave")
    await t.usa.client.add_member("liaison", "gary")
    return Later(t, shared, shared_key, usa_only, usa_key, dave, gary)


def _history_grant(
    grantor: Member,
    message: dict[str, Any],
    audience_key: bytes,
    recipients: list[Member],
    channel_id: str,
    **fields: Any,
) -> dict[str, Any]:
    values: dict[str, Any] = {
        "grant_id": str(uuid.uuid4()),
        "request_id": None,
        "item_type": "message",
        "item_id": message["header"]["message_id"],
        "container": channel_id,
        "grantor_user": grantor.user.id,
        "grantor_device": grantor.device_id,
        "previous_label": message["header"]["label"],
        "label": message["header"]["label"],
        "recipients": [
            envelopes.Recipient(m.device_id, m.device_keys.public()) for m in recipients
        ],
        "created_at": datetime.now(UTC),
    }
    item_key = envelopes.message_key(audience_key, message["header"])
    return grants.create_grant(grantor.device_keys, item_key, **(values | fields)).to_json()


async def _history(member: Member) -> dict[str, Any]:
    return await member.client.request("GET", "/v1/channels/liaison/history")  # type: ignore[no-any-return]


async def _post(member: Member, sealed: dict[str, Any]) -> dict[str, Any]:
    return await member.client.request(  # type: ignore[no-any-return]
        "POST", "/v1/channels/liaison/history", json={"grant": sealed}
    )


async def _events(world: World) -> list[AuditEvent]:
    async with world.app.state.sessionmaker() as session:
        stmt = (
            select(AuditEvent).where(AuditEvent.action == "history.grant").order_by(AuditEvent.id)
        )
        return list((await session.execute(stmt)).scalars())


async def test_a_member_who_joined_later_is_given_what_the_label_admits(world: World) -> None:
    w = await _later(world)
    t = w.t
    shared_id = w.shared["header"]["message_id"]
    usa_id = w.usa_only["header"]["message_id"]
    # Before any grant the newcomers see nothing in sync, but the history says what waits.
    assert (await w.dave.client.sync())["items"] == []
    waiting = (await _history(w.dave))["waiting"]
    assert [(i["item_id"], i["label"]) for i in waiting] == [
        (shared_id, REL_USA_GBR),
        (usa_id, REL_USA),
    ]
    # Gary (GBR) waits only for what is releasable to GBR.
    assert [i["item_id"] for i in (await _history(w.gary))["waiting"]] == [shared_id]
    # Alice holds both: the first is due to both newcomers, the second to dave alone.
    due = {i["item_id"]: i["devices"] for i in (await _history(t.usa))["due"]}
    assert due == {
        shared_id: sorted([w.dave.device_id, w.gary.device_id]),
        usa_id: [w.dave.device_id],
    }
    assert (await _history(t.usa))["history_days"] == 90
    # Bob (GBR), who holds the first, shares it with both.
    sealed = _history_grant(t.gbr, w.shared, w.shared_key, [w.dave, w.gary], t.id)
    granted = await _post(t.gbr, sealed)
    assert granted["created"] is True
    assert granted["devices"] == sorted([w.dave.device_id, w.gary.device_id])
    (item,) = (await w.dave.client.sync())["items"]
    assert item["label"] == REL_USA_GBR
    assert item["audience"]["envelope"] is None
    grant = item["grant"]
    header = grants.check_grant_header(grant["header"])
    assert header.is_history
    item_key = grants.open_grant(
        w.dave.device_keys,
        w.dave.device_id,
        grant["header"],
        keys.b64u_decode(grant["signature"]),
        keys.b64u_decode(grant["envelope"]),
        t.gbr.device_keys.public().signing_key,
    )
    plaintext = envelopes.decrypt_with_item_key(
        envelopes.SealedMessage.from_json(item["message"]),
        item_key,
        t.usa.device_keys.public().signing_key,
    )
    assert plaintext == b"Meeting moved to 14:00"
    # Sent again: the same answer, nothing stored twice.
    again = await w.dave.client.request("GET", "/v1/channels/liaison/history")
    assert [i["item_id"] for i in again["waiting"]] == [usa_id]
    repeat = await _post(t.gbr, sealed)
    assert repeat["created"] is False
    assert repeat["grant_id"] == granted["grant_id"]
    (event,) = await _events(world)
    assert event.decision == "allow"
    assert event.object_id == shared_id
    assert {e["device_id"] for e in event.details["granted_to"]} == {
        w.dave.device_id,
        w.gary.device_id,
    }
    # The sender sees who it was shared with, and by which grant.
    view = await t.usa.client.request("GET", f"/v1/messages/{shared_id}/recipients")
    shared_with = {r["username"]: r["grant_id"] for r in view["released_to"] if r["shared"]}
    assert shared_with == {"dave": granted["grant_id"], "gary": granted["grant_id"]}
    assert not any(r["grant_id"] for r in view["released_to"] if not r["shared"])
    # What is left due: the second message to dave.
    assert [(i["item_id"], i["devices"]) for i in (await _history(t.usa))["due"]] == [
        (usa_id, [w.dave.device_id])
    ]


async def test_a_grant_to_a_device_the_label_does_not_admit_is_refused_and_audited(
    world: World,
) -> None:
    w = await _later(world)
    t = w.t
    # Gary is GBR; the message is REL TO USA: his device gets nothing.
    sealed = _history_grant(t.usa, w.usa_only, w.usa_key, [w.dave, w.gary], t.id)
    with pytest.raises(ApiError) as refused:
        await _post(t.usa, sealed)
    assert refused.value.status == 403
    assert refused.value.code == "refused"
    assert "GBR" in refused.value.detail
    (event,) = await _events(world)
    assert event.decision == "deny"
    assert event.object_id == w.usa_only["header"]["message_id"]
    assert any("GBR" in r for r in event.reasons)
    assert [d["device_id"] for d in event.details["devices"]] == [w.gary.device_id]
    assert (await w.gary.client.sync())["items"] == []
    assert (await w.dave.client.sync())["items"] == []  # nothing of a refused grant is kept
    # A device that is not a member's at all is refused too.
    sealed = _history_grant(t.usa, w.usa_only, w.usa_key, [t.fra], t.id)
    await t.usa.client.remove_member("liaison", "chloe")
    with pytest.raises(ApiError) as outsider:
        await _post(t.usa, sealed)
    assert outsider.value.status == 403


async def test_the_first_grant_wins_and_the_labels_cannot_change(world: World) -> None:
    w = await _later(world)
    t = w.t
    await _post(t.gbr, _history_grant(t.gbr, w.shared, w.shared_key, [w.dave], t.id))
    # Alice's grant comes second: dave holds the item already.
    with pytest.raises(ApiError) as second:
        await _post(t.usa, _history_grant(t.usa, w.shared, w.shared_key, [w.dave], t.id))
    assert second.value.status == 409
    # A history grant may not widen, nor claim another label than the item's.
    wider = {**w.shared["header"]["label"], "rel_to": ["USA", "GBR", "FRA"]}
    for fields in ({"label": wider}, {"previous_label": wider, "label": wider}):
        sealed = _history_grant(t.usa, w.shared, w.shared_key, [w.gary], t.id, **fields)
        with pytest.raises(ApiError) as mismatch:
            await _post(t.usa, sealed)
        assert mismatch.value.status == 422
    # A grant that names a release request belongs to /v1/releases.
    sealed = _history_grant(
        t.usa, w.shared, w.shared_key, [w.gary], t.id, request_id=str(uuid.uuid4())
    )
    with pytest.raises(ApiError) as release:
        await _post(t.usa, sealed)
    assert release.value.status == 422
    # Dave holds no key for the second message: he cannot grant it (404, audited).
    sealed = _history_grant(w.dave, w.usa_only, w.usa_key, [w.dave], t.id)
    with pytest.raises(ApiError) as holder:
        await _post(w.dave, sealed)
    assert holder.value.status == 404
    assert [e.decision for e in await _events(world)] == ["allow", "deny"]


async def test_only_items_within_the_history_window_are_granted(world: World) -> None:
    w = await _later(world)
    t = w.t
    with pytest.raises(ApiError) as not_creator:
        await t.gbr.client.request("PUT", "/v1/channels/liaison/history-window", json={"days": 1})
    assert not_creator.value.status == 403
    answer = await t.usa.client.request(
        "PUT", "/v1/channels/liaison/history-window", json={"days": 30}
    )
    assert answer == {"channel_id": t.id, "history_days": 30}
    # The first message was sent 40 days ago.
    shared_id = w.shared["header"]["message_id"]
    async with world.app.state.sessionmaker() as session, session.begin():
        await session.execute(
            update(Message)
            .where(Message.id == shared_id)
            .values(created_at=datetime.now(UTC) - timedelta(days=40))
        )
    assert [i["item_id"] for i in (await _history(w.dave))["waiting"]] == [
        w.usa_only["header"]["message_id"]
    ]
    assert shared_id not in {i["item_id"] for i in (await _history(t.usa))["due"]}
    with pytest.raises(ApiError) as old:
        await _post(t.gbr, _history_grant(t.gbr, w.shared, w.shared_key, [w.dave], t.id))
    assert old.value.status == 403
    (event,) = await _events(world)
    assert event.decision == "deny"
    assert event.reasons == ["sent before the channel's history window of 30 days"]


async def test_one_history_grant_sent_eight_times_at_once_is_stored_once(
    world: World, live_url: str
) -> None:
    w = await _later(world)
    t = w.t
    sealed = _history_grant(t.gbr, w.shared, w.shared_key, [w.dave, w.gary], t.id)
    call = Call(
        "POST",
        "/v1/channels/liaison/history",
        json={"grant": sealed},
        headers={"Authorization": f"Bearer {t.gbr.client.token}"},
    )
    responses = await race_same(live_url, call, 8)
    assert_no_server_error(responses)
    assert sorted(r.status_code for r in responses) == [200] * 7 + [201], describe(responses)
    assert sorted(r.json()["created"] for r in responses) == [False] * 7 + [True]
    async with world.app.state.sessionmaker() as session:
        assert (await session.execute(select(func.count()).select_from(ItemGrant))).scalar() == 1
    assert [e.decision for e in await _events(world)] == ["allow"]
    assert len((await w.dave.client.sync())["items"]) == 1


async def test_a_member_cleared_higher_is_given_what_was_sent_meanwhile(world: World) -> None:
    t = await _three(world)
    # Bob (GBR) is cleared NATO CONFIDENTIAL while alice sends: he is not in the audience.
    await _clear(world, t.gbr.user.id, "CONFIDENTIAL")
    audience, key, audience_id = await _audience(t.usa, t.id, [t.usa])
    await t.usa.client.create_audience("liaison", audience)
    message = _message(t.usa, t.id, audience_id, key, REL_USA_GBR)
    await t.usa.client.submit_message("liaison", message)
    assert (await _history(t.usa))["due"] == []
    sealed = _history_grant(t.usa, message, key, [t.gbr], t.id)
    with pytest.raises(ApiError) as low:
        await _post(t.usa, sealed)
    assert low.value.status == 403
    assert "clearance NATO CONFIDENTIAL below NATO SECRET" in low.value.detail
    # Cleared NATO SECRET again: the message is due to him, and the grant goes.
    await _clear(world, t.gbr.user.id, "SECRET")
    assert [i["devices"] for i in (await _history(t.usa))["due"]] == [[t.gbr.device_id]]
    assert (await _post(t.usa, _history_grant(t.usa, message, key, [t.gbr], t.id)))["created"]
    (item,) = (await t.gbr.client.sync())["items"]
    assert item["grant"]["header"]["request_id"] is None
    assert [e.decision for e in await _events(world)] == ["deny", "allow"]


async def _clear(world: World, user_id: str, level: str) -> None:
    async with world.app.state.sessionmaker() as session, session.begin():
        user = await session.get(User, user_id)
        assert user is not None
        user.clearance = {"policy": "NATO", "level": level, "categories": {}}


async def test_two_members_sharing_at_once_store_one_grant(world: World, live_url: str) -> None:
    w = await _later(world)
    t = w.t
    calls = [
        Call(
            "POST",
            "/v1/channels/liaison/history",
            json={"grant": _history_grant(member, w.shared, w.shared_key, [w.dave], t.id)},
            headers={"Authorization": f"Bearer {member.client.token}"},
        )
        for member in (t.usa, t.gbr)
    ]
    responses = await race(live_url, [calls[0]] * 4 + [calls[1]] * 4)
    assert_no_server_error(responses)
    created = [r for r in responses if r.status_code == 201]
    assert len(created) == 1, describe(responses)
    winner = responses.index(created[0]) // 4
    statuses = [r.status_code for r in responses]
    mine, theirs = statuses[4 * winner : 4 * winner + 4], statuses[4 - 4 * winner : 8 - 4 * winner]
    assert sorted(mine) == [200, 200, 200, 201], describe(responses)
    assert theirs == [409] * 4, describe(responses)
    async with world.app.state.sessionmaker() as session:
        assert (await session.execute(select(func.count()).select_from(ItemGrant))).scalar() == 1
    assert [e.decision for e in await _events(world)] == ["allow"]
