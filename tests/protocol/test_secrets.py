"""Secrets at rest: Argon2id + AES-256-GCM blobs under a passphrase.

Most tests seal with ``KdfParams.for_tests()`` (the accepted minimum, a few tens of ms); one
checks the real default.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

import pytest

from protocol.canonical import canonical_json
from protocol.keys import (
    KDF_MAXIMUM,
    KDF_MINIMUM,
    KdfParams,
    SecretError,
    b64u_decode,
    b64u_encode,
    open_secret,
    seal_secret,
)

FAST = KdfParams.for_tests()
PASSPHRASE = "correct horse battery staple"
SECRET = bytes(range(64))
DAMAGED = "wrong passphrase or damaged key file"


@pytest.fixture(scope="module")
def blob() -> bytes:
    return seal_secret(PASSPHRASE, SECRET, purpose="device-keys", params=FAST)


def edit(blob: bytes, **changes: Any) -> bytes:
    document = json.loads(blob)
    kdf_changes = changes.pop("kdf", {})
    document.update(changes)
    document["kdf"].update(kdf_changes)
    return canonical_json(document)


def test_roundtrip(blob: bytes) -> None:
    assert open_secret(PASSPHRASE, blob, purpose="device-keys") == SECRET


def test_default_parameters_roundtrip_and_are_recorded() -> None:
    assert KdfParams() == KdfParams(memory_kib=65536, iterations=3, lanes=1)
    assert KdfParams() != KdfParams.for_tests()
    sealed = seal_secret(PASSPHRASE, b"authority seed", purpose="authority-key")
    kdf = json.loads(sealed)["kdf"]
    assert (kdf["memory_kib"], kdf["iterations"], kdf["lanes"]) == (65536, 3, 1)
    assert open_secret(PASSPHRASE, sealed, purpose="authority-key") == b"authority seed"


def test_blob_format(blob: bytes) -> None:
    document = json.loads(blob)
    assert blob == canonical_json(document)
    assert set(document) == {"type", "version", "purpose", "kdf", "nonce", "ciphertext"}
    assert document["type"] == "attache-sealed-secret"
    assert document["version"] == 1
    assert document["purpose"] == "device-keys"
    assert document["kdf"]["algorithm"] == "argon2id"
    assert len(b64u_decode(document["kdf"]["salt"])) == 16
    assert len(b64u_decode(document["nonce"])) == 12
    assert len(b64u_decode(document["ciphertext"])) == len(SECRET) + 16
    assert SECRET.hex() not in blob.decode()


def test_salt_and_nonce_are_fresh_each_time() -> None:
    first = json.loads(seal_secret(PASSPHRASE, SECRET, purpose="device-keys", params=FAST))
    second = json.loads(seal_secret(PASSPHRASE, SECRET, purpose="device-keys", params=FAST))
    assert first["kdf"]["salt"] != second["kdf"]["salt"]
    assert first["nonce"] != second["nonce"]
    assert first["ciphertext"] != second["ciphertext"]


@pytest.mark.parametrize(
    "passphrase",
    ["", "correct horse battery stapl", "Correct horse battery staple", PASSPHRASE + " "],
)
def test_wrong_passphrase(blob: bytes, passphrase: str) -> None:
    with pytest.raises(SecretError, match=DAMAGED):
        open_secret(passphrase, blob, purpose="device-keys")


def test_passphrase_is_normalised() -> None:
    composed = "caf\u00e9 au lait"
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    sealed = seal_secret(composed, SECRET, purpose="device-keys", params=FAST)
    assert open_secret(decomposed, sealed, purpose="device-keys") == SECRET


def test_purpose_is_bound(blob: bytes) -> None:
    with pytest.raises(SecretError, match="holds a 'device-keys' secret, not 'authority-key'"):
        open_secret(PASSPHRASE, blob, purpose="authority-key")
    # Relabelling the file's purpose does not help: the purpose is in the associated data.
    with pytest.raises(SecretError, match=DAMAGED):
        open_secret(PASSPHRASE, edit(blob, purpose="authority-key"), purpose="authority-key")


# ---------------------------------------------------------------------------------------------
# Tampering with each field


def flip_last_bit(text: str) -> str:
    data = bytearray(b64u_decode(text))
    data[-1] ^= 0x01
    return b64u_encode(bytes(data))


@pytest.mark.parametrize("field", ["ciphertext", "nonce"])
def test_tampered_ciphertext_or_nonce(blob: bytes, field: str) -> None:
    document = json.loads(blob)
    with pytest.raises(SecretError, match=DAMAGED):
        open_secret(
            PASSPHRASE, edit(blob, **{field: flip_last_bit(document[field])}), purpose="device-keys"
        )


def test_tampered_salt(blob: bytes) -> None:
    salt = flip_last_bit(json.loads(blob)["kdf"]["salt"])
    with pytest.raises(SecretError, match=DAMAGED):
        open_secret(PASSPHRASE, edit(blob, kdf={"salt": salt}), purpose="device-keys")


@pytest.mark.parametrize(
    "kdf",
    [
        {"iterations": FAST.iterations + 1},
        {"memory_kib": FAST.memory_kib + 1024},
        {"lanes": FAST.lanes + 1},
    ],
)
def test_tampered_kdf_parameters_within_range(blob: bytes, kdf: dict[str, int]) -> None:
    with pytest.raises(SecretError, match=DAMAGED):
        open_secret(PASSPHRASE, edit(blob, kdf=kdf), purpose="device-keys")


def test_truncated_ciphertext(blob: bytes) -> None:
    ciphertext = b64u_decode(json.loads(blob)["ciphertext"])
    for cut in (b"", ciphertext[:15], ciphertext[:-1]):
        with pytest.raises(SecretError, match=DAMAGED):
            open_secret(PASSPHRASE, edit(blob, ciphertext=b64u_encode(cut)), purpose="device-keys")


@pytest.mark.parametrize(
    "changes",
    [
        {"type": "something-else"},
        {"extra": "field"},
        {"nonce": "AAAA"},
        {"nonce": "not base64!"},
        {"ciphertext": "A"},
        {"ciphertext": 42},
        {"kdf": {"algorithm": "argon2i"}},
        {"kdf": {"salt": "AAAA"}},
        {"kdf": {"salt": None}},
        {"kdf": {"pepper": "x"}},
    ],
)
def test_structurally_damaged_blob(blob: bytes, changes: dict[str, Any]) -> None:
    with pytest.raises(SecretError, match=DAMAGED):
        open_secret(PASSPHRASE, edit(blob, **changes), purpose="device-keys")


@pytest.mark.parametrize("field", ["type", "version", "purpose", "kdf", "nonce", "ciphertext"])
def test_missing_field(blob: bytes, field: str) -> None:
    document = json.loads(blob)
    del document[field]
    with pytest.raises(SecretError):
        open_secret(PASSPHRASE, canonical_json(document), purpose="device-keys")


@pytest.mark.parametrize("version", [2, 0, "1", True, 1.0])
def test_other_versions_are_refused(blob: bytes, version: Any) -> None:
    document = json.loads(blob)
    text = json.dumps({**document, "version": version})
    with pytest.raises(SecretError, match="unsupported key file version"):
        open_secret(PASSPHRASE, text.encode(), purpose="device-keys")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"[]",
        b"\xff\xfe",
        b'{"type": NaN}',
        b"[" * 100_000,
    ],
)
def test_not_a_sealed_secret(data: bytes) -> None:
    with pytest.raises(SecretError, match=DAMAGED):
        open_secret(PASSPHRASE, data, purpose="device-keys")


def test_duplicate_keys_are_refused(blob: bytes) -> None:
    text = blob.decode()
    duplicated = text.replace('"version":1', '"version":1,"version":1')
    assert duplicated != text
    with pytest.raises(SecretError, match=DAMAGED):
        open_secret(PASSPHRASE, duplicated.encode(), purpose="device-keys")


# ---------------------------------------------------------------------------------------------
# KDF floor and ceiling


@pytest.mark.parametrize(
    "kdf",
    [
        {"memory_kib": KDF_MINIMUM.memory_kib - 1},
        {"memory_kib": 8},
        {"iterations": KDF_MINIMUM.iterations - 1},
        {"lanes": 0},
        {"memory_kib": KDF_MAXIMUM.memory_kib + 1},
        {"memory_kib": 2**40},
        {"iterations": KDF_MAXIMUM.iterations + 1},
        {"iterations": 2**32},
        {"lanes": KDF_MAXIMUM.lanes + 1},
        {"iterations": 2.5},
        {"iterations": True},
        {"memory_kib": "65536"},
    ],
)
def test_kdf_parameters_outside_range_are_refused_before_any_work(
    blob: bytes, kdf: dict[str, Any]
) -> None:
    with pytest.raises(SecretError, match="outside the accepted range"):
        open_secret(PASSPHRASE, edit(blob, kdf=kdf), purpose="device-keys")


@pytest.mark.parametrize(
    "params",
    [
        KdfParams(memory_kib=8, iterations=1, lanes=1),
        KdfParams(memory_kib=KDF_MINIMUM.memory_kib, iterations=1, lanes=1),
        KdfParams(memory_kib=KDF_MAXIMUM.memory_kib * 2, iterations=3, lanes=1),
    ],
)
def test_seal_refuses_parameters_open_would_refuse(params: KdfParams) -> None:
    with pytest.raises(SecretError, match="outside the accepted range"):
        seal_secret(PASSPHRASE, SECRET, purpose="device-keys", params=params)


def test_for_tests_is_the_floor() -> None:
    assert KdfParams.for_tests() == KDF_MINIMUM
    KDF_MINIMUM.check()
    KDF_MAXIMUM.check()
    KdfParams().check()


# ---------------------------------------------------------------------------------------------
# Arguments


def test_empty_passphrase_is_refused_when_sealing() -> None:
    with pytest.raises(ValueError, match="empty passphrase"):
        seal_secret("", SECRET, purpose="device-keys", params=FAST)


@pytest.mark.parametrize("purpose", ["", "Device-Keys", "device keys", "-x", "x" * 65, "é"])
def test_purpose_must_be_a_simple_name(purpose: str) -> None:
    with pytest.raises(ValueError, match="purpose"):
        seal_secret(PASSPHRASE, SECRET, purpose=purpose, params=FAST)
    with pytest.raises(ValueError, match="purpose"):
        open_secret(PASSPHRASE, b"{}", purpose=purpose)


def test_empty_plaintext_roundtrips() -> None:
    sealed = seal_secret(PASSPHRASE, b"", purpose="device-keys", params=FAST)
    assert open_secret(PASSPHRASE, sealed, purpose="device-keys") == b""
