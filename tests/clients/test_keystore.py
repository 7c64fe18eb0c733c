"""The client's key store: sealed device and authority keys, pins, session file permissions."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clients.sdk import Keystore, KeystoreError, Profile
from clients.sdk.keystore import WitnessRequirement
from protocol import keys
from protocol.cosignature import CosignatureSigner

FAST = keys.KdfParams.for_tests()
PROFILE = Profile("http://s", "alice", "u1", "d1", "laptop")


def test_device_keys_round_trip_and_files_are_private(tmp_path: Path) -> None:
    store = Keystore(tmp_path / "home", kdf=FAST)
    device_keys = keys.DeviceKeys.generate()
    store.save_device(PROFILE, device_keys, "pass phrase")
    assert store.profile() == PROFILE
    opened = store.device_keys("pass phrase")
    assert opened.public() == device_keys.public()
    for name in ("device.key", "profile.json"):
        assert (store.home / name).stat().st_mode & 0o077 == 0
    assert (store.home).stat().st_mode & 0o077 == 0
    raw = (store.home / "device.key").read_bytes()
    assert device_keys.to_private_bytes()[:32] not in raw


def test_wrong_passphrase_and_tampering_are_refused(tmp_path: Path) -> None:
    store = Keystore(tmp_path, kdf=FAST)
    store.save_device(PROFILE, keys.DeviceKeys.generate(), "right")
    with pytest.raises(KeystoreError, match="wrong passphrase"):
        store.device_keys("wrong")
    path = tmp_path / "device.key"
    blob = bytearray(path.read_bytes())
    blob[-5] ^= 1
    path.write_bytes(bytes(blob))
    with pytest.raises(KeystoreError, match="cannot open"):
        store.device_keys("right")


def test_a_second_device_or_authority_is_not_overwritten(tmp_path: Path) -> None:
    store = Keystore(tmp_path, kdf=FAST)
    store.save_device(PROFILE, keys.DeviceKeys.generate(), "p")
    with pytest.raises(KeystoreError, match="already holds a device"):
        store.save_device(PROFILE, keys.DeviceKeys.generate(), "p")
    authority = keys.AuthorityKey.generate()
    store.save_authority("USA", authority, "a")
    with pytest.raises(KeystoreError, match="refusing to overwrite"):
        store.save_authority("USA", keys.AuthorityKey.generate(), "a")
    assert store.authority("USA", "a").public_bytes() == authority.public_bytes()
    # A device key file cannot be opened as an authority key, even with the right passphrase.
    (tmp_path / "authority-GBR.key").write_bytes((tmp_path / "device.key").read_bytes())
    with pytest.raises(KeystoreError):
        store.authority("GBR", "p")


def test_pins_refuse_a_changed_authority_key(tmp_path: Path) -> None:
    store = Keystore(tmp_path)
    first = keys.AuthorityKey.generate().public_bytes()
    store.pin("USA", first)
    store.pin("USA", first)
    with pytest.raises(KeystoreError, match="different authority key for USA"):
        store.pin("USA", keys.AuthorityKey.generate().public_bytes())
    assert store.pins() == {"USA": first}


def test_missing_state_says_what_to_do(tmp_path: Path) -> None:
    store = Keystore(tmp_path / "empty")
    with pytest.raises(KeystoreError, match="attache enroll"):
        store.profile()
    with pytest.raises(KeystoreError, match="authority init"):
        store.authority("USA", "x")
    assert store.session_token() is None


def test_the_audit_key_and_the_checkpoint_held_are_kept_and_never_go_back(
    tmp_path: Path,
) -> None:
    store = Keystore(tmp_path / "home", kdf=FAST)
    assert store.audit_key() is None
    assert store.held_checkpoint() is None
    with pytest.raises(KeystoreError, match="no audit key is pinned"):
        store.keep_checkpoint(3, b"\1" * 32)
    store.pin_audit_key("log.example+01234567+AAAA")
    store.pin_audit_key("log.example+01234567+AAAA")  # the same key again: nothing changes
    with pytest.raises(KeystoreError, match="another audit key"):
        store.pin_audit_key("log.example+76543210+BBBB")
    store.keep_checkpoint(5, b"\1" * 32)
    store.keep_checkpoint(9, b"\2" * 32)
    assert store.held_checkpoint() == (9, b"\2" * 32)
    with pytest.raises(KeystoreError, match="does not extend the one of size 9"):
        store.keep_checkpoint(7, b"\3" * 32)
    with pytest.raises(KeystoreError, match="does not extend the one of size 9"):
        store.keep_checkpoint(9, b"\3" * 32)
    assert store.held_checkpoint() == (9, b"\2" * 32)
    assert store.audit_key() == "log.example+01234567+AAAA"
    assert (store.home / "transparency.json").stat().st_mode & 0o077 == 0
    assert not (store.home / "transparency.json.tmp").exists()
    (store.home / "transparency.json").write_text('{"vkey": "k", "checkpoint": {"size": 1}}')
    with pytest.raises(KeystoreError, match=r"transparency\.json is damaged"):
        store.held_checkpoint()


def test_the_witnesses_required_are_kept_beside_the_checkpoint(tmp_path: Path) -> None:
    """Set before the audit key is pinned, kept through pinning and keeping checkpoints,
    loosened only when asked to; a damaged entry is named, not taken as no requirement."""
    one, two = (
        CosignatureSigner(f"w{i}.example", Ed25519PrivateKey.generate()).vkey() for i in (1, 2)
    )
    store = Keystore(tmp_path / "home", kdf=FAST)
    assert store.required_witnesses() is None
    required = WitnessRequirement.of([two, one], max_age=60)
    store.require_witnesses(required)
    store.pin_audit_key("log.example+01234567+AAAA")
    store.keep_checkpoint(5, b"\1" * 32)
    assert store.required_witnesses() == required
    assert required.minimum == 2
    assert required.names() == ["w1.example", "w2.example"]
    with pytest.raises(KeystoreError, match=r"w2\.example would no longer be required"):
        store.require_witnesses(WitnessRequirement.of([one], max_age=60))
    assert store.required_witnesses() == required
    store.require_witnesses(None, loosen=True)
    assert store.required_witnesses() is None
    assert store.held_checkpoint() == (5, b"\1" * 32)
    with pytest.raises(KeystoreError, match="each witness key must name a different witness"):
        WitnessRequirement.of([one, one])
    with pytest.raises(KeystoreError, match="give at least one witness key"):
        WitnessRequirement.of([])
    with pytest.raises(KeystoreError, match="3 witnesses required but only 2"):
        WitnessRequirement.of([one, two], 3)
    path = store.home / "transparency.json"
    path.write_text('{"vkey": "k", "witnesses": {"keys": ["nonsense"], "min": null}}')
    with pytest.raises(KeystoreError, match=r"transparency\.json is damaged: its witnesses"):
        store.required_witnesses()
