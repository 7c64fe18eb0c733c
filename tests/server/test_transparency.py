"""Key transparency on the server (PROTOCOL.md §19): every checkpoint ends in the key
directory, any member fetches a device's bundle, the client's check (protocol/transparency.py)
accepts an honest one and refuses a lying server's, and auditors recompute each directory
leaf (clients/sdk/audit.py). On SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from clients.sdk import ApiError, MessagingError
from clients.sdk.audit import verify_log
from clients.sdk.transparency import DeviceTransparency, TransparencyError
from protocol import checkpoint as notes
from protocol import keys
from protocol import transparency as kt
from server.audit import transparency as server_transparency
from server.audit.integrator import integrate
from server.audit.models import AuditCheckpoint, AuditEvent, KeyDirectoryEntry
from tests.factories import Member, World, messenger


async def _integrate(world: World) -> AuditCheckpoint | None:
    async with world.app.state.sessionmaker() as session, session.begin():
        return await integrate(session, world.app.state.audit_signer)


async def _leaves(world: World) -> list[tuple[int, str]]:
    async with world.app.state.sessionmaker() as session:
        stmt = (
            select(AuditEvent.leaf_index, AuditEvent.body)
            .where(AuditEvent.leaf_index.is_not(None))
            .order_by(AuditEvent.leaf_index)
        )
        return [(int(i), str(b)) for i, b in (await session.execute(stmt)).all()]


async def _coalition(world: World) -> tuple[Member, Member, Member]:
    await world.nation("USA")
    await world.nation("GBR")
    alice = await world.member("alice", "USA")
    bob = await world.member("bob", "GBR")
    auditor = await world.member("audrey", None, roles=("auditor",))
    await _integrate(world)
    return alice, bob, auditor


async def _log_key(member: Member) -> notes.NoteVerifier:
    answer = await member.client.request("GET", "/v1/audit/key")
    return notes.NoteVerifier.from_vkey(answer["vkey"])


async def _bundle(member: Member, device_id: str, old: int = 0) -> dict[str, Any]:
    return dict(
        await member.client.request(
            "GET", f"/v1/devices/{device_id}/transparency", params={"old": old}
        )
    )


def _check(
    bundle: dict[str, Any],
    log_key: notes.NoteVerifier,
    device: Member,
    held: tuple[int, bytes] | None = None,
) -> kt.VerifiedDevice:
    return kt.verify_device(
        bundle,
        log_key=log_key,
        device_id=device.device_id,
        user_id=device.user.id,
        signing_key=device.device_keys.public().signing_key,
        encryption_key=device.device_keys.public().encryption_key,
        held=held,
    )


async def test_every_checkpoint_ends_in_the_key_directory_of_the_events_before_it(
    world: World,
) -> None:
    alice, _, _ = await _coalition(world)
    await alice.client.create_channel("liaison", "NATO SECRET")  # no key event
    second = await _integrate(world)
    assert second is not None
    assert await _integrate(world) is None  # nothing pending: no leaf, no checkpoint
    leaves = await _leaves(world)
    assert len(leaves) == second.size
    directory = kt.KeyDirectory()
    directory_leaves = []
    for index, body in leaves:
        leaf = kt.parse_leaf(body)
        assert directory.apply(index, leaf) is None
        if leaf["action"] == kt.DIRECTORY_ACTION:
            directory_leaves.append(index)
            assert kt.parse_directory_leaf(leaf) == directory.root()
            assert leaf["details"]["via"] == "integrator"
    async with world.app.state.sessionmaker() as session:
        sizes = (await session.execute(select(AuditCheckpoint.size))).scalars().all()
    # Each checkpoint's last leaf, and only those, is a directory leaf.
    assert sorted(directory_leaves) == sorted(size - 1 for size in sizes)
    assert len(directory) == 3  # alice, bob and audrey's devices
    assert {e.status for e in directory.entries()} == {"active"}


async def test_a_member_proves_a_peers_device_active_then_revoked(world: World) -> None:
    alice, bob, _ = await _coalition(world)
    log_key = await _log_key(bob)
    first = _check(await _bundle(bob, alice.device_id), log_key, alice)
    assert first.entry.status == "active"
    # What is served is public: the registration leaf holds public keys and ids only.
    bundle = await _bundle(bob, alice.device_id)
    registration = kt.parse_leaf(bundle["registration"]["leaf"])
    assert registration["action"] == "device.register"
    assert set(registration["details"]) == {
        "via",
        "code_id",
        "status",
        "signing_key",
        "encryption_key_sha256",
        "fingerprint",
    }
    await alice.client.revoke_device(alice.device_id, "lost")
    await _integrate(world)
    revoked = await _bundle(bob, alice.device_id, old=first.size)
    with pytest.raises(kt.TransparencyError, match=f"device {alice.device_id} is revoked"):
        _check(revoked, log_key, alice, held=(first.size, first.root))
    # The server replays the bundle from before the revocation to a client that has seen
    # the newer checkpoint (here, through another device's bundle): refused.
    later = _check(await _bundle(bob, bob.device_id), log_key, bob)
    with pytest.raises(kt.TransparencyError, match="older than the one of size"):
        _check(bundle, log_key, alice, held=(later.size, later.root))
    # Reading bundles is not audited: it would grow the log for ever.
    assert await _integrate(world) is None


async def test_a_device_the_directory_does_not_hold_is_404_and_anonymous_is_401(
    world: World,
) -> None:
    _, bob, _ = await _coalition(world)
    with pytest.raises(ApiError) as refused:
        await _bundle(bob, "no-such-device")
    assert refused.value.status == 404
    assert "not in the key directory" in refused.value.detail
    with pytest.raises(ApiError) as anonymous:
        await world.client().request("GET", f"/v1/devices/{bob.device_id}/transparency")
    assert anonymous.value.status == 401


async def test_a_device_not_yet_integrated_is_not_in_the_directory(world: World) -> None:
    """A device registered after the latest checkpoint has no entry yet: a client refuses to
    seal to it until the integrator has logged it."""
    _, bob, _ = await _coalition(world)
    carol = await world.member("carol", "USA")
    with pytest.raises(ApiError, match="not in the key directory"):
        await _bundle(bob, carol.device_id)
    await _integrate(world)
    _check(await _bundle(bob, carol.device_id), await _log_key(bob), carol)


async def test_a_revoked_device_shown_active_is_caught_by_auditors(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The malicious server with the audit key: its integrator leaves a revocation out of the
    directory. Every proof holds, so a client accepts the device as active; an auditor who
    recomputes the directory names the lying leaf."""
    alice, bob, auditor = await _coalition(world)
    assert (await verify_log(auditor.client, tmp_path)).ok
    await alice.client.revoke_device(alice.device_id, "stolen")
    honest_apply = kt.KeyDirectory.apply

    def lying_apply(self: kt.KeyDirectory, index: int, leaf: Any) -> str | None:
        if leaf.get("action") == "device.revoke":
            return None  # the revocation is left out of the directory
        return honest_apply(self, index, leaf)

    monkeypatch.setattr(kt.KeyDirectory, "apply", lying_apply)
    lying = await _integrate(world)
    monkeypatch.setattr(kt.KeyDirectory, "apply", honest_apply)
    assert lying is not None
    shown = _check(await _bundle(bob, alice.device_id), await _log_key(bob), alice)
    assert shown.entry.status == "active"
    report = await verify_log(auditor.client, tmp_path)
    assert not report.ok
    assert report.first_bad_index == lying.size - 1
    assert any(
        f"leaf {lying.size - 1}: the key directory says root" in p and "falsely" in p
        for p in report.problems
    ), report.problems


async def test_a_checkpoint_without_a_directory_leaf_is_caught(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that signs a checkpoint after a revocation without ending it in a directory
    leaf: the endpoint has nothing to serve, a client given the older bundle against the new
    checkpoint refuses (protocol tests), and an auditor names the checkpoint."""
    alice, bob, auditor = await _coalition(world)
    await alice.client.revoke_device(alice.device_id, "stolen")

    async def no_directory(session: Any, size: int, events: Any) -> AuditEvent:
        from server.audit import log as audit

        return audit.event(
            actor=server_transparency.INTEGRATOR,
            action="audit.filler",
            object_type="keys",
            object_id="none",
        )

    monkeypatch.setattr(server_transparency, "directory_event", no_directory)
    await _integrate(world)
    monkeypatch.undo()
    with pytest.raises(ApiError, match="does not end in a key directory leaf"):
        await _bundle(bob, alice.device_id)
    report = await verify_log(auditor.client, tmp_path)
    assert any("does not end in a key directory leaf" in p for p in report.problems), (
        report.problems
    )


async def test_the_first_directory_leaf_replays_the_key_events_already_logged(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A log integrated before key transparency (here: by an integrator that wrote no
    directory leaf) has device events and no directory; the first directory leaf covers
    them all, and auditors agree."""

    async def filler(session: Any, size: int, events: Any) -> AuditEvent:
        from server.audit import log as audit

        return audit.event(
            actor=server_transparency.INTEGRATOR,
            action="audit.filler",
            object_type="keys",
            object_id="none",
        )

    monkeypatch.setattr(server_transparency, "directory_event", filler)
    alice, bob, auditor = await _coalition(world)
    monkeypatch.undo()
    async with world.app.state.sessionmaker() as session:
        assert (await session.execute(select(KeyDirectoryEntry))).first() is None
    await alice.client.create_channel("liaison", "NATO SECRET")
    await _integrate(world)
    _check(await _bundle(bob, alice.device_id), await _log_key(bob), alice)
    report = await verify_log(auditor.client, tmp_path)
    assert report.ok, report.problems
    assert report.directories == 1


async def test_auditors_check_every_directory_leaf(world: World, tmp_path: Path) -> None:
    alice, _, auditor = await _coalition(world)
    await alice.client.revoke_device(alice.device_id)
    await _integrate(world)
    report = await verify_log(auditor.client, tmp_path)
    assert report.ok, report.problems
    assert report.directories is not None
    assert report.directories >= 2


async def test_the_sdk_checks_a_device_once_per_checkpoint(world: World) -> None:
    """clients.sdk.transparency: a device checked at the checkpoint held is not fetched again;
    after ``forget`` (a roster change) a revocation is seen and refused."""
    alice, bob, _ = await _coalition(world)
    device = await alice.client.device(alice.device_id)
    body = keys.verify_certificate(
        keys.DeviceCertificate.from_json(device["certificate"]),
        world.authorities["USA"].public_bytes(),
        now=datetime.now(UTC),
    )
    checker = await DeviceTransparency.open(bob.client)
    checker.wait = 0  # refuse a device not logged at once: nothing here logs it later
    first = await checker.check(body)
    assert checker.held == (first.size, first.root)
    asked: list[str] = []
    original = bob.client.request

    async def counting(method: str, path: str, **kwargs: Any) -> Any:
        asked.append(path)
        return await original(method, path, **kwargs)

    bob.client.request = counting  # type: ignore[method-assign]
    assert await checker.check(body) is first
    assert asked == []
    await alice.client.revoke_device(alice.device_id)
    await _integrate(world)
    checker.forget()
    with pytest.raises(TransparencyError, match=f"device {alice.device_id} is revoked"):
        await checker.check(body)
    assert asked == [f"/v1/devices/{alice.device_id}/transparency"]
    with pytest.raises(TransparencyError, match="is not in the key directory"):
        await checker.check(dataclasses.replace(body, device_id="no-such-device"))


async def test_a_messenger_seals_only_to_devices_the_directory_shows(world: World) -> None:
    """With ``Messenger.transparency`` set: a device the log does not show yet is not sealed
    to (the send is refused, naming it, when the server insists on it); once logged it is;
    a send under an unchanged roster asks for no bundle; and a revoked device that a lying
    server keeps in the roster is left out, with the reason."""
    alice, bob, _ = await _coalition(world)
    await alice.client.create_channel("liaison", "NATO SECRET")
    await alice.client.add_member("liaison", "bob")
    carol = await world.member("carol", "USA")  # registered after the latest checkpoint
    await alice.client.add_member("liaison", "carol")
    sender = await messenger(alice)
    sender.transparency = await DeviceTransparency.open(alice.client)
    sender.transparency.wait = 0  # this server logs only when the test integrates
    with pytest.raises(
        MessagingError,
        match=rf"device {carol.device_id} of carol: the key directory does not vouch for it: "
        rf"device {carol.device_id} is not in the key directory",
    ):
        await sender.send("liaison", "not yet")
    await _integrate(world)
    sent = await sender.send("liaison", "now")
    assert {bob.device_id, carol.device_id} <= set(sent.released_to)
    assert sent.excluded == ()

    asked: list[str] = []
    original = alice.client.request

    async def counting(method: str, path: str, **kwargs: Any) -> Any:
        asked.append(path)
        return await original(method, path, **kwargs)

    alice.client.request = counting  # type: ignore[method-assign]
    await sender.send("liaison", "again")
    assert not [p for p in asked if p.endswith("/transparency")]

    # carol's device is revoked; the server keeps showing it in the roster as it was.
    entries, _ = await alice.client.roster_if_changed("liaison", None)
    assert entries is not None
    await carol.client.revoke_device(carol.device_id, "lost")
    await _integrate(world)
    honest = alice.client.roster_if_changed

    async def lying(channel: str, etag: str | None) -> tuple[list[dict[str, Any]], str | None]:
        _, tag = await honest(channel, None)
        return entries, tag

    alice.client.roster_if_changed = lying  # type: ignore[method-assign]
    sender.roster_changed()
    sent = await sender.send("liaison", "after the revocation")
    assert carol.device_id not in sent.released_to
    (excluded,) = sent.excluded
    assert excluded.device_id == carol.device_id
    assert f"device {carol.device_id} is revoked in the key directory" in excluded.reason
