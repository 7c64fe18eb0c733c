"""The protocol v1 known-answer vector (vectors/message_v1.json), checked two ways.

First independently: every step of docs/PROTOCOL.md is recomputed here with raw ``hashlib``,
``rfc8785`` and pyca/cryptography primitives, without calling protocol/envelopes.py, so that the
document and the code cannot drift apart unnoticed. Then through protocol/envelopes.py, which
must open what the vector holds and reproduce every deterministic value exactly.

HPKE encapsulation is randomised, so the envelopes are checked by opening them with the
recorded seeds; everything else is deterministic (Ed25519 included) and compared byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives import hashes, hpke
from cryptography.hazmat.primitives.asymmetric import ed25519, mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from protocol import canonical, coalition, enrolment, envelopes
from protocol.catalog import load_default_catalog
from protocol.keys import DeviceKeys, parse_utc_time
from protocol.labels import Label, parse_label

ROOT = Path(__file__).resolve().parents[2]
VECTOR: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "message_v1.json").read_text(encoding="utf-8")
)
AUDIENCE = VECTOR["audience"]
MESSAGE = VECTOR["message"]
PROTOCOL_MD = (ROOT / "docs" / "PROTOCOL.md").read_text(encoding="utf-8")

# The context strings exactly as docs/PROTOCOL.md lists them.
CONTEXTS = {
    "CTX_DEVICE_CERTIFICATE": "attache/v1/device-certificate",
    "CTX_DEVICE_REGISTRATION": "attache/v1/device-registration",
    "CTX_LOGIN": "attache/v1/login",
    "CTX_KEY_FINGERPRINT": "attache/v1/key-fingerprint",
    "CTX_AUTHORITY_KEY_ID": "attache/v1/authority-key-id",
    "CTX_SEALED_SECRET": "attache/v1/sealed-secret",
    "CTX_AUDIENCE_DEVICES": "attache/v1/audience-devices",
    "CTX_AUDIENCE_HEADER": "attache/v1/audience-header",
    "CTX_AUDIENCE_SIGNATURE": "attache/v1/audience-signature",
    "CTX_AUDIENCE_ENVELOPE": "attache/v1/audience-envelope",
    "CTX_MESSAGE_HEADER": "attache/v1/message-header",
    "CTX_MESSAGE_KEY": "attache/v1/message-key",
    "CTX_MESSAGE_KEY_COMMITMENT": "attache/v1/message-key-commitment",
    "CTX_MESSAGE_BODY": "attache/v1/message-body",
    "CTX_MESSAGE_BODY_DIGEST": "attache/v1/message-body-digest",
    "CTX_MESSAGE_SIGNATURE": "attache/v1/message-signature",
    "CTX_DOCUMENT_HEADER": "attache/v1/document-header",
    "CTX_DOCUMENT_KEY": "attache/v1/document-key",
    "CTX_DOCUMENT_KEY_COMMITMENT": "attache/v1/document-key-commitment",
    "CTX_DOCUMENT_CHUNK": "attache/v1/document-chunk",
    "CTX_DOCUMENT_CONTENT": "attache/v1/document-content",
    "CTX_DOCUMENT_SIGNATURE": "attache/v1/document-signature",
    "CTX_GRANT_HEADER": "attache/v1/grant-header",
    "CTX_GRANT_SIGNATURE": "attache/v1/grant-signature",
    "CTX_GRANT_ENVELOPE": "attache/v1/grant-envelope",
    "CTX_GRANT_ITEM_KEY_COMMITMENT": "attache/v1/grant-item-key-commitment",
}
SUITE = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)


# --- the primitives of docs/PROTOCOL.md, written out from the document ----------------------


def with_context(context: str, payload: bytes) -> bytes:
    return context.encode("utf-8") + b"\x00" + payload


def sha256_with_context(context: str, payload: bytes) -> bytes:
    return hashlib.sha256(with_context(context, payload)).digest()


def jcs(value: Any) -> bytes:
    return bytes(rfc8785.dumps(value))


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def xwing(seed: bytes) -> tuple[hpke.MLKEM768X25519PrivateKey, bytes]:
    expanded = hashlib.shake_256(seed).digest(96)
    kem = mlkem.MLKEM768PrivateKey.from_seed_bytes(expanded[:64])
    dh = x25519.X25519PrivateKey.from_private_bytes(expanded[64:])
    public = kem.public_key().public_bytes_raw() + dh.public_key().public_bytes_raw()
    return hpke.MLKEM768X25519PrivateKey(kem, dh), public


def device(name: str) -> tuple[ed25519.Ed25519PrivateKey, hpke.MLKEM768X25519PrivateKey, bytes]:
    record = VECTOR[name]
    signing = ed25519.Ed25519PrivateKey.from_private_bytes(bytes.fromhex(record["signing_seed"]))
    private, public = xwing(bytes.fromhex(record["xwing_seed"]))
    return signing, private, public


def h(name: str, section: dict[str, Any]) -> bytes:
    return bytes.fromhex(section[name])


# --- independent recomputation ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["sender", "recipient"])
def test_device_keys_from_seeds(name: str) -> None:
    signing, _, public = device(name)
    assert signing.public_key().public_bytes_raw().hex() == VECTOR[name]["signing_public_key"]
    assert len(public) == 1216
    assert hashlib.sha256(public).hexdigest() == VECTOR[name]["encryption_public_key_sha256"]


def test_device_keys_digest() -> None:
    entries = []
    for name in ("sender", "recipient"):
        signing, _, public = device(name)
        signing_public = signing.public_key().public_bytes_raw()
        entries.append([VECTOR[name]["device_id"], b64u(signing_public), b64u(public)])
    entries.sort(key=lambda entry: entry[0])
    encoded = jcs(entries)
    assert hashlib.sha256(encoded).hexdigest() == AUDIENCE["device_keys_canonical_sha256"]
    value = b64u(sha256_with_context("attache/v1/audience-devices", encoded))
    assert value == AUDIENCE["device_keys_digest"]
    assert AUDIENCE["sealed"]["header"]["device_keys_digest"] == value


def test_audience_header_and_digest() -> None:
    header = AUDIENCE["sealed"]["header"]
    inputs = AUDIENCE["inputs"]
    assert header == {
        "type": "attache.audience",
        "version": 1,
        **inputs,
        "devices": sorted([VECTOR["sender"]["device_id"], VECTOR["recipient"]["device_id"]]),
        "device_keys_digest": AUDIENCE["device_keys_digest"],
    }
    assert jcs(header).decode("utf-8") == AUDIENCE["header_canonical"]
    hd = sha256_with_context("attache/v1/audience-header", jcs(header))
    assert hd == h("header_digest_hex", AUDIENCE)


def test_audience_signature() -> None:
    signing, _, _ = device("sender")
    signed = with_context("attache/v1/audience-signature", h("header_digest_hex", AUDIENCE))
    signature = signing.sign(signed)  # Ed25519 is deterministic
    assert signature == h("signature_hex", AUDIENCE)
    assert unb64u(AUDIENCE["sealed"]["signature"]) == signature


@pytest.mark.parametrize("name", ["recipient", "sender"])
def test_audience_envelope_opens_with_raw_hpke(name: str) -> None:
    _, private, _ = device(name)
    device_id = VECTOR[name]["device_id"]
    info = with_context(
        "attache/v1/audience-envelope",
        jcs(
            {
                "audience_id": AUDIENCE["inputs"]["audience_id"],
                "device_id": device_id,
                "header_digest": b64u(h("header_digest_hex", AUDIENCE)),
            }
        ),
    )
    assert info.hex() == AUDIENCE["envelope_info_hex"][device_id]
    envelope = unb64u(AUDIENCE["sealed"]["envelopes"][device_id])
    assert len(envelope) == 1120 + 32 + 16
    assert SUITE.decrypt(envelope, private, info=info) == h("audience_key_hex", AUDIENCE)


def test_message_header_and_digest() -> None:
    header = MESSAGE["sealed"]["header"]
    assert jcs(header).decode("utf-8") == MESSAGE["header_canonical"]
    hd = sha256_with_context("attache/v1/message-header", jcs(header))
    assert hd == h("header_digest_hex", MESSAGE)
    assert header["audience_id"] == AUDIENCE["inputs"]["audience_id"]
    assert header["sender_device"] == VECTOR["sender"]["device_id"]


def test_message_label_is_the_canonical_label() -> None:
    catalog = load_default_catalog()
    label = parse_label(MESSAGE["label_banner"], catalog, originator="GBR")
    assert MESSAGE["sealed"]["header"]["label"] == label.canonical()
    assert Label.from_canonical(MESSAGE["sealed"]["header"]["label"], catalog) == label


def test_message_key_commitment_body_and_signature() -> None:
    hd = h("header_digest_hex", MESSAGE)
    info = with_context("attache/v1/message-key", hd)
    assert info == h("message_key_info_hex", MESSAGE)
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(
        h("audience_key_hex", AUDIENCE)
    )
    assert key == h("message_key_hex", MESSAGE)
    # No salt is the same as 32 zero bytes (RFC 5869), which WebCrypto needs spelled out.
    assert (
        HKDF(algorithm=hashes.SHA256(), length=32, salt=bytes(32), info=info).derive(
            h("audience_key_hex", AUDIENCE)
        )
        == key
    )

    commitment = sha256_with_context("attache/v1/message-key-commitment", key)
    assert commitment == h("key_commitment_hex", MESSAGE)
    aad = with_context("attache/v1/message-body", hd)
    assert aad == h("associated_data_hex", MESSAGE)
    nonce = h("nonce_hex", MESSAGE)
    plaintext = MESSAGE["plaintext_utf8"].encode("utf-8")
    ciphertext = AESGCM(key).encrypt(nonce, plaintext, aad)
    assert ciphertext == h("ciphertext_hex", MESSAGE)
    body = nonce + commitment + ciphertext
    assert body == h("body_hex", MESSAGE) == unb64u(MESSAGE["sealed"]["body"])

    body_digest = sha256_with_context("attache/v1/message-body-digest", body)
    assert body_digest == h("body_digest_hex", MESSAGE)
    signed = with_context("attache/v1/message-signature", hd + body_digest)
    assert signed == h("signing_input_hex", MESSAGE)
    signing, _, _ = device("sender")
    assert signing.sign(signed) == h("signature_hex", MESSAGE)
    assert unb64u(MESSAGE["sealed"]["signature"]) == h("signature_hex", MESSAGE)


# --- the implementation against the vector ---------------------------------------------------


def _keys(name: str) -> DeviceKeys:
    record = VECTOR[name]
    return DeviceKeys.from_private_bytes(
        bytes.fromhex(record["signing_seed"]) + bytes.fromhex(record["xwing_seed"])
    )


def test_implementation_opens_the_vector() -> None:
    sender, recipient = _keys("sender"), _keys("recipient")
    sender_key = sender.public().signing_key
    audience = envelopes.SealedAudience.from_json(json.dumps(AUDIENCE["sealed"]))
    recipient_id = VECTOR["recipient"]["device_id"]
    audience_key = envelopes.open_audience_envelope(
        recipient,
        recipient_id,
        audience.header,
        audience.signature,
        audience.envelopes[recipient_id],
        sender_key,
    )
    assert audience_key == h("audience_key_hex", AUDIENCE)
    message = envelopes.SealedMessage.from_json(json.dumps(MESSAGE["sealed"]))
    plaintext = envelopes.decrypt_message(message, audience_key, sender_key)
    assert plaintext.decode("utf-8") == MESSAGE["plaintext_utf8"]
    item_key = envelopes.message_key(audience_key, message.header)
    assert item_key == h("message_key_hex", MESSAGE)
    assert envelopes.decrypt_with_item_key(message, item_key, sender_key) == plaintext


def test_implementation_reproduces_every_deterministic_value() -> None:
    sender, recipient = _keys("sender"), _keys("recipient")
    recipients = [
        envelopes.Recipient(VECTOR["sender"]["device_id"], sender.public()),
        envelopes.Recipient(VECTOR["recipient"]["device_id"], recipient.public()),
    ]
    assert envelopes.device_keys_digest(recipients) == AUDIENCE["device_keys_digest"]
    header = AUDIENCE["sealed"]["header"]
    assert envelopes.audience_header_digest(header) == h("header_digest_hex", AUDIENCE)
    message_header = MESSAGE["sealed"]["header"]
    assert envelopes.message_header_digest(message_header) == h("header_digest_hex", MESSAGE)
    # The private seam exists only for this: the same nonce gives the same body and signature.
    sealed = envelopes._seal_message(
        sender,
        h("audience_key_hex", AUDIENCE),
        dict(message_header),
        MESSAGE["plaintext_utf8"].encode("utf-8"),
        h("nonce_hex", MESSAGE),
    )
    assert sealed.to_json() == MESSAGE["sealed"]
    # And the audience signature: only the envelopes differ between runs.
    audience, _ = envelopes._seal_audience(
        sender,
        **AUDIENCE["inputs"] | {"created_at": parse_utc_time(header["created_at"])},
        recipients=recipients,
        audience_key=h("audience_key_hex", AUDIENCE),
    )
    assert audience.header == header
    assert audience.signature == h("signature_hex", AUDIENCE)


# --- docs/PROTOCOL.md stays honest ------------------------------------------------------------


def test_context_strings_are_the_documented_ones() -> None:
    # Every context is canonical.py's: no module defines one of its own.
    defined = {name: value for name, value in vars(canonical).items() if name.startswith("CTX_")}
    for module in (enrolment, coalition):
        for name, value in vars(module).items():
            if name.startswith("CTX_"):
                assert value is getattr(canonical, name), name
    assert defined == CONTEXTS | {
        "CTX_ENROLMENT_CODE": "attache/v1/enrolment-code",
        "CTX_COALITION_POLICY": "attache/v1/coalition-policy",
        "CTX_COALITION_POLICY_SIGNATURE": "attache/v1/coalition-policy-signature",
    }
    assert len(set(defined.values())) == len(defined)
    documented = set(re.findall(r"`(attache/v1/[a-z-]+)`", PROTOCOL_MD))
    assert documented == set(defined.values())


@pytest.mark.parametrize(
    ("section", "name"),
    [
        ("audience", "header_digest_hex"),
        ("audience", "signature_hex"),
        ("audience", "device_keys_digest"),
        ("message", "header_digest_hex"),
        ("message", "message_key_hex"),
        ("message", "key_commitment_hex"),
        ("message", "ciphertext_hex"),
        ("message", "body_digest_hex"),
        ("message", "signature_hex"),
    ],
)
def test_worked_example_in_the_document_matches_the_vector(section: str, name: str) -> None:
    assert VECTOR[section][name] in PROTOCOL_MD.replace("\n", "").replace(" ", "")
