"""High-level flows: enrol a device, sign in with it, certify devices as a nation's authority."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from clients.sdk._client import ApiError, AttacheClient
from clients.sdk.coalition import HeldPolicy, PolicyLog, pin_policy
from clients.sdk.keystore import Keystore, KeystoreError, Profile, WitnessRequirement
from clients.sdk.transparency import fetch_audit_key
from protocol import checkpoint as notes
from protocol import keys

CERTIFICATE_VALIDITY = timedelta(days=365)


@dataclass(frozen=True)
class Enrolment:
    profile: Profile
    device: dict[str, Any]
    pinned: dict[str, str]  # nation -> authority key id(s), comma-separated
    # The coalition policy pinned (None when the server publishes none: trust on first use).
    policy: HeldPolicy | None = None
    # The server's audit (checkpoint) key pinned, for key transparency (docs/client.md).
    audit_key: str | None = None
    # The witnesses whose cosignatures the key directory's checkpoints must carry, if given.
    witnesses: WitnessRequirement | None = None


async def enroll(
    server: str,
    *,
    username: str,
    code: str,
    device_name: str,
    passphrase: str,
    keystore: Keystore,
    authority: tuple[str, keys.AuthorityKey] | None = None,
    policy_digest: str | None = None,
    witnesses: WitnessRequirement | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Enrolment:
    """Create this device's keys, register them with a one-time code and pin the authorities.

    The device starts pending until its nation's security officer certifies it. A security
    officer enrolling their own device passes ``authority`` (nation, key) to certify at once.

    The server's audit (checkpoint) key is pinned too: the key directory's checkpoints must
    verify with it before this device seals to anyone (docs/client.md, key transparency).
    With ``witnesses``, those checkpoints must also carry the cosignatures they require
    (kept beside the audit key; ``attache witness require`` changes them later).

    When the server publishes a coalition policy, it is verified from its founding version
    (whose digest must be ``policy_digest``, b64u, when the security officer gave it) before
    anything is registered, each version proven in the audit log under the audit key pinned
    here (PROTOCOL.md §18.6), and pinned; the nations' authority keys are then the policy's,
    not ``GET /v1/nations``'s. Without one, the nations are pinned on first use as before.
    """
    if keystore.has_device():
        raise KeystoreError(f"{keystore.home} already holds a device; use another ATTACHE_HOME")
    expect = None
    if policy_digest is not None:
        try:
            expect = keys.b64u_decode(policy_digest.strip())
        except ValueError as exc:
            raise KeystoreError(f"the coalition policy digest is malformed: {exc}") from exc
    device_keys = keys.DeviceKeys.generate()
    async with AttacheClient(server, transport=transport) as client:
        # The audit key first: each policy version is proven in the log under it (§18.6).
        audit_key = await fetch_audit_key(client)
        try:
            log_key = notes.NoteVerifier.from_vkey(audit_key)
        except notes.CheckpointError as exc:
            raise KeystoreError(f"the server's audit key is not a log's key: {exc}") from exc
        audit_log = PolicyLog(client, log_key)
        found = await pin_policy(client, expect_founding=expect, audit_log=audit_log)
        nations = await client.nations() if found is None else []
        if found is not None and authority is not None:
            listed = found[1].policy.nations.get(authority[0])
            if listed is None or authority[1].key_id not in listed.authority_keys:
                raise KeystoreError(
                    f"the coalition policy does not list the {authority[0]} authority key you "
                    f"hold ({authority[1].key_id}) for {authority[0]}"
                )
        device = await client.enrol(
            username=username, code=code, name=device_name, device_keys=device_keys
        )
        profile = Profile(
            server=client.server,
            username=username,
            user_id=device["user_id"],
            device_id=device["id"],
            device_name=device_name,
        )
        keystore.save_device(profile, device_keys, passphrase)
        keystore.pin_audit_key(audit_key)
        if witnesses is not None:
            keystore.require_witnesses(witnesses)
        pinned: dict[str, str] = {}
        held = None
        if found is not None:
            keystore.pin_policy(*found)
            audit_log.settle(keystore)
            held = HeldPolicy(found[0], found[1], pinned_now=True)
            for code, entry in found[1].policy.nations.items():
                pinned[code] = ", ".join(sorted(entry.authority_keys))
        for nation in nations:
            key = keys.b64u_decode(nation["authority_key"])
            if authority is not None and nation["code"] == authority[0]:
                if key != authority[1].public_bytes():
                    raise KeystoreError(
                        f"the server's authority key for {nation['code']} is not the one you hold"
                    )
            keystore.pin(nation["code"], key)
            pinned[nation["code"]] = keys.authority_key_id(key)
        if authority is not None:
            device = await certify_device(client, authority[0], authority[1], device)
    return Enrolment(
        profile=profile,
        device=device,
        pinned=pinned,
        policy=held,
        audit_key=audit_key,
        witnesses=witnesses,
    )


def check_certifiable(nation: str, device: dict[str, Any]) -> None:
    """What a security officer's client refuses to sign, whatever the server says."""
    if device["nationality"] != nation:
        raise ApiError(
            403,
            {
                "detail": f"{device['username']} is of {device['nationality']}; the {nation} "
                f"authority vouches only for {nation} people"
            },
        )
    if device["status"] == "revoked":
        raise ApiError(409, {"detail": "this device is revoked"})
    if device.get("user_clearance") is None:
        raise ApiError(409, {"detail": f"{device['username']} has no clearance to vouch for"})


async def certify_device(
    client: AttacheClient,
    nation: str,
    authority: keys.AuthorityKey,
    device: dict[str, Any],
    *,
    validity: timedelta = CERTIFICATE_VALIDITY,
) -> dict[str, Any]:
    """Sign and submit the certificate binding ``device`` to its user, nationality, clearance."""
    check_certifiable(nation, device)
    now = datetime.now(UTC)
    certificate = keys.issue_certificate(
        authority,
        device_id=device["id"],
        user_id=device["user_id"],
        username=device["username"],
        nationality=device["nationality"],
        clearance=device["user_clearance"],
        device_keys=keys.DevicePublicKeys(
            signing_key=keys.b64u_decode(device["signing_key"]),
            encryption_key=keys.b64u_decode(device["encryption_key"]),
        ),
        issued_at=now,
        expires_at=now + validity,
    )
    return await client.submit_certificate(device["id"], certificate.to_json())


async def change_clearance(
    client: AttacheClient,
    nation: str,
    authority: keys.AuthorityKey,
    username: str,
    clearance_banner: str,
    *,
    validity: timedelta = CERTIFICATE_VALIDITY,
) -> dict[str, Any]:
    """Set a user's clearance, re-certifying each of their active devices with it.

    The server parses the banner into the canonical clearance; the new certificates must carry
    exactly that. A user with active devices is refused first (409, listing the devices and
    the canonical clearance); the client then signs one certificate per device and retries.
    """
    user = await client.user(username)
    if user["nationality"] != nation:
        raise ApiError(
            403,
            {"detail": f"{username} is of {user['nationality']}; you hold the {nation} authority"},
        )
    try:
        return await client.set_clearance(user["id"], clearance_banner, [])
    except ApiError as exc:
        # The server refuses to leave an active device uncertified: the refusal lists the
        # devices and the canonical clearance their new certificates must carry.
        if exc.status != 409 or "devices" not in exc.problem:
            raise
        wanted = set(exc.problem["devices"])
        canonical = exc.problem["clearance"]
    devices = [d for d in await client.devices(status="active") if d["id"] in wanted]
    now = datetime.now(UTC)
    certificates = [
        keys.issue_certificate(
            authority,
            device_id=d["id"],
            user_id=user["id"],
            username=user["username"],
            nationality=nation,
            clearance=canonical,
            device_keys=keys.DevicePublicKeys(
                signing_key=keys.b64u_decode(d["signing_key"]),
                encryption_key=keys.b64u_decode(d["encryption_key"]),
            ),
            issued_at=now,
            expires_at=now + validity,
        ).to_json()
        for d in devices
    ]
    return await client.set_clearance(user["id"], clearance_banner, certificates)


async def connect(
    keystore: Keystore,
    *,
    passphrase: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AttacheClient:
    """A client for this device's server: signed in with the device key when a passphrase is
    given, otherwise using the saved session token."""
    profile = keystore.profile()
    client = AttacheClient(profile.server, token=keystore.session_token(), transport=transport)
    if passphrase is not None:
        try:
            session = await client.login(profile.device_id, keystore.device_keys(passphrase))
        except BaseException:
            await client.aclose()
            raise
        keystore.save_session(session["token"], session["expires_at"])
    return client
