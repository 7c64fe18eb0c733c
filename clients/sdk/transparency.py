"""Key transparency for clients: check a device's bundle before sealing to it (PROTOCOL.md
§19.4), holding the server to the largest checkpoint verified.

    kt = await DeviceTransparency.open(client, vkey=PINNED)
    await kt.check(certificate_body)   # TransparencyError naming what was wrong

A result is kept per device and checkpoint: a device checked at the checkpoint held is not
fetched again until ``forget`` (call it when a roster changes: a revocation changes them) or
until another device's bundle shows a later checkpoint, so checking a roster that did not
change costs no request. ``Messenger.transparency`` uses one, when set, before sealing
(docs/client.md); nothing sets it by default yet (docs/THREATS.md).
"""

from __future__ import annotations

import hashlib

from clients.sdk._client import ApiError, AttacheClient
from protocol import checkpoint as notes
from protocol import keys
from protocol import transparency as kt
from protocol.transparency import TransparencyError, VerifiedDevice

__all__ = ["DeviceTransparency", "TransparencyError"]


class DeviceTransparency:
    """One server's key directory as this client checked it."""

    def __init__(
        self, client: AttacheClient, vkey: str, held: tuple[int, bytes] | None = None
    ) -> None:
        """``vkey``: the log's pinned audit key (note verifier key); ``held``: the (size,
        root) of the largest checkpoint verified before, kept by the caller across runs."""
        try:
            self.log_key = notes.NoteVerifier.from_vkey(vkey)
        except notes.CheckpointError as exc:
            raise TransparencyError(f"the audit key {vkey!r} is not a log's key: {exc}") from exc
        self.client = client
        self.held = held
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
            vkey = str((await client.request("GET", "/v1/audit/key"))["vkey"])
        return cls(client, vkey, held)

    async def check(self, body: keys.CertificateBody) -> VerifiedDevice:
        """The device a verified certificate names, shown registered, active and with the
        certificate's keys at a checkpoint that extends the one held; TransparencyError
        otherwise, naming what was wrong."""
        kept = self._verified.get(body.device_id)
        if kept is not None and self.held is not None and kept.size == self.held[0]:
            if self._matches(kept, body):
                return kept
        old = self.held[0] if self.held is not None else 0
        try:
            bundle = await self.client.request(
                "GET", f"/v1/devices/{body.device_id}/transparency", params={"old": old}
            )
        except ApiError as exc:
            if exc.status == 404:
                raise TransparencyError(
                    f"device {body.device_id} is not in the key directory: {exc.detail}"
                ) from exc
            raise
        verified = kt.verify_device(
            bundle,
            log_key=self.log_key,
            device_id=body.device_id,
            user_id=body.user_id,
            signing_key=body.device_keys.signing_key,
            encryption_key=body.device_keys.encryption_key,
            held=self.held,
        )
        self.held = (verified.size, verified.root)
        self._verified[body.device_id] = verified
        return verified

    def forget(self) -> None:
        """Check every device again, at the latest checkpoint, from the next ``check`` on: to
        call when something may have changed (a roster notice, a refused send)."""
        self._verified.clear()

    @staticmethod
    def _matches(kept: VerifiedDevice, body: keys.CertificateBody) -> bool:
        return (
            kept.entry.user == body.user_id
            and kept.entry.signing_key == keys.b64u_encode(body.device_keys.signing_key)
            and kept.entry.encryption_key_sha256
            == keys.b64u_encode(hashlib.sha256(body.device_keys.encryption_key).digest())
        )
