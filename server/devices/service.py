"""Device enrolment, certification, revocation, and clearance changes (which re-certify).

Trust in a device comes only from its nation's enrolment authority: the server records the
certificate the nation signed and refuses one that does not verify against the nation's
registered authority key. Issuing an enrolment code lets a person register keys; it does not
make them trusted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from protocol import enrolment, keys
from protocol.catalog import Catalog
from server.audit import log as audit
from server.audit import transparency
from server.auth import repository as auth_repo
from server.auth.principal import Caller, Principal
from server.coalition.service import policy_in_force
from server.db.base import utcnow
from server.devices import repository as repo
from server.devices.models import (
    DEVICE_ACTIVE,
    DEVICE_PENDING,
    DEVICE_REVOKED,
    Device,
    EnrolmentCode,
)
from server.directory import repository as directory_repo
from server.directory.models import User
from server.directory.service import (
    access_nation,
    access_user,
    check_clearance,
    check_manages,
    check_sets_clearance,
)
from server.errors import Conflict, Expired, InvalidInput, NotFound, PermissionDenied
from server.settings import Settings

_BAD_CODE = "the enrolment code is unknown, expired or already used; ask your security officer"


@dataclass(frozen=True)
class IssuedCode:
    code: str
    row: EnrolmentCode


async def do_issue_enrolment_code(
    session: AsyncSession, caller: Caller, settings: Settings, user: User
) -> IssuedCode:
    """A one-time code with which ``user`` registers one device.

    Preconditions: the caller manages the user (their nation's security officer, or an
    operator bootstrapping the first security officer).
    """
    await check_manages(session, caller, user, action="enrolment.code_issue")
    if not user.active:
        raise Conflict(f"{user.username} is disabled", user=user.username)
    now = utcnow()
    code = enrolment.new_code()
    row = EnrolmentCode(
        user_id=user.id,
        code_hash=enrolment.code_digest(code),
        issued_by=caller.user.id if isinstance(caller, Principal) else None,
        created_at=now,
        expires_at=now + timedelta(seconds=settings.enrolment_code_ttl_seconds),
    )
    session.add(row)
    await session.flush()
    audit.record(
        session,
        actor=caller.actor,
        action="enrolment.code_issue",
        object_type="user",
        object_id=user.id,
        subject_nation=user.nationality,
        details={"code_id": row.id, "expires_at": row.expires_at.isoformat()},
    )
    return IssuedCode(code=code, row=row)


async def do_enrol_device(
    session: AsyncSession,
    settings: Settings,
    *,
    username: str,
    code: str,
    name: str,
    signing_key: bytes,
    encryption_key: bytes,
    proof: bytes,
) -> Device:
    """Register a device's public keys with a one-time code; the device starts pending.

    The code is consumed whatever else fails later in this request only if the request
    succeeds: a refused enrolment rolls back and the code stays usable until it expires.
    A staff account (operator or all-nations auditor, no nation) becomes active at once: no
    nation vouches for it, and no access decision ever allows it labelled content.
    """
    user = await directory_repo.get_user_by_username(session, username)
    code_hash = enrolment.code_digest(code)
    row = await repo.get_code_by_hash(session, code_hash)
    now = utcnow()
    if (
        user is None
        or row is None
        or row.user_id != user.id
        or row.used_at is not None
        or row.expires_at <= now
    ):
        raise Expired(_BAD_CODE)
    try:
        public = keys.DevicePublicKeys(signing_key=signing_key, encryption_key=encryption_key)
        public.encryption_public_key()
    except ValueError as exc:
        raise InvalidInput(f"device keys refused: {exc}", field="encryption_key") from exc
    if not keys.verify_registration(
        public,
        proof,
        user=username,
        nonce=keys.b64u_encode(code_hash),
        server=settings.effective_public_url,
    ):
        raise InvalidInput(
            "the registration proof does not verify with these keys for this server",
            field="proof",
        )
    # The check above is advice; this is the decision. Only one request consumes the code,
    # however many race for it, and a refusal below rolls the consumption back.
    if await repo.consume_code(session, row.id, user.id, now) is None:
        raise Expired(_BAD_CODE)
    if await repo.get_device_by_signing_key(session, signing_key) is not None:
        raise Conflict("a device with this signing key is already registered")
    # Server staff (operators, all-nations auditors) belong to no nation, so no authority can
    # vouch for them: their enrolment code is their trust root. They can read nothing that a
    # database administrator could not, and no decision ever allows them labelled content.
    staff_account = user.nationality is None
    device = Device(
        user_id=user.id,
        name=name,
        signing_key=signing_key,
        encryption_key=encryption_key,
        status=DEVICE_ACTIVE if staff_account else DEVICE_PENDING,
        activated_at=now if staff_account else None,
    )
    session.add(device)
    await session.flush()
    row.device_id = device.id
    audit.record(
        session,
        actor=audit.Actor(user_id=user.id, device_id=device.id, nation=user.nationality),
        action="device.register",
        object_type="device",
        object_id=device.id,
        subject_nation=user.nationality,
        details={
            "code_id": row.id,
            "status": device.status,
            # The public keys themselves (the encryption key by digest), so that clients can
            # check a peer's device keys against the log.
            "signing_key": keys.b64u_encode(signing_key),
            "encryption_key_sha256": keys.b64u_encode(hashlib.sha256(encryption_key).digest()),
            "fingerprint": public.fingerprint(),
        },
    )
    return device


async def _check_certificate(
    session: AsyncSession, device: Device, user: User, certificate: dict[str, Any]
) -> keys.CertificateBody:
    """Verify a certificate for ``device`` against its nation's authority key and the
    directory's record of the user: it must vouch for exactly this device, user,
    nationality and clearance.

    The authority key is the one the coalition policy in force lists for the nation under the
    key id the certificate names, as clients check it (PROTOCOL.md §18), so that a key the
    nations rotated by signing a version is the one checked from its publication, with no
    command of the operator's; before any policy is published, the key the directory
    registered for the nation."""
    if user.nationality is None:
        raise InvalidInput(f"{user.username} belongs to no nation; no authority can vouch")
    nation = await access_nation(session, user.nationality)
    in_force = await policy_in_force(session)
    try:
        cert = keys.DeviceCertificate.from_json(certificate)
        authority: Mapping[str, bytes] | bytes = {nation.code: nation.authority_key}
        if in_force is not None:
            body_nation = cert.body.get("nation")
            if body_nation != nation.code:
                raise keys.CertificateError(f"it is of nation {body_nation}, not {nation.code}")
            authority = in_force.policy.certificate_key(
                body_nation, cert.body.get("authority_key_id")
            )
        body = keys.verify_certificate(cert, authority, now=utcnow())
    except (keys.CertificateError, ValueError) as exc:
        raise InvalidInput(f"certificate refused: {exc}", field="certificate") from exc
    expected: dict[str, tuple[object, object]] = {
        "device_id": (body.device_id, device.id),
        "user_id": (body.user_id, user.id),
        "username": (body.username, user.username),
        "nationality": (body.nationality, user.nationality),
        "clearance": (dict(body.clearance), user.clearance),
        "signing_key": (body.device_keys.signing_key, device.signing_key),
        "encryption_key": (body.device_keys.encryption_key, device.encryption_key),
    }
    mismatches = [name for name, (got, want) in expected.items() if got != want]
    if mismatches:
        raise InvalidInput(
            "certificate refused: it does not match the directory's " + ", ".join(mismatches),
            field="certificate",
            mismatches=mismatches,
        )
    return body


async def do_certify_device(
    session: AsyncSession, device_id: str, certificate: dict[str, Any]
) -> Device:
    """Activate (or re-certify) a device with a certificate its nation's authority signed.

    No session is needed: the authority's signature is the authorisation, and it can only
    come from the nation's security officer, who holds the key.
    """
    device = await repo.get_device(session, device_id, lock=True)
    if device is None:
        raise NotFound(f"unknown device {device_id!r}", device_id=device_id)
    if device.status == DEVICE_REVOKED:
        raise Conflict("this device is revoked; enrol a new one", device_id=device_id)
    user = await access_user(session, device.user_id)
    body = await _check_certificate(session, device, user, certificate)
    now = utcnow()
    previous = device.status
    device.certificate = certificate
    device.status = DEVICE_ACTIVE
    device.activated_at = device.activated_at or now
    audit.record(
        session,
        actor=audit.Actor(user_id=None, device_id=None, nation=user.nationality, via="authority"),
        action="device.certify",
        object_type="device",
        object_id=device.id,
        subject_nation=user.nationality,
        details={
            "user_id": user.id,
            "authority_key_id": body.authority_key_id,
            "serial": body.serial,
            "clearance": body.clearance,
            "status": [previous, DEVICE_ACTIVE],
        },
    )
    await session.flush()
    return device


async def access_device(session: AsyncSession, caller: Caller, device_id: str) -> Device:
    """A device its own user, that user's security officer or an operator may see."""
    device = await repo.get_device(session, device_id)
    if device is None:
        raise NotFound(f"unknown device {device_id!r}", device_id=device_id)
    user = await access_user(session, device.user_id)
    if isinstance(caller, Principal) and caller.user.id == user.id:
        return device
    try:
        await check_manages(
            session, caller, user, action="device.access", object_type="device", object_id=device.id
        )
    except PermissionDenied:
        # Someone else's device: indistinguishable from a missing one (but audited).
        raise NotFound(
            f"unknown device {device_id!r}", device_id=device_id, keep_changes=True
        ) from None
    return device


async def access_transparency(
    session: AsyncSession,
    device_id: str,
    old: int,
    witnesses: Sequence[str] = (),
    min_witnesses: int | None = None,
) -> dict[str, Any]:
    """The transparency bundle of any device the key directory holds (PROTOCOL.md §19.3),
    at the latest checkpoint, or at the latest that ``min_witnesses`` of the named
    ``witnesses`` cosigned (for a client that requires them).

    Any signed-in member may ask: it shows what the log commits to for one device (its ids,
    public keys, status and registration leaf), which every sender must check before sealing
    to it. Not audited (server/audit/transparency.py says why)."""
    return await transparency.device_bundle(session, device_id, old, witnesses, min_witnesses)


async def list_devices(
    session: AsyncSession, caller: Caller, *, status: str | None = None
) -> Sequence[tuple[Device, User]]:
    """Operators see every device; security officers their nation's; others their own."""
    if caller.is_operator:
        return await repo.list_devices(session, status=status)
    assert isinstance(caller, Principal)
    if caller.has_role("security_officer") and caller.user.nationality is not None:
        return await repo.list_devices(session, nation=caller.user.nationality, status=status)
    return await repo.list_devices(session, user_id=caller.user.id, status=status)


async def do_revoke_device(
    session: AsyncSession, caller: Caller, device: Device, *, reason: str = ""
) -> Device:
    """Revoke a device for good and end its sessions. Its user, their security officer or
    an operator may do it: taking trust away can never spill content."""
    if device.status == DEVICE_REVOKED:
        return device
    now = utcnow()
    previous = device.status
    device.status = DEVICE_REVOKED
    device.revoked_at = now
    await auth_repo.revoke_device_sessions(session, device.id, now)
    user = await access_user(session, device.user_id)
    audit.record(
        session,
        actor=caller.actor,
        action="device.revoke",
        object_type="device",
        object_id=device.id,
        subject_nation=user.nationality,
        details={"user_id": user.id, "status": [previous, DEVICE_REVOKED], "reason": reason},
    )
    await session.flush()
    return device


async def do_set_clearance(
    session: AsyncSession,
    caller: Caller,
    catalog: Catalog,
    user: User,
    *,
    clearance: str,
    certificates: Sequence[dict[str, Any]],
) -> User:
    """Change a user's clearance together with a new certificate for each active device.

    Preconditions: the caller manages the user and may set their nation's clearances
    (``check_sets_clearance``: the nation's security officers, or an operator bootstrapping a
    nation that has none).

    The new certificates must vouch for the new clearance; an active device left without one
    is refused (409, listing the devices), so the directory and the certificates clients
    verify never disagree. Pending devices are certified later with the new clearance.
    """
    await check_manages(session, caller, user, action="user.clearance")
    authority = await check_sets_clearance(session, caller, user, action="user.clearance")
    if user.nationality is None:
        raise InvalidInput("a user without a nationality cannot hold a clearance")
    old = user.clearance
    user.clearance = check_clearance(clearance, catalog).canonical()
    active = [d for d, _ in await repo.list_devices(session, user_id=user.id, status=DEVICE_ACTIVE)]
    by_device: dict[str, dict[str, Any]] = {}
    for cert in certificates:
        body = cert.get("body") if isinstance(cert, dict) else None
        device_id = body.get("device_id") if isinstance(body, dict) else None
        if not isinstance(device_id, str):
            raise InvalidInput("each certificate must have a body with a device_id")
        by_device[device_id] = cert
    missing = [d.id for d in active if d.id not in by_device]
    if missing:
        raise Conflict(
            f"{user.username} has active devices that need a certificate with the new clearance",
            devices=missing,
            # What the certificates must carry: the canonical form of the new clearance.
            clearance=user.clearance,
        )
    for device in active:
        cert = by_device.pop(device.id)
        await _check_certificate(session, device, user, cert)
        device.certificate = cert
    if by_device:
        raise InvalidInput(
            "certificates given for devices that are not active devices of this user",
            devices=sorted(by_device),
        )
    audit.record(
        session,
        actor=caller.actor,
        action="user.clearance",
        object_type="user",
        object_id=user.id,
        subject_nation=user.nationality,
        details={
            "old": old,
            "new": user.clearance,
            "devices": [d.id for d in active],
            **authority,
        },
    )
    await session.flush()
    return user
