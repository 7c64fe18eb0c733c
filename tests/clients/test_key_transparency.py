"""Key transparency on by default (PROTOCOL.md §19.4, docs/client.md): the audit key pinned at
enrolment, the largest checkpoint kept in the home across runs, and a Messenger (so the CLI)
that seals only to devices the key directory shows active with their certified keys.

The malicious server is played on the default path, on SQLite and PostgreSQL: a device whose
keys the log never registered (with a certificate a nation's key signed for them), a revoked
device the server's directory shows active again, and a checkpoint that does not extend the
one kept by a previous run. Each is refused by the SDK and by ``attache send`` with a sentence
naming what was wrong, and no key is sealed to the device. The server here integrates every
second, as by default, so a device enrolled moments ago is waited for and sealed to.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from clients.sdk import MessagingError
from clients.sdk.keystore import KeystoreError
from protocol import keys
from server.audit.models import AuditEvent
from server.channels.models import Audience
from server.devices.models import Device
from tests.clients.test_cli_messages import _fails, _invoke, _ok
from tests.factories import Member, World, messenger

REL_USA_GBR = "NATO SECRET//REL TO USA, GBR"


@dataclass
class Three:
    alice: Member
    bob: Member
    chloe: Member


@pytest.fixture
async def three(world: World, live: str) -> Three:
    for nation in ("USA", "GBR", "FRA"):
        await world.nation(nation)
    alice = await world.member("alice", "USA")
    bob = await world.member("bob", "GBR")
    chloe = await world.member("chloe", "FRA")
    await alice.client.create_channel("liaison", "NATO SECRET")
    await alice.client.add_member("liaison", "bob")
    await alice.client.add_member("liaison", "chloe")
    return Three(alice, bob, chloe)


async def _sealed_to(world: World) -> set[str]:
    """Every device any stored audience holds a key for."""
    async with world.app.state.sessionmaker() as session:
        audiences = (await session.execute(select(Audience))).scalars().all()
    held: set[str] = set()
    for audience in audiences:
        held.update(str(d) for d in audience.header["devices"])
    return held


async def test_enrolment_pins_the_audit_key_and_a_send_keeps_the_checkpoint(
    three: Three,
) -> None:
    served = await three.alice.client.request("GET", "/v1/audit/key")
    assert three.alice.keystore.audit_key() == served["vkey"]
    assert three.alice.keystore.held_checkpoint() is None
    sent = await (await messenger(three.alice)).send("liaison", "hello", label=REL_USA_GBR)
    assert three.bob.device_id in sent.released_to
    assert sent.excluded == ()
    held = three.alice.keystore.held_checkpoint()
    assert held is not None
    stored = json.loads((three.alice.keystore.home / "transparency.json").read_text())
    assert stored["vkey"] == served["vkey"]
    assert stored["checkpoint"]["size"] == held[0]
    assert oct(os.stat(three.alice.keystore.home / "transparency.json").st_mode & 0o777) == "0o600"


async def test_a_device_enrolled_moments_ago_is_waited_for_and_sealed_to(
    three: Three, world: World
) -> None:
    """A device certified after the latest checkpoint is not in the directory until the
    integrator's next batch (a second here, by default): the send waits for it."""
    am = await messenger(three.alice)
    await am.send("liaison", "before")
    dan = await world.member("dan", "GBR")
    await three.alice.client.add_member("liaison", "dan")
    sent = await am.send("liaison", "welcome", label=REL_USA_GBR)
    assert dan.device_id in sent.released_to
    assert sent.excluded == ()
    out = await _ok(dan, "send", "--channel", "liaison", "thanks")
    assert "released to 4 device(s)" in out


async def test_a_home_from_before_pins_the_audit_key_on_first_use(
    three: Three, caplog: pytest.LogCaptureFixture
) -> None:
    """A home enrolled before key transparency has no transparency.json: the server's audit
    key is pinned at the next open, said as a warning, and held to from then on."""
    (three.alice.keystore.home / "transparency.json").unlink()
    with caplog.at_level(logging.WARNING, logger="attache.sdk"):
        am = await messenger(three.alice)
    assert "pinned the server's audit key" in caplog.text
    served = await three.alice.client.request("GET", "/v1/audit/key")
    assert three.alice.keystore.audit_key() == served["vkey"]
    await am.send("liaison", "hello")
    assert three.alice.keystore.held_checkpoint() is not None
    with pytest.raises(KeystoreError, match="another audit key"):
        three.alice.keystore.pin_audit_key("example.org+00000000+AAAA")


async def test_keys_the_log_never_registered_are_refused(three: Three, world: World) -> None:
    """The server swaps bob's device keys for its own, with a certificate the GBR authority
    signed for them (a coerced or stolen nation key): the certificate verifies, but the key
    directory holds the keys bob's device registered, so neither the SDK nor the CLI seals to
    the new ones."""
    planted = keys.DeviceKeys.generate().public()
    async with world.app.state.sessionmaker() as session:
        row = await session.get(Device, three.bob.device_id)
        assert row is not None
        assert row.certificate is not None
        vouched = keys.DeviceCertificate.from_json(row.certificate).body
    now = datetime.now(UTC)
    certificate = keys.issue_certificate(
        world.authorities["GBR"],
        device_id=three.bob.device_id,
        user_id=three.bob.user.id,
        username="bob",
        nationality="GBR",
        clearance=vouched["clearance"],
        device_keys=planted,
        issued_at=now - timedelta(minutes=1),
        expires_at=now + timedelta(days=1),
    )
    await _ok(three.alice, "send", "--channel", "liaison", "logged first")
    before = await _sealed_to(world)
    async with world.app.state.sessionmaker() as session, session.begin():
        await session.execute(
            update(Device)
            .where(Device.id == three.bob.device_id)
            .values(
                signing_key=planted.signing_key,
                encryption_key=planted.encryption_key,
                certificate=certificate.to_json(),
            )
        )
    with pytest.raises(MessagingError) as refused:
        await (await messenger(three.alice)).send("liaison", "secret", label=REL_USA_GBR)
    said = str(refused.value)
    assert f"device {three.bob.device_id} of bob" in said
    assert "the key directory has other keys for device" in said
    out = await _fails(three.alice, "send", "--channel", "liaison", "--label", REL_USA_GBR, "x")
    assert f"device {three.bob.device_id} of bob" in out
    assert "the key directory has other keys for device" in out
    assert "Traceback" not in out
    assert await _sealed_to(world) == before  # no audience made for the planted keys


async def test_a_revoked_device_the_server_shows_active_is_refused(
    three: Three, world: World
) -> None:
    """chloe's device is revoked (logged); the server then lists it as active again: the
    directory shows it revoked, so it is left out, naming why, by the SDK and the CLI."""
    await three.alice.client.create_channel("trio", "NATO SECRET")
    await three.alice.client.add_member("trio", "chloe")
    await three.chloe.client.revoke_device(three.chloe.device_id, "lost")
    await _revived(world, three.chloe.device_id)
    said = await _refused_or_excluded(three, "trio", three.chloe.device_id)
    assert f"device {three.chloe.device_id} is revoked in the key directory" in said
    out = await _invoke_send(three.alice, "trio")
    assert f"device {three.chloe.device_id}" in out
    assert "is revoked in the key directory" in out
    assert three.chloe.device_id not in await _sealed_to(world)


async def _revived(world: World, device_id: str) -> None:
    """Once the revocation is logged, mark the device active again in the database: the
    lying server's directory."""
    await _wait_logged(world)
    async with world.app.state.sessionmaker() as session, session.begin():
        await session.execute(
            update(Device).where(Device.id == device_id).values(status="active", revoked_at=None)
        )


async def _wait_logged(world: World) -> None:
    """Until the integrator has logged every event written so far."""
    for _ in range(200):
        async with world.app.state.sessionmaker() as session:
            pending = (
                await session.execute(select(AuditEvent).where(AuditEvent.leaf_index.is_(None)))
            ).first()
        if pending is None:
            await asyncio.sleep(0.1)
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the integrator did not log the events")


async def _refused_or_excluded(three: Three, channel: str, device_id: str) -> str:
    """What the SDK said of ``device_id`` on a send to ``channel``: the refusal, when the
    server insisted on the device, else the exclusion's reason."""
    am = await messenger(three.alice)
    try:
        sent = await am.send(channel, "hello")
    except MessagingError as exc:
        return str(exc)  # the server insisted on the device: the refusal names it
    assert device_id not in sent.released_to
    (excluded,) = [d for d in sent.excluded if d.device_id == device_id]
    return excluded.reason


async def _invoke_send(member: Member, channel: str) -> str:
    result = await _invoke(member, "send", "--channel", channel, "hello")
    assert result.exit_code in (0, 1), result.output
    assert "Traceback" not in result.output
    return result.output


@pytest.mark.parametrize("how", ["forked", "rolled back"])
async def test_a_checkpoint_that_does_not_extend_the_one_kept_is_refused(
    three: Three, world: World, how: str
) -> None:
    """A previous run kept a checkpoint; the server now shows a log that does not extend it
    (played by changing what the home kept: a root the log never had, or a size it has not
    reached). Nothing is sealed to anyone, and both the SDK and the CLI say the log forked or
    was rolled back."""
    await _ok(three.alice, "send", "--channel", "liaison", "first run")
    held = three.alice.keystore.held_checkpoint()
    assert held is not None
    path = three.alice.keystore.home / "transparency.json"
    stored = json.loads(path.read_text())
    if how == "forked":
        stored["checkpoint"]["root"] = keys.b64u_encode(os.urandom(32))
        expected = "forked"
    else:
        stored["checkpoint"]["size"] = held[0] + 1000
        expected = f"older than the one of size {held[0] + 1000} seen before"
    path.write_text(json.dumps(stored))
    before = await _sealed_to(world)
    with pytest.raises(MessagingError) as refused:
        await (await messenger(three.alice)).send("liaison", "second run", label=REL_USA_GBR)
    assert str(refused.value).startswith("not sent: the server's key directory is refused")
    assert expected in str(refused.value)
    out = await _fails(three.alice, "send", "--channel", "liaison", "third run")
    assert "the server's key directory is refused" in out
    assert expected in out
    assert await _sealed_to(world) == before
