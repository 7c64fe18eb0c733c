"""Device keys, X-Wing, encodings, fingerprints, registration and login proofs.

Known-answer vectors live in vectors/keys.json. They were produced once by running the first
version of protocol/keys.py on the fixed seeds and inputs recorded there (authority seed
00..1f, device signing seed 20..3f, X-Wing seed 40..5f): the Ed25519 signatures are
deterministic, so any change means the wire format changed. The ``xwing_draft08`` entry was
copied from draft-connolly-cfrg-xwing-kem-08 Appendix C and does not depend on Attaché.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import ed25519, mlkem, x25519
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.canonical import (
    CTX_DEVICE_REGISTRATION,
    CTX_KEY_FINGERPRINT,
    CTX_LOGIN,
    digest,
    signing_input,
)
from protocol.keys import (
    ENCRYPTION_PUBLIC_KEY_SIZE,
    HPKE_SUITE,
    AuthorityKey,
    DeviceKeys,
    DevicePublicKeys,
    authority_key_id,
    b64u_decode,
    b64u_encode,
    fingerprint,
    format_utc_time,
    load_encryption_public_key,
    load_signing_public_key,
    login_payload,
    new_login_challenge,
    parse_utc_time,
    registration_payload,
    sign_login,
    sign_registration,
    verify_login,
    verify_registration,
    xwing_private_key,
    xwing_public_bytes,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "keys.json").read_text(encoding="utf-8")
)
SERVER = "https://attache.example"


@pytest.fixture(scope="module")
def device() -> DeviceKeys:
    return DeviceKeys.generate()


@pytest.fixture(scope="module")
def other_device() -> DeviceKeys:
    return DeviceKeys.generate()


def vector_device() -> DeviceKeys:
    return DeviceKeys.from_private_bytes(
        bytes.fromhex(VECTORS["device_signing_seed"]) + bytes.fromhex(VECTORS["device_xwing_seed"])
    )


# ---------------------------------------------------------------------------------------------
# base64url


@pytest.mark.parametrize("data", [b"", b"\x00", b"\xff\xfe", b"abc", bytes(range(256))])
def test_b64u_roundtrip(data: bytes) -> None:
    text = b64u_encode(data)
    assert "=" not in text
    assert b64u_decode(text) == data


@pytest.mark.parametrize(
    "text",
    [
        "YQ==",  # padding
        "YQ=",
        "a+b/",  # standard alphabet
        "YW Jj",  # whitespace
        "YWJj\n",
        "A",  # impossible length
        "YR",  # non-zero trailing bits ("a" is "YQ")
        "AAB",  # likewise for two bytes
        "YWJj!",
        "\uff39\uff37\uff2a\uff4a",  # full-width letters
    ],
)
def test_b64u_decode_is_strict(text: str) -> None:
    with pytest.raises(ValueError, match="base64url"):
        b64u_decode(text)


def test_b64u_decode_refuses_non_text() -> None:
    with pytest.raises(ValueError, match="string"):
        b64u_decode(b"YWJj")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# RFC 3339 times


def test_time_roundtrip() -> None:
    moment = parse_utc_time("2026-03-04T05:06:07Z")
    assert moment == datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert format_utc_time(moment) == "2026-03-04T05:06:07Z"


@pytest.mark.parametrize(
    "text",
    [
        "2026-03-04T05:06:07+00:00",
        "2026-03-04T05:06:07.5Z",
        "2026-03-04 05:06:07Z",
        "2026-03-04T05:06:07z",
        "2026-13-04T05:06:07Z",
        "\uff12\uff10\uff12\uff16-03-04T05:06:07Z",  # full-width digits
    ],
)
def test_time_parsing_is_strict(text: str) -> None:
    with pytest.raises(ValueError, match=r"RFC 3339|does not match"):
        parse_utc_time(text)


@settings(max_examples=500, deadline=None)
@given(st.from_regex(r"\A[0-9]{4}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-6][0-9]:[0-6][0-9]Z\Z"))
def test_time_parsing_agrees_with_strptime(text: str) -> None:
    # parse_utc_time checks the ranges with fromisoformat; strptime is the reference.
    try:
        expected = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        with pytest.raises(ValueError, match="RFC 3339"):
            parse_utc_time(text)
    else:
        assert parse_utc_time(text) == expected


def test_format_time_refuses_naive_datetime() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        format_utc_time(parse_utc_time("2026-01-01T00:00:00Z").replace(tzinfo=None))


# ---------------------------------------------------------------------------------------------
# X-Wing


def test_xwing_derivation_matches_an_independent_computation() -> None:
    seed = bytes.fromhex(VECTORS["device_xwing_seed"])
    expanded = hashlib.shake_256(seed).digest(96)
    mlkem_public = (
        mlkem.MLKEM768PrivateKey.from_seed_bytes(expanded[:64]).public_key().public_bytes_raw()
    )
    x25519_public = (
        x25519.X25519PrivateKey.from_private_bytes(expanded[64:]).public_key().public_bytes_raw()
    )
    public = xwing_public_bytes(seed)
    assert len(public) == ENCRYPTION_PUBLIC_KEY_SIZE == 1216
    assert public[:1184] == mlkem_public
    assert public[1184:] == x25519_public
    assert vector_device().public().encryption_key == public


def test_xwing_matches_the_draft_vector() -> None:
    vector = VECTORS["xwing_draft08"]
    assert xwing_public_bytes(bytes.fromhex(vector["seed"])).hex() == vector["public_key"]


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_xwing_seed_must_be_32_bytes(size: int) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        xwing_private_key(bytes(size))


def test_hpke_roundtrip_through_public_encoding(device: DeviceKeys) -> None:
    suite = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
    public_key = load_encryption_public_key(device.public().encryption_key)
    sealed = suite.encrypt(b"audience key", public_key, info=b"attache/test")
    assert len(sealed) == 1120 + len(b"audience key") + 16
    # A private key rebuilt from the stored seed alone opens it, with either suite object.
    restored = DeviceKeys.from_private_bytes(device.to_private_bytes())
    assert suite.decrypt(sealed, restored.encryption_private_key(), info=b"attache/test") == (
        b"audience key"
    )
    assert HPKE_SUITE.decrypt(
        sealed, xwing_private_key(device.to_private_bytes()[32:]), info=b"attache/test"
    ) == (b"audience key")


def test_hpke_does_not_open_for_another_device_or_info(
    device: DeviceKeys, other_device: DeviceKeys
) -> None:
    sealed = HPKE_SUITE.encrypt(b"k", device.public().encryption_public_key(), info=b"a")
    with pytest.raises(InvalidTag):
        HPKE_SUITE.decrypt(sealed, other_device.encryption_private_key(), info=b"a")
    with pytest.raises(InvalidTag):
        HPKE_SUITE.decrypt(sealed, device.encryption_private_key(), info=b"b")


@pytest.mark.parametrize("size", [0, 1184, 1215, 1217, 2432])
def test_encryption_public_key_length_is_checked(size: int) -> None:
    with pytest.raises(ValueError, match="1216 bytes"):
        load_encryption_public_key(bytes(size))


def test_encryption_public_key_with_low_order_x25519_part_is_refused(device: DeviceKeys) -> None:
    mlkem_part = device.public().encryption_key[:1184]
    with pytest.raises(ValueError, match="low-order"):
        load_encryption_public_key(mlkem_part + bytes(32))
    with pytest.raises(ValueError, match="low-order"):
        load_encryption_public_key(mlkem_part + (1).to_bytes(32, "little"))


def test_encryption_public_key_with_bad_mlkem_part_is_refused(device: DeviceKeys) -> None:
    # Coefficients of 0xfff exceed q = 3329: FIPS 203's modulus check must reject them.
    with pytest.raises(ValueError, match="ML-KEM"):
        load_encryption_public_key(b"\xff" * 1184 + device.public().encryption_key[1184:])


# ---------------------------------------------------------------------------------------------
# Device keys


def test_private_bytes_roundtrip(device: DeviceKeys) -> None:
    data = device.to_private_bytes()
    assert len(data) == 64
    restored = DeviceKeys.from_private_bytes(data)
    assert restored.public() == device.public()
    assert restored.to_private_bytes() == data
    assert data[:32] == device.signing_private_key().private_bytes_raw()


@pytest.mark.parametrize("size", [0, 32, 63, 65])
def test_private_bytes_length_is_checked(size: int) -> None:
    with pytest.raises(ValueError, match="64 bytes"):
        DeviceKeys.from_private_bytes(bytes(size))


def test_generated_keys_differ() -> None:
    first, second = DeviceKeys.generate(), DeviceKeys.generate()
    assert first.public().signing_key != second.public().signing_key
    assert first.public().encryption_key != second.public().encryption_key


def test_repr_does_not_show_private_material(device: DeviceKeys) -> None:
    text = repr(device)
    assert device.to_private_bytes().hex()[:16] not in text
    assert device.public().fingerprint() in text


def test_device_public_keys_json_roundtrip(device: DeviceKeys) -> None:
    public = device.public()
    assert DevicePublicKeys.from_json(public.to_json()) == public
    with pytest.raises(ValueError, match="exactly"):
        DevicePublicKeys.from_json({**public.to_json(), "extra": "x"})
    with pytest.raises(ValueError, match="32 bytes"):
        DevicePublicKeys.from_json({**public.to_json(), "signing_key": b64u_encode(bytes(31))})
    with pytest.raises(ValueError, match="base64url"):
        DevicePublicKeys.from_json({**public.to_json(), "signing_key": "not base64!"})


def test_device_public_keys_check_lengths(device: DeviceKeys) -> None:
    with pytest.raises(ValueError, match="signing public key"):
        DevicePublicKeys(signing_key=bytes(31), encryption_key=device.public().encryption_key)
    with pytest.raises(ValueError, match="encryption public key"):
        DevicePublicKeys(signing_key=bytes(32), encryption_key=bytes(1215))


def test_signing_public_key_length_is_checked() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        load_signing_public_key(bytes(33))


# ---------------------------------------------------------------------------------------------
# Fingerprints and authority keys


def test_fingerprint_format_and_definition() -> None:
    key = bytes(range(32))
    expected = digest(CTX_KEY_FINGERPRINT, key)[:20].hex()
    text = fingerprint(key)
    assert text.replace(" ", "") == expected
    assert [len(group) for group in text.split(" ")] == [4] * 10
    assert fingerprint(key[:-1] + b"\x20") != text


def test_device_fingerprint_covers_both_keys(device: DeviceKeys, other_device: DeviceKeys) -> None:
    mixed = DevicePublicKeys(
        signing_key=device.public().signing_key,
        encryption_key=other_device.public().encryption_key,
    )
    assert mixed.fingerprint() != device.public().fingerprint()
    assert device.public().fingerprint() == fingerprint(
        device.public().signing_key + device.public().encryption_key
    )


def test_authority_key_roundtrip_and_id() -> None:
    authority = AuthorityKey.generate()
    restored = AuthorityKey.from_private_bytes(authority.to_private_bytes())
    assert restored.public_bytes() == authority.public_bytes()
    assert restored.key_id == authority.key_id == authority_key_id(authority.public_bytes())
    assert len(b64u_decode(authority.key_id)) == 16
    assert AuthorityKey.generate().key_id != authority.key_id
    with pytest.raises(ValueError, match="32 bytes"):
        authority_key_id(bytes(31))
    with pytest.raises(ValueError, match="32 bytes"):
        AuthorityKey.from_private_bytes(bytes(64))


# ---------------------------------------------------------------------------------------------
# Known answers


def test_known_answer_vectors() -> None:
    authority = AuthorityKey.from_private_bytes(bytes.fromhex(VECTORS["authority_seed"]))
    device = vector_device()
    public = device.public()
    expected_signing = ed25519.Ed25519PrivateKey.from_private_bytes(
        bytes.fromhex(VECTORS["device_signing_seed"])
    ).public_key()
    assert public.signing_key == expected_signing.public_bytes_raw()
    assert authority.public_bytes().hex() == VECTORS["authority_public_key"]
    assert authority.key_id == VECTORS["authority_key_id"]
    assert authority.fingerprint() == VECTORS["authority_fingerprint"]
    assert public.signing_key.hex() == VECTORS["device_signing_public_key"]
    assert (
        hashlib.sha256(public.encryption_key).hexdigest()
        == VECTORS["device_encryption_public_key_sha256"]
    )
    assert public.fingerprint() == VECTORS["device_fingerprint"]
    registration = VECTORS["registration"]
    assert sign_registration(
        device,
        user=registration["user"],
        nonce=registration["nonce"],
        server=registration["server"],
    ) == bytes.fromhex(registration["signature"])
    login = {name: VECTORS["login"][name] for name in ("device_id", "challenge", "server_origin")}
    assert sign_login(device, login) == bytes.fromhex(VECTORS["login"]["signature"])


# ---------------------------------------------------------------------------------------------
# Registration proof


def test_registration_proof_verifies(device: DeviceKeys) -> None:
    signature = sign_registration(device, user="u1", nonce="code-1", server=SERVER)
    assert verify_registration(device.public(), signature, user="u1", nonce="code-1", server=SERVER)


def test_registration_payload_binds_both_keys(device: DeviceKeys) -> None:
    payload = registration_payload(device.public(), user="u1", nonce="n", server=SERVER)
    assert b64u_decode(payload["signing_key"]) == device.public().signing_key
    assert b64u_decode(payload["encryption_key"]) == device.public().encryption_key


@pytest.mark.parametrize(
    "changes",
    [{"user": "u2"}, {"nonce": "code-2"}, {"server": "https://evil.example"}],
)
def test_registration_proof_is_bound_to_user_nonce_and_server(
    device: DeviceKeys, changes: dict[str, str]
) -> None:
    signature = sign_registration(device, user="u1", nonce="code-1", server=SERVER)
    fields = {"user": "u1", "nonce": "code-1", "server": SERVER, **changes}
    assert not verify_registration(device.public(), signature, **fields)


def test_registration_proof_binds_the_encryption_key(
    device: DeviceKeys, other_device: DeviceKeys
) -> None:
    signature = sign_registration(device, user="u1", nonce="n", server=SERVER)
    swapped = DevicePublicKeys(
        signing_key=device.public().signing_key,
        encryption_key=other_device.public().encryption_key,
    )
    assert not verify_registration(swapped, signature, user="u1", nonce="n", server=SERVER)


def test_registration_proof_from_another_device_fails(
    device: DeviceKeys, other_device: DeviceKeys
) -> None:
    signature = sign_registration(other_device, user="u1", nonce="n", server=SERVER)
    assert not verify_registration(device.public(), signature, user="u1", nonce="n", server=SERVER)


def test_registration_with_unusable_encryption_key_fails(device: DeviceKeys) -> None:
    bad = DevicePublicKeys(
        signing_key=device.public().signing_key,
        encryption_key=device.public().encryption_key[:1184] + bytes(32),
    )
    payload = registration_payload(bad, user="u1", nonce="n", server=SERVER)
    signature = device.signing_private_key().sign(signing_input(CTX_DEVICE_REGISTRATION, payload))
    assert not verify_registration(bad, signature, user="u1", nonce="n", server=SERVER)


def test_registration_signature_over_another_context_fails(device: DeviceKeys) -> None:
    payload = registration_payload(device.public(), user="u1", nonce="n", server=SERVER)
    signature = device.signing_private_key().sign(signing_input(CTX_LOGIN, payload))
    assert not verify_registration(device.public(), signature, user="u1", nonce="n", server=SERVER)


@pytest.mark.parametrize("signature", [b"", bytes(63), bytes(64), bytes(65)])
def test_registration_garbage_signature_fails(device: DeviceKeys, signature: bytes) -> None:
    assert not verify_registration(device.public(), signature, user="u", nonce="n", server=SERVER)


# ---------------------------------------------------------------------------------------------
# Login


def test_login_challenge_is_32_random_bytes() -> None:
    challenge = new_login_challenge()
    assert len(b64u_decode(challenge)) == 32
    assert new_login_challenge() != challenge


def test_login_roundtrip(device: DeviceKeys) -> None:
    payload = login_payload(device_id="d1", challenge=new_login_challenge(), server_origin=SERVER)
    signature = sign_login(device, payload)
    assert verify_login(device.public().signing_key, payload, signature)


@pytest.mark.parametrize("field", ["device_id", "challenge", "server_origin"])
def test_login_signature_cannot_be_replayed_elsewhere(device: DeviceKeys, field: str) -> None:
    payload = login_payload(device_id="d1", challenge=new_login_challenge(), server_origin=SERVER)
    signature = sign_login(device, payload)
    replacement = {
        "device_id": "d2",
        "challenge": new_login_challenge(),
        "server_origin": "https://evil.example",
    }[field]
    assert not verify_login(device.public().signing_key, {**payload, field: replacement}, signature)


def test_login_signature_of_another_device_fails(
    device: DeviceKeys, other_device: DeviceKeys
) -> None:
    payload = login_payload(device_id="d1", challenge=new_login_challenge(), server_origin=SERVER)
    assert not verify_login(device.public().signing_key, payload, sign_login(other_device, payload))


def test_login_signature_over_another_context_fails(device: DeviceKeys) -> None:
    payload = login_payload(device_id="d1", challenge=new_login_challenge(), server_origin=SERVER)
    signature = device.signing_private_key().sign(signing_input(CTX_DEVICE_REGISTRATION, payload))
    assert not verify_login(device.public().signing_key, payload, signature)


def test_login_with_extra_payload_fields_fails(device: DeviceKeys) -> None:
    payload: dict[str, Any] = login_payload(
        device_id="d1", challenge=new_login_challenge(), server_origin=SERVER
    )
    with pytest.raises(ValueError, match="login payload"):
        sign_login(device, {**payload, "admin": True})
    signature = device.signing_private_key().sign(
        signing_input(CTX_LOGIN, {**payload, "admin": True})
    )
    assert not verify_login(device.public().signing_key, {**payload, "admin": True}, signature)


@pytest.mark.parametrize(
    "challenge", ["", b64u_encode(bytes(16)), b64u_encode(bytes(33)), "not base64!"]
)
def test_login_payload_refuses_bad_challenge(challenge: str) -> None:
    with pytest.raises(ValueError, match=r"challenge|base64url"):
        login_payload(device_id="d1", challenge=challenge, server_origin=SERVER)


@pytest.mark.parametrize(
    ("public_key", "signature"), [(bytes(31), bytes(64)), (bytes(32), bytes(63))]
)
def test_verify_login_with_malformed_inputs_is_false(public_key: bytes, signature: bytes) -> None:
    payload = login_payload(device_id="d1", challenge=new_login_challenge(), server_origin=SERVER)
    assert not verify_login(public_key, payload, signature)
