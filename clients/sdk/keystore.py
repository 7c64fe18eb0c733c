"""The client's local state: device keys (encrypted at rest), pinned authority keys, session.

Layout of the home directory (``ATTACHE_HOME``, default ``~/.attache``), created 0700:

- ``profile.json``: server address, username, user id, device id and name (not secret);
- ``device.key``: the device's private keys, sealed under the user's passphrase (Argon2id +
  AES-256-GCM, see ``protocol.keys.seal_secret``);
- ``pins.json``: the nation enrolment authority public keys this device trusts, pinned at
  enrolment; certificates of other devices are verified against these and nothing else;
- ``policy.json``: the coalition policy this device holds to (docs/coalition.md): the digest
  of its founding version, pinned at enrolment (or on first use, if the server published none
  then), and the latest version verified from it, with its signatures;
- ``transparency.json``: the server's audit (checkpoint) key, pinned at enrolment (or on
  first use, for a home enrolled before key transparency), and the largest checkpoint (size,
  root) this device verified a key directory bundle at, so that the next run refuses an older
  or forked one (PROTOCOL.md §19.4, docs/client.md); and the witnesses whose cosignatures a
  checkpoint must carry before this device trusts it, if the user required any
  (``WitnessRequirement``: set at enrolment or by ``attache witness require``, never from a
  server's answer);
- ``session.json``: the current bearer token (0600), a short-lived, revocable secret;
- ``authority-<NATION>.key``: a security officer's nation enrolment authority key, sealed
  under its own passphrase, with ``authority-<NATION>.pub`` beside it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from protocol import keys
from protocol.catalog import NATION
from protocol.checkpoint import CheckpointError
from protocol.coalition import PolicyError, SignedPolicy
from protocol.cosignature import CosignatureVerifier

DEVICE_PURPOSE = "device-keys"
AUTHORITY_PURPOSE = "authority-key"


class KeystoreError(Exception):
    """Local state missing or unreadable; the message says what to do."""


@dataclass(frozen=True)
class Profile:
    server: str
    username: str
    user_id: str
    device_id: str
    device_name: str


#: At most this many witnesses may be required (the server keeps 64 cosignatures a checkpoint).
MAX_WITNESSES = 64


@dataclass(frozen=True)
class WitnessRequirement:
    """The witnesses whose cosignatures a key directory checkpoint must carry before this
    device seals to anyone (PROTOCOL.md §19.4): their vkeys (C2SP tlog-cosignature,
    ``name+key id+base64``), how many of them must have cosigned (``min``; None: all), and
    the largest age in seconds of a cosignature that counts (``max_age``; None: any age)."""

    vkeys: tuple[str, ...]
    min: int | None = None
    max_age: int | None = None

    @classmethod
    def of(
        cls, vkeys: Any, minimum: int | None = None, max_age: int | None = None
    ) -> WitnessRequirement:
        """Checked: well-formed vkeys of distinct witnesses (at least one), ``minimum``
        between 1 and their number, ``max_age`` at least 1. KeystoreError saying what is
        wrong otherwise."""
        if isinstance(vkeys, str) or not isinstance(vkeys, (list, tuple)) or not vkeys:
            raise KeystoreError("give at least one witness key (name+key id+base64)")
        if len(vkeys) > MAX_WITNESSES:
            raise KeystoreError(f"at most {MAX_WITNESSES} witnesses can be required")
        parsed = []
        for vkey in vkeys:
            text = vkey.strip() if isinstance(vkey, str) else vkey
            try:
                parsed.append(CosignatureVerifier.from_vkey(text))
            except CheckpointError as exc:
                raise KeystoreError(f"witness key {str(vkey)[:120]!r}: {exc}") from exc
        names = [w.name for w in parsed]
        if len(set(names)) != len(names):
            raise KeystoreError("each witness key must name a different witness")
        if minimum is not None and (type(minimum) is not int or not 1 <= minimum <= len(parsed)):
            raise KeystoreError(
                f"{minimum} witnesses required but only {len(parsed)} witness keys given: "
                f"the minimum is between 1 and {len(parsed)}"
            )
        if max_age is not None and (type(max_age) is not int or max_age < 1):
            raise KeystoreError(f"a maximum age is a number of seconds, at least 1: {max_age!r}")
        return cls(tuple(sorted(w.vkey() for w in parsed)), minimum, max_age)

    @property
    def minimum(self) -> int:
        """How many of the witnesses must have cosigned."""
        return len(self.vkeys) if self.min is None else self.min

    def verifiers(self) -> list[CosignatureVerifier]:
        return [CosignatureVerifier.from_vkey(v) for v in self.vkeys]

    def names(self) -> list[str]:
        return [w.name for w in self.verifiers()]

    def to_json(self) -> dict[str, Any]:
        return {"keys": list(self.vkeys), "min": self.min, "max_age": self.max_age}

    def loosened_by(self, new: WitnessRequirement | None) -> list[str]:
        """How ``new`` would accept a checkpoint that this requirement refuses, in sentences
        (empty when it accepts nothing this one refuses). ``new`` None requires no witness."""
        if new is None:
            return ["no witness would be required any more"]
        said = [
            f"witness {CosignatureVerifier.from_vkey(v).name} would no longer be required"
            for v in self.vkeys
            if v not in new.vkeys
        ]
        # Any ``new.minimum`` of new's witnesses must include ``self.minimum`` of ours, even
        # when it takes every witness that is new.
        added = len(set(new.vkeys) - set(self.vkeys))
        if not said and new.minimum - added < self.minimum:
            said.append(
                f"{new.minimum} of {len(new.vkeys)} witnesses would do where {self.minimum} of "
                f"these {len(self.vkeys)} must cosign now"
            )
        if self.max_age is not None and (new.max_age is None or new.max_age > self.max_age):
            after = "no limit" if new.max_age is None else f"{new.max_age} s"
            said.append(f"cosignatures up to {after} old would count, not {self.max_age} s")
        return said


def default_home() -> Path:
    return Path(os.environ.get("ATTACHE_HOME") or Path.home() / ".attache")


def _write_private(path: Path, data: bytes) -> None:
    """Write a file readable by its owner alone, atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


class Keystore:
    def __init__(self, home: Path | None = None, *, kdf: keys.KdfParams | None = None) -> None:
        """``kdf`` overrides the passphrase KDF cost for new files (tests use a cheap one)."""
        self.home = home or default_home()
        self._kdf = kdf

    def _ensure_home(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _read_json(self, name: str) -> Any:
        path = self.home / name
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise KeystoreError(f"{path} is unreadable: {exc}") from exc

    # --- device ------------------------------------------------------------------------------

    def has_device(self) -> bool:
        return (self.home / "device.key").exists()

    def save_device(self, profile: Profile, device_keys: keys.DeviceKeys, passphrase: str) -> None:
        if self.has_device():
            raise KeystoreError(
                f"{self.home} already holds a device; use another ATTACHE_HOME or remove it"
            )
        self._ensure_home()
        sealed = keys.seal_secret(
            passphrase, device_keys.to_private_bytes(), purpose=DEVICE_PURPOSE, params=self._kdf
        )
        _write_private(self.home / "device.key", sealed)
        _write_private(self.home / "profile.json", json.dumps(asdict(profile), indent=2).encode())

    def profile(self) -> Profile:
        data = self._read_json("profile.json")
        if data is None:
            raise KeystoreError(f"no device enrolled in {self.home}; run 'attache enroll' first")
        try:
            return Profile(**data)
        except TypeError as exc:
            raise KeystoreError(f"{self.home / 'profile.json'} is damaged: {exc}") from exc

    def device_keys(self, passphrase: str) -> keys.DeviceKeys:
        path = self.home / "device.key"
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            raise KeystoreError(
                f"no device keys in {self.home}; run 'attache enroll' first"
            ) from None
        try:
            return keys.DeviceKeys.from_private_bytes(
                keys.open_secret(passphrase, blob, purpose=DEVICE_PURPOSE)
            )
        except keys.SecretError as exc:
            raise KeystoreError(f"cannot open {path}: {exc}") from exc

    # --- pinned authority keys ---------------------------------------------------------------

    def pins(self) -> dict[str, bytes]:
        data = self._read_json("pins.json") or {}
        return {nation: keys.b64u_decode(key) for nation, key in data.items()}

    def pin(self, nation: str, authority_key: bytes) -> None:
        """Pin a nation's authority key; a different key for an already pinned nation is refused."""
        current = self.pins()
        if nation in current and current[nation] != authority_key:
            raise KeystoreError(
                f"the server offers a different authority key for {nation} than the one pinned "
                f"here ({keys.fingerprint(current[nation])}); refusing it"
            )
        current[nation] = authority_key
        self._ensure_home()
        encoded = {n: keys.b64u_encode(k) for n, k in sorted(current.items())}
        _write_private(self.home / "pins.json", json.dumps(encoded, indent=2).encode())

    # --- pinned coalition policy -------------------------------------------------------------

    def policy_pin(self) -> tuple[bytes, SignedPolicy] | None:
        """The founding version's digest and the latest version verified from it, or None
        when no policy is pinned. Parsed again (for structure) but not verified again: they
        were verified before they were written, and this file is as trusted as ``pins.json``."""
        data = self._read_json("policy.json")
        if data is None:
            return None
        try:
            return keys.b64u_decode(data["founding"]), SignedPolicy.from_json(data["latest"])
        except (KeyError, TypeError, ValueError) as exc:  # PolicyError is a ValueError
            raise KeystoreError(f"{self.home / 'policy.json'} is damaged: {exc}") from exc

    def pin_policy(self, founding: bytes, latest: SignedPolicy) -> None:
        """Pin a coalition policy the caller has verified: ``latest`` follows, through valid
        successors, the founding version of digest ``founding``. Another founding version
        than the one pinned, or an earlier version than the one held, is refused."""
        held = self.policy_pin()
        if held is not None:
            if held[0] != founding:
                raise KeystoreError(
                    "the server's coalition policy descends from another founding version than "
                    f"the one pinned here ({keys.b64u_encode(held[0])}); refusing it"
                )
            if latest.policy.policy_version < held[1].policy.policy_version:
                raise KeystoreError(
                    f"coalition policy version {latest.policy.policy_version} is older than "
                    f"version {held[1].policy.policy_version} held here; refusing it"
                )
        self._ensure_home()
        try:
            document = {"founding": keys.b64u_encode(founding), "latest": latest.to_json()}
        except PolicyError as exc:
            raise KeystoreError(f"cannot pin the coalition policy: {exc}") from exc
        _write_private(self.home / "policy.json", json.dumps(document, indent=1).encode())

    # --- key transparency: the pinned audit key and the checkpoint held -------------------

    def _transparency(self) -> dict[str, Any]:
        data = self._read_json("transparency.json")
        if data is None:
            return {}
        if not isinstance(data, dict) or not isinstance(data.get("vkey", ""), str):
            raise KeystoreError(f"{self.home / 'transparency.json'} is damaged: no audit key")
        return data

    def audit_key(self) -> str | None:
        """The server's audit (checkpoint) verifier key pinned here, or None."""
        vkey = self._transparency().get("vkey")
        return str(vkey) if vkey is not None else None

    def pin_audit_key(self, vkey: str) -> None:
        """Pin the server's audit key; another key than the one pinned is refused."""
        data = self._transparency()
        pinned = data.get("vkey")
        if pinned is not None and pinned != vkey:
            raise KeystoreError(
                f"the server offers another audit key ({vkey}) than the one pinned here "
                f"({pinned}); refusing it"
            )
        if pinned is None:
            self._write_transparency({**data, "vkey": vkey})

    def held_checkpoint(self) -> tuple[int, bytes] | None:
        """The (size, root) of the largest checkpoint verified here, or None."""
        held = self._transparency().get("checkpoint")
        if held is None:
            return None
        try:
            root = keys.b64u_decode(held["root"])
            size = held["size"]
            if not isinstance(size, int) or size < 0 or len(root) != 32:
                raise ValueError("not a size and a 32-byte root")
        except (KeyError, TypeError, ValueError) as exc:
            raise KeystoreError(f"{self.home / 'transparency.json'} is damaged: {exc}") from exc
        return size, root

    def keep_checkpoint(self, size: int, root: bytes) -> None:
        """Keep a checkpoint the caller verified consistent with the one held, and with the
        cosignatures required here (written atomically); a smaller one, or another root for
        the same size, is refused."""
        data = self._transparency()
        if "vkey" not in data:
            raise KeystoreError("no audit key is pinned here to keep a checkpoint under")
        held = self.held_checkpoint()
        if held is not None:
            if size < held[0] or (size == held[0] and root != held[1]):
                raise KeystoreError(
                    f"checkpoint of size {size} does not extend the one of size {held[0]} "
                    "held here; refusing to keep it"
                )
            if held == (size, root):
                return
        self._write_transparency(
            {**data, "checkpoint": {"size": size, "root": keys.b64u_encode(root)}}
        )

    def required_witnesses(self) -> WitnessRequirement | None:
        """The witnesses whose cosignatures a checkpoint must carry here, or None."""
        stored = self._transparency().get("witnesses")
        if stored is None:
            return None
        try:
            return WitnessRequirement.of(stored["keys"], stored["min"], stored["max_age"])
        except (KeyError, TypeError, KeystoreError) as exc:
            raise KeystoreError(
                f"{self.home / 'transparency.json'} is damaged: its witnesses: {exc}"
            ) from exc

    def require_witnesses(
        self, required: WitnessRequirement | None, *, loosen: bool = False
    ) -> None:
        """Require ``required`` from now on (None: no witness), in place of what was
        required. A change that would accept a checkpoint the current requirement refuses
        (a witness dropped, a smaller share of them, an older cosignature counting) is
        refused unless ``loosen``: a user does that on purpose, never by accident, and no
        server's answer ever calls this."""
        data = self._transparency()
        current = self.required_witnesses()
        if current is not None and not loosen:
            looser = current.loosened_by(required)
            if looser:
                raise KeystoreError(
                    "that loosens the witnesses required here ("
                    + "; ".join(looser)
                    + "): say so with --force"
                )
        if required is None:
            data.pop("witnesses", None)
        else:
            data["witnesses"] = required.to_json()
        self._write_transparency(data)

    def _write_transparency(self, data: dict[str, Any]) -> None:
        self._ensure_home()
        _write_private(self.home / "transparency.json", json.dumps(data, indent=1).encode())

    # --- session -----------------------------------------------------------------------------

    def save_session(self, token: str, expires_at: str) -> None:
        self._ensure_home()
        data = json.dumps({"token": token, "expires_at": expires_at}).encode()
        _write_private(self.home / "session.json", data)

    def session_token(self) -> str | None:
        data = self._read_json("session.json")
        return str(data["token"]) if isinstance(data, dict) and "token" in data else None

    def clear_session(self) -> None:
        (self.home / "session.json").unlink(missing_ok=True)

    # --- nation authority keys ---------------------------------------------------------------

    def authority_path(self, nation: str) -> Path:
        """Where ``nation``'s authority key is kept; a code that is not three capital letters
        (which could name a file elsewhere, or none) is refused."""
        if not isinstance(nation, str) or NATION.fullmatch(nation) is None:
            raise KeystoreError(
                f"{nation[:40]!r} is not a nation code: three capital letters, as USA"
            )
        return self.home / f"authority-{nation}.key"

    def save_authority(self, nation: str, authority: keys.AuthorityKey, passphrase: str) -> Path:
        path = self.authority_path(nation)
        if path.exists():
            raise KeystoreError(f"{path} already exists; refusing to overwrite an authority key")
        self._ensure_home()
        sealed = keys.seal_secret(
            passphrase, authority.to_private_bytes(), purpose=AUTHORITY_PURPOSE, params=self._kdf
        )
        _write_private(path, sealed)
        public = keys.b64u_encode(authority.public_bytes()) + "\n"
        path.with_suffix(".pub").write_text(public, encoding="utf-8")
        return path

    def authority(self, nation: str, passphrase: str) -> keys.AuthorityKey:
        path = self.authority_path(nation)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            raise KeystoreError(
                f"no authority key for {nation} in {self.home}; only {nation}'s security officer "
                "holds it ('attache authority init')"
            ) from None
        try:
            return keys.AuthorityKey.from_private_bytes(
                keys.open_secret(passphrase, blob, purpose=AUTHORITY_PURPOSE)
            )
        except keys.SecretError as exc:
            raise KeystoreError(f"cannot open {path}: {exc}") from exc

    def authority_nations(self) -> list[str]:
        return sorted(
            p.name[len("authority-") : -len(".key")] for p in self.home.glob("authority-*.key")
        )
