"""Device certificates: issue, wire form, and every way a certificate must fail to verify."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from protocol.canonical import CTX_DEVICE_CERTIFICATE, CTX_LOGIN, signing_input
from protocol.keys import (
    CERTIFICATE_FIELDS,
    AuthorityKey,
    CertificateBody,
    CertificateError,
    DeviceCertificate,
    DeviceKeys,
    DevicePublicKeys,
    b64u_encode,
    issue_certificate,
    parse_utc_time,
    verify_certificate,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "keys.json").read_text(encoding="utf-8")
)
GBR_SEED = bytes(range(100, 132))
FRA_SEED = bytes(range(200, 232))
ISSUED = datetime(2026, 1, 1, tzinfo=UTC)
EXPIRES = datetime(2027, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CLEARANCE = {"policy": "NATO", "level": "SECRET", "categories": {"caveats": ["ATOMAL"]}}


@pytest.fixture(scope="module")
def gbr() -> AuthorityKey:
    return AuthorityKey.from_private_bytes(GBR_SEED)


@pytest.fixture(scope="module")
def fra() -> AuthorityKey:
    return AuthorityKey.from_private_bytes(FRA_SEED)


@pytest.fixture(scope="module")
def pinned(gbr: AuthorityKey, fra: AuthorityKey) -> dict[str, bytes]:
    return {"GBR": gbr.public_bytes(), "FRA": fra.public_bytes()}


@pytest.fixture(scope="module")
def device() -> DeviceKeys:
    return DeviceKeys.generate()


@pytest.fixture(scope="module")
def other_device() -> DeviceKeys:
    return DeviceKeys.generate()


@pytest.fixture(scope="module")
def certificate(gbr: AuthorityKey, device: DeviceKeys) -> DeviceCertificate:
    return issue(gbr, device)


def issue(authority: AuthorityKey, device: DeviceKeys, **changes: Any) -> DeviceCertificate:
    arguments: dict[str, Any] = {
        "device_id": "6f1c2b9e-3d4a-4e5f-8a7b-0c1d2e3f4a5b",
        "user_id": "0b7e1a2c-9d8f-4e6a-b5c4-d3e2f1a0b9c8",
        "username": "j.smith",
        "nationality": "GBR",
        "clearance": CLEARANCE,
        "device_keys": device.public(),
        "issued_at": ISSUED,
        "expires_at": EXPIRES,
        **changes,
    }
    return issue_certificate(authority, **arguments)


def signed_by(seed: bytes, body: dict[str, Any], context: str = CTX_DEVICE_CERTIFICATE) -> bytes:
    """Sign any body directly, so structural checks are tested behind a valid signature."""
    return ed25519.Ed25519PrivateKey.from_private_bytes(seed).sign(signing_input(context, body))


def with_body(certificate: DeviceCertificate, **changes: Any) -> dict[str, Any]:
    return {**certificate.to_json()["body"], **changes}


# ---------------------------------------------------------------------------------------------
# The good path


def test_issue_and_verify(
    certificate: DeviceCertificate, device: DeviceKeys, gbr: AuthorityKey, pinned: dict[str, bytes]
) -> None:
    body = verify_certificate(certificate, pinned, now=NOW)
    assert isinstance(body, CertificateBody)
    assert body.version == 1
    assert body.device_id == "6f1c2b9e-3d4a-4e5f-8a7b-0c1d2e3f4a5b"
    assert body.user_id == "0b7e1a2c-9d8f-4e6a-b5c4-d3e2f1a0b9c8"
    assert body.username == "j.smith"
    assert body.nation == body.nationality == "GBR"
    assert body.clearance == CLEARANCE
    assert body.device_keys == device.public()
    assert body.issued_at == ISSUED
    assert body.expires_at == EXPIRES
    assert body.authority_key_id == gbr.key_id
    assert body.to_json() == certificate.body


def test_body_fields_and_wire_form(certificate: DeviceCertificate) -> None:
    wire = certificate.to_json()
    assert set(wire) == {"body", "signature"}
    assert set(wire["body"]) == CERTIFICATE_FIELDS
    assert wire["body"]["issued_at"] == "2026-01-01T00:00:00Z"
    assert wire["body"]["expires_at"] == "2027-01-01T00:00:00Z"
    assert len(wire["signature"]) == 86  # 64 bytes, b64u without padding


def test_wire_roundtrip_through_json_text(
    certificate: DeviceCertificate, pinned: dict[str, bytes]
) -> None:
    text = json.dumps(certificate.to_json())
    for form in (text, text.encode(), json.loads(text)):
        parsed = DeviceCertificate.from_json(form)
        assert parsed == certificate
        verify_certificate(parsed, pinned, now=NOW)


def test_verify_with_a_single_key(certificate: DeviceCertificate, gbr: AuthorityKey) -> None:
    assert verify_certificate(certificate, gbr.public_bytes(), now=NOW).nation == "GBR"


def test_serials_are_random(gbr: AuthorityKey, device: DeviceKeys) -> None:
    assert issue(gbr, device).body["serial"] != issue(gbr, device).body["serial"]


def test_issue_truncates_to_seconds_and_converts_to_utc(
    gbr: AuthorityKey, device: DeviceKeys
) -> None:
    paris_winter = timezone(timedelta(hours=1))
    issued = datetime(2026, 1, 1, 2, 0, 0, 999_999, tzinfo=paris_winter)
    certificate = issue(gbr, device, issued_at=issued)
    assert certificate.body["issued_at"] == "2026-01-01T01:00:00Z"


def test_known_answer_certificate() -> None:
    authority = AuthorityKey.from_private_bytes(bytes.fromhex(VECTORS["authority_seed"]))
    device = DeviceKeys.from_private_bytes(
        bytes.fromhex(VECTORS["device_signing_seed"]) + bytes.fromhex(VECTORS["device_xwing_seed"])
    )
    inputs = VECTORS["certificate_inputs"]
    certificate = issue_certificate(
        authority,
        device_id=inputs["device_id"],
        user_id=inputs["user_id"],
        username=inputs["username"],
        nationality=inputs["nationality"],
        clearance=inputs["clearance"],
        device_keys=device.public(),
        issued_at=parse_utc_time(inputs["issued_at"]),
        expires_at=parse_utc_time(inputs["expires_at"]),
        serial=inputs["serial"],
    )
    assert (
        hashlib.sha256(signing_input(CTX_DEVICE_CERTIFICATE, certificate.body)).hexdigest()
        == VECTORS["certificate_signing_input_sha256"]
    )
    assert certificate.signature.hex() == VECTORS["certificate_signature"]
    verify_certificate(
        certificate,
        {"GBR": authority.public_bytes()},
        now=parse_utc_time(inputs["issued_at"]),
    )


# ---------------------------------------------------------------------------------------------
# Forgery and tampering


def test_certificate_signed_by_another_authority_is_refused(
    fra: AuthorityKey, device: DeviceKeys, gbr: AuthorityKey, pinned: dict[str, bytes]
) -> None:
    # FRA's key signs a GBR certificate naming GBR's key id: only the signature can tell.
    body = with_body(issue(gbr, device), serial=b64u_encode(bytes(16)))
    forged = DeviceCertificate(body=body, signature=signed_by(FRA_SEED, body))
    with pytest.raises(CertificateError, match="signature is not valid"):
        verify_certificate(forged, pinned, now=NOW)


def test_certificate_from_unpinned_authority_is_refused(
    device: DeviceKeys, pinned: dict[str, bytes]
) -> None:
    rogue = AuthorityKey.generate()
    with pytest.raises(CertificateError, match="names authority key"):
        verify_certificate(issue(rogue, device), pinned, now=NOW)


def test_nation_cannot_vouch_for_another_nations_people(
    fra: AuthorityKey, device: DeviceKeys, certificate: DeviceCertificate, pinned: dict[str, bytes]
) -> None:
    body = with_body(certificate, nationality="FRA", authority_key_id=fra.key_id)
    forged = DeviceCertificate(body=body, signature=signed_by(FRA_SEED, body))
    with pytest.raises(CertificateError, match="only for its own people"):
        verify_certificate(forged, pinned, now=NOW)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("clearance", {"policy": "NATO", "level": "TOP SECRET", "categories": {}}),
        ("clearance", {**CLEARANCE, "categories": {"caveats": ["ATOMAL", "CRYPTO"]}}),
        ("username", "j.smyth"),
        ("user_id", "someone-else"),
        ("device_id", "another-device"),
        ("serial", b64u_encode(bytes(16))),
        ("issued_at", "2025-01-01T00:00:00Z"),
        ("expires_at", "2036-01-01T00:00:00Z"),
    ],
)
def test_tampered_field_breaks_the_signature(
    certificate: DeviceCertificate, pinned: dict[str, bytes], field: str, value: Any
) -> None:
    tampered = DeviceCertificate(
        body=with_body(certificate, **{field: value}), signature=certificate.signature
    )
    with pytest.raises(CertificateError, match="signature is not valid"):
        verify_certificate(tampered, pinned, now=NOW)


def test_tampered_nation_and_nationality_are_refused(
    certificate: DeviceCertificate, fra: AuthorityKey, pinned: dict[str, bytes]
) -> None:
    moved = DeviceCertificate(
        body=with_body(certificate, nation="FRA", nationality="FRA"),
        signature=certificate.signature,
    )
    with pytest.raises(CertificateError, match="names authority key"):
        verify_certificate(moved, pinned, now=NOW)
    moved_with_id = DeviceCertificate(
        body=with_body(certificate, nation="FRA", nationality="FRA", authority_key_id=fra.key_id),
        signature=certificate.signature,
    )
    with pytest.raises(CertificateError, match="signature is not valid"):
        verify_certificate(moved_with_id, pinned, now=NOW)


@pytest.mark.parametrize("field", ["signing_key", "encryption_key"])
def test_swapped_device_key_breaks_the_signature(
    certificate: DeviceCertificate,
    other_device: DeviceKeys,
    pinned: dict[str, bytes],
    field: str,
) -> None:
    swapped = DeviceCertificate(
        body=with_body(certificate, **{field: other_device.public().to_json()[field]}),
        signature=certificate.signature,
    )
    with pytest.raises(CertificateError, match="signature is not valid"):
        verify_certificate(swapped, pinned, now=NOW)


def test_signature_over_another_context_is_refused(
    certificate: DeviceCertificate, pinned: dict[str, bytes]
) -> None:
    body = dict(certificate.body)
    other = DeviceCertificate(body=body, signature=signed_by(GBR_SEED, body, CTX_LOGIN))
    with pytest.raises(CertificateError, match="signature is not valid"):
        verify_certificate(other, pinned, now=NOW)


def test_flipped_signature_bit_is_refused(
    certificate: DeviceCertificate, pinned: dict[str, bytes]
) -> None:
    signature = bytearray(certificate.signature)
    signature[10] ^= 0x01
    with pytest.raises(CertificateError, match="signature is not valid"):
        verify_certificate(
            DeviceCertificate(body=certificate.body, signature=bytes(signature)), pinned, now=NOW
        )


def test_body_mutation_after_parsing_does_not_leak(
    certificate: DeviceCertificate, pinned: dict[str, bytes]
) -> None:
    wire = certificate.to_json()
    parsed = DeviceCertificate.from_json(wire)
    wire["body"]["clearance"]["level"] = "TOP SECRET"
    assert verify_certificate(parsed, pinned, now=NOW).clearance == CLEARANCE


# ---------------------------------------------------------------------------------------------
# Validity period


def test_expired(certificate: DeviceCertificate, pinned: dict[str, bytes]) -> None:
    with pytest.raises(CertificateError, match="expired at 2027-01-01T00:00:00Z"):
        verify_certificate(certificate, pinned, now=EXPIRES)
    with pytest.raises(CertificateError, match="expired"):
        verify_certificate(certificate, pinned, now=EXPIRES + timedelta(days=400))


def test_not_yet_valid(certificate: DeviceCertificate, pinned: dict[str, bytes]) -> None:
    with pytest.raises(CertificateError, match="not valid before 2026-01-01T00:00:00Z"):
        verify_certificate(certificate, pinned, now=ISSUED - timedelta(seconds=1))


def test_validity_bounds(certificate: DeviceCertificate, pinned: dict[str, bytes]) -> None:
    verify_certificate(certificate, pinned, now=ISSUED)
    verify_certificate(certificate, pinned, now=EXPIRES - timedelta(seconds=1))


def test_leeway_widens_both_ends(certificate: DeviceCertificate, pinned: dict[str, bytes]) -> None:
    leeway = timedelta(minutes=5)
    verify_certificate(certificate, pinned, now=ISSUED - leeway, leeway=leeway)
    verify_certificate(certificate, pinned, now=EXPIRES + leeway / 2, leeway=leeway)
    with pytest.raises(CertificateError, match="expired"):
        verify_certificate(certificate, pinned, now=EXPIRES + leeway, leeway=leeway)


def test_naive_now_is_a_programming_error(
    certificate: DeviceCertificate, pinned: dict[str, bytes]
) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_certificate(certificate, pinned, now=NOW.replace(tzinfo=None))


def test_expiry_must_follow_issue(gbr: AuthorityKey, device: DeviceKeys) -> None:
    with pytest.raises(CertificateError, match="later than issued_at"):
        issue(gbr, device, expires_at=ISSUED)


# ---------------------------------------------------------------------------------------------
# Keys and nations


def test_unknown_nation(certificate: DeviceCertificate, fra: AuthorityKey) -> None:
    with pytest.raises(
        CertificateError, match="no enrolment authority key is pinned for nation GBR"
    ):
        verify_certificate(certificate, {"FRA": fra.public_bytes()}, now=NOW)


def test_key_id_mismatch(certificate: DeviceCertificate, pinned: dict[str, bytes]) -> None:
    body = with_body(certificate, authority_key_id=b64u_encode(bytes(16)))
    relabelled = DeviceCertificate(body=body, signature=signed_by(GBR_SEED, body))
    with pytest.raises(CertificateError, match="names authority key AAAAAAAAAAAAAAAAAAAAAA"):
        verify_certificate(relabelled, pinned, now=NOW)


def test_single_key_of_another_nation_is_refused(
    certificate: DeviceCertificate, fra: AuthorityKey
) -> None:
    with pytest.raises(CertificateError, match="names authority key"):
        verify_certificate(certificate, fra.public_bytes(), now=NOW)


def test_malformed_pinned_key(certificate: DeviceCertificate) -> None:
    with pytest.raises(CertificateError, match="pinned authority key for GBR is malformed"):
        verify_certificate(certificate, {"GBR": bytes(31)}, now=NOW)


# ---------------------------------------------------------------------------------------------
# Structure (each body is validly signed, so only the structural check can refuse it)


def refused(certificate: DeviceCertificate, pinned: dict[str, bytes], body: dict[str, Any]) -> str:
    signed = DeviceCertificate(body=body, signature=signed_by(GBR_SEED, body))
    with pytest.raises(CertificateError) as excinfo:
        verify_certificate(signed, pinned, now=NOW)
    return str(excinfo.value)


@pytest.mark.parametrize("version", [2, 0, True, 1.0, "1", None])
def test_unsupported_version(
    certificate: DeviceCertificate, pinned: dict[str, bytes], version: Any
) -> None:
    message = refused(certificate, pinned, with_body(certificate, version=version))
    assert "unsupported certificate version" in message


def test_unknown_field(certificate: DeviceCertificate, pinned: dict[str, bytes]) -> None:
    message = refused(certificate, pinned, with_body(certificate, role="admin"))
    assert message == "certificate body has unknown fields role"


@pytest.mark.parametrize("field", sorted(CERTIFICATE_FIELDS - {"version"}))
def test_missing_field(
    certificate: DeviceCertificate, pinned: dict[str, bytes], field: str
) -> None:
    body = with_body(certificate)
    del body[field]
    assert refused(certificate, pinned, body) == f"certificate body lacks {field}"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("serial", "AAAA", "serial is malformed"),
        ("serial", b64u_encode(bytes(16)) + "=", "serial is malformed"),
        ("signing_key", "not base64!", "signing_key is malformed"),
        ("signing_key", b64u_encode(bytes(31)), "signing_key is malformed"),
        ("encryption_key", b64u_encode(bytes(1216))[:-1] + "B", "encryption_key is malformed"),
        ("encryption_key", b64u_encode(bytes(1184)), "encryption_key is malformed"),
        ("authority_key_id", "AA+A", "authority_key_id is malformed"),
        ("authority_key_id", 7, "authority_key_id is malformed"),
        ("issued_at", "2026-01-01T00:00:00+00:00", "issued_at is malformed"),
        ("expires_at", "2027-01-01", "expires_at is malformed"),
        ("expires_at", 1798761600, "expires_at is malformed"),
        ("nation", "gbr", "nation must be an ISO 3166-1 alpha-3 code"),
        ("nationality", "GB", "nationality must be an ISO 3166-1 alpha-3 code"),
        ("username", "", "username must be text"),
        ("username", "x" * 257, "username must be text"),
        ("username", "j.smith\u202eevil", "username contains control or format characters"),
        ("username", "j.smith\n", "username contains control or format characters"),
        ("user_id", 42, "user_id must be text"),
        ("device_id", None, "device_id must be text"),
        ("clearance", ["NATO", "SECRET"], "clearance must be a JSON object"),
        ("clearance", "NATO SECRET", "clearance must be a JSON object"),
    ],
)
def test_malformed_field(
    certificate: DeviceCertificate,
    pinned: dict[str, bytes],
    field: str,
    value: Any,
    message: str,
) -> None:
    assert message in refused(certificate, pinned, with_body(certificate, **{field: value}))


def test_clearance_that_cannot_be_canonical_is_refused(
    certificate: DeviceCertificate, pinned: dict[str, bytes]
) -> None:
    # Nothing can sign such a body, so the structural check must refuse it before the signature.
    body = with_body(certificate, clearance={"level": float("nan")})
    with pytest.raises(CertificateError, match="clearance is not canonical JSON"):
        verify_certificate(DeviceCertificate(body=body, signature=bytes(64)), pinned, now=NOW)


def test_low_order_encryption_key_is_refused(
    certificate: DeviceCertificate, device: DeviceKeys, pinned: dict[str, bytes]
) -> None:
    key = device.public().encryption_key[:1184] + bytes(32)
    body = with_body(certificate, encryption_key=b64u_encode(key))
    assert "encryption_key is unusable" in refused(certificate, pinned, body)


def test_issue_refuses_what_verify_would_refuse(gbr: AuthorityKey, device: DeviceKeys) -> None:
    with pytest.raises(CertificateError, match="alpha-3"):
        issue(gbr, device, nationality="UK")
    with pytest.raises(CertificateError, match="control or format"):
        issue(gbr, device, username="a\x00b")
    with pytest.raises(CertificateError, match="clearance"):
        issue(gbr, device, clearance={"level": b"SECRET"})
    with pytest.raises(CertificateError, match="serial"):
        issue(gbr, device, serial="short")
    bad_keys = DevicePublicKeys(
        signing_key=device.public().signing_key,
        encryption_key=device.public().encryption_key[:1184] + bytes(32),
    )
    with pytest.raises(CertificateError, match="unusable"):
        issue(gbr, device, device_keys=bad_keys)
    with pytest.raises(ValueError, match="timezone-aware"):
        issue(gbr, device, issued_at=ISSUED.replace(tzinfo=None))


# ---------------------------------------------------------------------------------------------
# Wire envelope


@pytest.mark.parametrize(
    "wire",
    [
        "[]",
        "not json",
        '{"body": {}, "signature": "x", "body": {}}',
        '{"body": {}}',
        '{"body": {}, "signature": "AAAA", "extra": 1}',
        '{"body": [], "signature": "AAAA"}',
    ],
)
def test_malformed_envelope(wire: str) -> None:
    with pytest.raises(CertificateError):
        DeviceCertificate.from_json(wire)


@pytest.mark.parametrize(
    "signature", ["", "AAAA", b64u_encode(bytes(63)), b64u_encode(bytes(64)) + "==", 64]
)
def test_malformed_signature_encoding(certificate: DeviceCertificate, signature: Any) -> None:
    with pytest.raises(CertificateError, match="signature is malformed"):
        DeviceCertificate.from_json({"body": dict(certificate.body), "signature": signature})


def test_envelope_refuses_nan_and_duplicate_body_keys(certificate: DeviceCertificate) -> None:
    text = json.dumps(certificate.to_json())
    duplicated = text.replace('"version": 1', '"version": 1, "version": 1')
    with pytest.raises(CertificateError, match="duplicate"):
        DeviceCertificate.from_json(duplicated)
    with pytest.raises(CertificateError, match="NaN"):
        DeviceCertificate.from_json(text.replace('"version": 1', '"version": NaN'))
