"""A nation's witness of the audit log (C2SP tlog-cosignature v1, docs/audit.md).

A witness holds its own Ed25519 key (sealed under a passphrase) and its own state file: the
log's pinned verifier key and the checkpoint it cosigned last. ``cosign_latest`` fetches the
latest checkpoint with a consistency proof from that one, checks the log's signature and the
proof (``protocol.cosignature.check_extends``), records the new checkpoint in its state, and
only then cosigns and posts the cosignature. So it never cosigns two checkpoints of the log
that are not one history, whatever the server serves.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clients.sdk._client import AttacheClient
from clients.sdk.audit import AuditStateError
from protocol import checkpoint as notes
from protocol import keys
from protocol.canonical import canonical_json
from protocol.cosignature import CosignatureSigner, WitnessRefusal, check_extends

WITNESS_PURPOSE = "witness-key"
STATE_VERSION = 1


class WitnessError(AuditStateError):
    """The witness refused to cosign, or its key or state is unusable; the message says which."""


def create_key(path: Path, name: str, passphrase: str) -> CosignatureSigner:
    """A new witness key named ``name``, sealed under ``passphrase`` in ``path`` (0600), with
    its verifier key in ``path`` + ``.vkey``, for auditors to pin. Refuses to overwrite."""
    if path.exists():
        raise WitnessError(f"{path} already exists; refusing to overwrite a witness key")
    private_key = Ed25519PrivateKey.generate()
    try:
        signer = CosignatureSigner(name, private_key)
    except notes.CheckpointError as exc:
        raise WitnessError(f"witness name {name!r}: {exc}") from exc
    seed = private_key.private_bytes_raw()
    secret = canonical_json({"name": name, "seed": keys.b64u_encode(seed)})
    sealed = keys.seal_secret(passphrase, secret, purpose=WITNESS_PURPOSE)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(sealed)
    Path(f"{path}.vkey").write_text(signer.vkey() + "\n", encoding="utf-8")
    return signer


def load_key(path: Path, passphrase: str) -> CosignatureSigner:
    try:
        blob = path.read_bytes()
    except FileNotFoundError as exc:
        raise WitnessError(
            f"no witness key at {path} (create one: attache audit witness init)"
        ) from exc
    try:
        secret = json.loads(keys.open_secret(passphrase, blob, purpose=WITNESS_PURPOSE))
        seed = keys.b64u_decode(secret["seed"])
        return CosignatureSigner(secret["name"], Ed25519PrivateKey.from_private_bytes(seed))
    except keys.SecretError as exc:
        raise WitnessError(f"{path}: {exc}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise WitnessError(f"{path} is not a witness key file") from exc


@dataclass(frozen=True)
class WitnessState:
    """What a witness remembers of one log: its key and the last checkpoint cosigned."""

    log_vkey: str
    size: int
    root: bytes
    checkpoint: str  # the note text cosigned last (origin, size, root, extension lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "log_vkey": self.log_vkey,
            "size": self.size,
            "root": keys.b64u_encode(self.root),
            "checkpoint": self.checkpoint,
        }


def read_state(path: Path) -> WitnessState | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"unknown version {data.get('version')!r}")
        state = WitnessState(
            log_vkey=str(data["log_vkey"]),
            size=int(data["size"]),
            root=keys.b64u_decode(data["root"]),
            checkpoint=str(data["checkpoint"]),
        )
        parsed = notes.Checkpoint.parse(state.checkpoint)
        if (parsed.size, parsed.root) != (state.size, state.root):
            raise ValueError("its size and root differ from its checkpoint's")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise WitnessError(
            f"the witness state {path} is damaged ({exc}); a witness must not cosign without "
            "it: restore it from a backup"
        ) from exc
    return state


def _write_state(path: Path, state: WitnessState) -> None:
    """Atomically, and on disk before the cosignature leaves this machine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(state.to_json(), handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One run at a time per state file: two runs at once could each cosign from the same
    remembered checkpoint and record only one of them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise WitnessError(f"another witness run holds {path}; try again later") from exc
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class WitnessResult:
    size: int
    root: bytes
    previous_size: int | None
    cosignature: str  # the line this run made
    stored: str  # the line the server holds for this witness and checkpoint
    log_pinned_now: bool

    @property
    def new(self) -> bool:
        """Whether the server kept this run's cosignature (else it had one from before)."""
        return self.stored == self.cosignature


async def cosign_latest(
    client: AttacheClient,
    signer: CosignatureSigner,
    state_path: Path,
    *,
    log_vkey: str | None = None,
    now: float | None = None,
) -> WitnessResult:
    """Check the log's latest checkpoint against the last one this witness cosigned, cosign
    it and post the cosignature. WitnessError naming the reason if it must not be cosigned:
    a fork (same size, other root; or a failed consistency proof), a rollback or replay (a
    smaller size), or a signature that does not verify with the pinned log key."""
    with _locked(state_path):
        state = read_state(state_path)
        pinned_now = False
        if state is not None and log_vkey is not None and log_vkey != state.log_vkey:
            raise WitnessError(
                f"the log key given differs from the one in {state_path}; a witness follows "
                "one log key"
            )
        chosen = state.log_vkey if state is not None else log_vkey
        if chosen is None:
            chosen = str((await client.request("GET", "/v1/audit/key"))["vkey"])
            pinned_now = True
        try:
            verifier = notes.NoteVerifier.from_vkey(chosen)
        except notes.CheckpointError as exc:
            raise WitnessError(f"the log key {chosen!r} is not a note verifier key: {exc}") from exc
        old = state.size if state is not None else 0
        view = await client.request("GET", "/v1/audit/witness", params={"old": old})
        try:
            checkpoint = notes.open_checkpoint(view["note"], [verifier], origin=verifier.name)
            proof = [keys.b64u_decode(p) for p in view["proof"]]
        except (notes.CheckpointError, ValueError, KeyError, TypeError) as exc:
            raise WitnessError(
                f"refused to cosign: the checkpoint served does not verify with the log key: {exc}"
            ) from exc
        previous = (state.size, state.root) if state is not None else None
        try:
            check_extends(previous, checkpoint, proof)
        except WitnessRefusal as exc:
            raise WitnessError(f"refused to cosign: {exc}") from exc
        body = checkpoint.body()
        # Remembered before the cosignature exists: whatever happens next, this witness will
        # never cosign anything that does not extend this checkpoint.
        _write_state(
            state_path,
            WitnessState(chosen, checkpoint.size, checkpoint.root, body),
        )
        cosignature = signer.cosign(body, int(time.time() if now is None else now))
        stored = await client.request(
            "POST",
            "/v1/audit/cosignatures",
            json={
                "size": checkpoint.size,
                "vkey": signer.vkey(),
                "cosignature": cosignature.line(),
            },
        )
        return WitnessResult(
            size=checkpoint.size,
            root=checkpoint.root,
            previous_size=None if state is None else state.size,
            cosignature=cosignature.line(),
            stored=str(stored["cosignature"]),
            log_pinned_now=pinned_now,
        )
