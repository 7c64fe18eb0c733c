"""Key transparency for clients: check a device's bundle before sealing to it (PROTOCOL.md
§19.4), holding the server to the largest checkpoint verified.

    kt = await DeviceTransparency.for_keystore(client, keystore)
    await kt.check(certificate_body)   # TransparencyError naming what was wrong

A result is kept per device and checkpoint: a device checked at the checkpoint held is not
fetched again until ``forget`` (call it when a roster changes: a revocation changes them) or
until another device's bundle shows a later checkpoint, so checking a roster that did not
change costs no request. A ``Messenger`` built from a keystore uses one by default before
sealing (docs/client.md).

Opened from a keystore, the audit key is the one pinned there (at enrolment, or on first use
for a home enrolled before key transparency: logged), and the largest checkpoint verified is
kept there too (``transparency.json``, written atomically), read again before each bundle,
so that each run, and each process sharing the home, is held to what any of them verified.

A device the directory does not show active *yet* (not in it, or pending: certified after
the latest checkpoint, which the server's integrator signs every second by default) is asked
for again, with a short backoff, for up to ``wait`` seconds in all per roster check (from one
``forget`` to the next), then refused.

With witnesses required (``Keystore.require_witnesses``: their keys, how many, how recent),
the bundle is asked for at the latest checkpoint that many of them cosigned, and its note
must carry their valid cosignatures (``protocol.cosignature.check_witnesses``) before
anything else is believed: a missing, forged or too old cosignature refuses the checkpoint
(``CosignaturesRefused``, a ``CheckpointRefused``: nothing is sealed to anyone), and only a
checkpoint that passed is kept. The requirement is read from the home before each bundle,
as the checkpoint is; the server's answers never change it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time

from clients.sdk._client import ApiError, AttacheClient
from clients.sdk.keystore import Keystore, KeystoreError, WitnessRequirement
from protocol import checkpoint as notes
from protocol import keys
from protocol import transparency as kt
from protocol.cosignature import check_witnesses
from protocol.transparency import (
    CheckpointRefused,
    NotLogged,
    TransparencyError,
    VerifiedDevice,
)

__all__ = [
    "NOT_LOGGED_WAIT",
    "CheckpointRefused",
    "CosignaturesRefused",
    "DeviceTransparency",
    "NotLogged",
    "TransparencyError",
]

log = logging.getLogger("attache.sdk")
log.addHandler(logging.NullHandler())

#: Seconds to keep asking, per roster check, for devices the directory does not show yet.
NOT_LOGGED_WAIT = 10.0
_FIRST_DELAY = 0.1
_MAX_DELAY = 1.0


class CosignaturesRefused(CheckpointRefused):
    """The checkpoint lacks the witnesses' cosignatures this device requires: one missing,
    forged or too old, named in the message. As for a fork, nothing is sealed to anyone."""


class DeviceTransparency:
    """One server's key directory as this client checked it."""

    def __init__(
        self,
        client: AttacheClient,
        vkey: str,
        held: tuple[int, bytes] | None = None,
        *,
        keystore: Keystore | None = None,
        witnesses: WitnessRequirement | None = None,
    ) -> None:
        """``vkey``: the log's pinned audit key (note verifier key); ``held``: the (size,
        root) of the largest checkpoint verified before; ``witnesses``: the cosignatures a
        checkpoint must carry. With ``keystore``, the checkpoint held is also read from it
        and kept in it (``Keystore.keep_checkpoint``), and so are the witnesses required."""
        try:
            self.log_key = notes.NoteVerifier.from_vkey(vkey)
        except notes.CheckpointError as exc:
            raise TransparencyError(f"the audit key {vkey!r} is not a log's key: {exc}") from exc
        self.client = client
        self.held = held
        self.keystore = keystore
        self.witnesses = witnesses
        # Seconds to keep asking for devices not logged yet, per roster check (0: refuse them
        # at once).
        self.wait = NOT_LOGGED_WAIT
        self._deadline: float | None = None
        self._verified: dict[str, VerifiedDevice] = {}

    @classmethod
    async def open(
        cls,
        client: AttacheClient,
        *,
        vkey: str | None = None,
        held: tuple[int, bytes] | None = None,
    ) -> DeviceTransparency:
        """With ``vkey`` None the server's audit key is taken on first use (``GET
        /v1/audit/key``): pin it, and compare it with the operator's out of band."""
        if vkey is None:
            vkey = await fetch_audit_key(client)
        return cls(client, vkey, held)

    @classmethod
    async def for_keystore(cls, client: AttacheClient, keystore: Keystore) -> DeviceTransparency:
        """The audit key pinned in ``keystore`` and the checkpoint kept there. A home enrolled
        before key transparency has no audit key: the server's is pinned now, on first use
        (logged as a warning), as nations' keys are pinned without a coalition policy."""
        try:
            vkey = keystore.audit_key()
            required = keystore.required_witnesses()
        except KeystoreError as exc:
            raise CheckpointRefused(str(exc)) from exc
        if vkey is None:
            vkey = await fetch_audit_key(client)
            # Refuses a malformed key first.
            checker = cls(client, vkey, keystore=keystore, witnesses=required)
            keystore.pin_audit_key(vkey)
            log.warning(
                "pinned the server's audit key %s on first use: compare it with the "
                "operator's ('attache-server audit key')",
                vkey,
            )
            return checker
        return cls(
            client,
            vkey,
            keystore.held_checkpoint(),
            keystore=keystore,
            witnesses=required,
        )

    async def check(self, body: keys.CertificateBody) -> VerifiedDevice:
        """The device a verified certificate names, shown registered, active and with the
        certificate's keys at a checkpoint that extends the one held; TransparencyError
        otherwise, naming what was wrong. A device not logged yet (``NotLogged``) is asked
        for again until this roster check's ``wait`` is spent."""
        self._adopt_kept()
        kept = self._verified.get(body.device_id)
        if kept is not None and self.held is not None and kept.size == self.held[0]:
            if self._matches(kept, body):
                return kept
        delay = _FIRST_DELAY
        while True:
            try:
                return await self._check_once(body)
            except NotLogged:
                now = time.monotonic()
                if self._deadline is None:
                    self._deadline = now + self.wait
                if now >= self._deadline:
                    raise
                await asyncio.sleep(min(delay, self._deadline - now))
                delay = min(delay * 2, _MAX_DELAY)

    async def _check_once(self, body: keys.CertificateBody) -> VerifiedDevice:
        old = self.held[0] if self.held is not None else 0
        params: dict[str, object] = {"old": old}
        if self.witnesses is not None:
            # The latest checkpoint is seldom cosigned yet (witnesses run on their own
            # schedule): ask for the latest that the witnesses required here did cosign.
            params["witness"] = self.witnesses.names()
            params["min_witnesses"] = self.witnesses.minimum
        try:
            bundle = await self.client.request(
                "GET", f"/v1/devices/{body.device_id}/transparency", params=params
            )
        except ApiError as exc:
            if exc.status == 404:
                raise NotLogged(
                    f"device {body.device_id} is not in the key directory (the server says: "
                    f"{exc.detail})"
                ) from exc
            if exc.status == 503:  # the directory is being updated: ask again shortly
                raise NotLogged(f"the key directory is unavailable: {exc.detail}") from exc
            raise
        self._check_cosignatures(bundle)
        verified = kt.verify_device(
            bundle,
            log_key=self.log_key,
            device_id=body.device_id,
            user_id=body.user_id,
            signing_key=body.device_keys.signing_key,
            encryption_key=body.device_keys.encryption_key,
            held=self.held,
        )
        self._hold(verified)
        self._verified[body.device_id] = verified
        return verified

    def _check_cosignatures(self, bundle: object) -> None:
        """The bundle's checkpoint carries the cosignatures required here, and is not older
        than the one held; CosignaturesRefused naming the witnesses otherwise. Run before
        anything in the bundle is believed, so that no device is accepted, and no checkpoint
        kept, on a checkpoint the witnesses did not vouch for."""
        required = self.witnesses
        if required is None:
            return
        part = bundle.get("checkpoint") if isinstance(bundle, dict) else None
        note = part.get("note") if isinstance(part, dict) else None
        if not isinstance(note, str):
            raise CosignaturesRefused("the key directory's answer holds no checkpoint note")
        now = None if required.max_age is None else int(time.time())
        try:
            found = check_witnesses(note, required.verifiers(), now=now, max_age=required.max_age)
            served = notes.Checkpoint.parse(notes.split_note(note)[0])
        except notes.CheckpointError as exc:
            raise CosignaturesRefused(f"the checkpoint note is malformed: {exc}") from exc
        problems = found.problems(required.minimum)
        if problems:
            raise CosignaturesRefused(
                f"the checkpoint of size {served.size} lacks the witnesses' cosignatures this "
                "device requires: " + "; ".join(problems)
            )
        if self.held is not None and served.size < self.held[0]:
            raise CosignaturesRefused(
                f"the latest checkpoint the witnesses required here cosigned, of size "
                f"{served.size}, is older than the one of size {self.held[0]} seen before: an "
                "old key directory served as current, or the witnesses have not cosigned "
                "that far yet (ask again once they have run)"
            )

    def forget(self) -> None:
        """Check every device again, at the latest checkpoint, from the next ``check`` on: to
        call when something may have changed (a roster notice, a refused send). Starts a new
        roster check, with its own ``wait``."""
        self._verified.clear()
        self._deadline = None

    def _adopt_kept(self) -> None:
        """Another run or process sharing the home may have verified a later checkpoint, or
        the user may have changed the witnesses required: be held to those too."""
        if self.keystore is None:
            return
        try:
            kept = self.keystore.held_checkpoint()
            required = self.keystore.required_witnesses()
        except KeystoreError as exc:
            raise CheckpointRefused(str(exc)) from exc
        if required != self.witnesses:
            self.witnesses = required
            self._verified.clear()  # checked under another requirement
        if kept is None or (self.held is not None and kept[0] < self.held[0]):
            return
        if self.held is not None and kept[0] == self.held[0] and kept[1] != self.held[1]:
            raise CheckpointRefused(
                f"the checkpoint of size {kept[0]} kept in {self.keystore.home} has another "
                "root than the one verified here: the log forked"
            )
        self.held = kept

    def _hold(self, verified: VerifiedDevice) -> None:
        if self.held == (verified.size, verified.root):
            return
        self.held = (verified.size, verified.root)
        if self.keystore is None:
            return
        try:
            self.keystore.keep_checkpoint(verified.size, verified.root)
        except KeystoreError as exc:
            # Another process kept a larger one meanwhile: the next check is held to it.
            kept = self.keystore.held_checkpoint()
            if kept is None or kept[0] <= verified.size:
                raise CheckpointRefused(str(exc)) from exc

    @staticmethod
    def _matches(kept: VerifiedDevice, body: keys.CertificateBody) -> bool:
        return (
            kept.entry.user == body.user_id
            and kept.entry.signing_key == keys.b64u_encode(body.device_keys.signing_key)
            and kept.entry.encryption_key_sha256
            == keys.b64u_encode(hashlib.sha256(body.device_keys.encryption_key).digest())
        )


async def fetch_audit_key(client: AttacheClient) -> str:
    """The server's audit key (``GET /v1/audit/key``, public), as served."""
    answer = await client.request("GET", "/v1/audit/key")
    vkey = answer.get("vkey") if isinstance(answer, dict) else None
    if not isinstance(vkey, str):
        raise TransparencyError("the server's audit key answer holds no key")
    return vkey
