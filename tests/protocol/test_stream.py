"""Documents (protocol/stream.py): round trips, streaming in pieces of any size, every attack on
the chunk stream, header checks, bounded memory, and the known-answer vector
(vectors/document_v1.json), recomputed with raw primitives following docs/PROTOCOL.md.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import re
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import canonical
from protocol.catalog import load_default_catalog
from protocol.keys import DeviceKeys, b64u_encode, parse_utc_time
from protocol.labels import Label, parse_label
from protocol.stream import (
    CHUNK_SIZE,
    DOCUMENT_FIELDS,
    ENCRYPTED_CHUNK_SIZE,
    MAX_DOCUMENT_SIZE,
    BytesLike,
    ContentHasher,
    DocumentDecryptor,
    DocumentEncryptor,
    DocumentError,
    SealedDocumentTrailer,
    _signing_input,
    check_document_header,
    chunk_count,
    chunk_nonce,
    ciphertext_size,
    document_header_digest,
    document_key,
    verify_document,
)

ROOT = Path(__file__).resolve().parents[2]
VECTOR: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "document_v1.json").read_text(encoding="utf-8")
)
PROTOCOL_MD = (ROOT / "docs" / "PROTOCOL.md").read_text(encoding="utf-8")

CATALOG = load_default_catalog()
LABEL = parse_label("NATO SECRET//REL TO USA, GBR", CATALOG, originator="GBR")
SENDER = DeviceKeys.from_private_bytes(bytes(range(0x80, 0xC0)))
OTHER = DeviceKeys.from_private_bytes(bytes(range(0x10, 0x50)))
SENDER_KEY = SENDER.public().signing_key
AUDIENCE_KEY = bytes(range(0x60, 0x80))
DOCUMENT_ID = "3f5e7a9c-1b2d-4e6f-8a0b-c2d4e6f8a0b1"
CREATED = datetime(2026, 3, 4, 5, 8, 9, tzinfo=UTC)

DOCUMENT_CONTEXTS = {
    "CTX_DOCUMENT_HEADER": "attache/v1/document-header",
    "CTX_DOCUMENT_KEY": "attache/v1/document-key",
    "CTX_DOCUMENT_KEY_COMMITMENT": "attache/v1/document-key-commitment",
    "CTX_DOCUMENT_CHUNK": "attache/v1/document-chunk",
    "CTX_DOCUMENT_CONTENT": "attache/v1/document-content",
    "CTX_DOCUMENT_SIGNATURE": "attache/v1/document-signature",
}


def pattern(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def encryptor(
    size: int = 0,
    *,
    keys: DeviceKeys = SENDER,
    audience_key: bytes = AUDIENCE_KEY,
    **fields: Any,
) -> DocumentEncryptor:
    values: dict[str, Any] = {
        "document_id": DOCUMENT_ID,
        "version_id": str(uuid.uuid4()),
        "version_number": 1,
        "container": "committee-7",
        "sender_user": "user-1",
        "sender_device": "device-1",
        "audience_id": "0e6a4f2c-8b1d-4e3a-b7c9-5d2f1a0e9c51",
        "created_at": CREATED,
        "label": LABEL,
        "filename": "minutes.pdf",
        "content_type": "application/pdf",
        "size": size,
    }
    return DocumentEncryptor(keys, audience_key, **(values | fields))


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def seal(
    plaintext: bytes, **fields: Any
) -> tuple[dict[str, Any], list[bytes], SealedDocumentTrailer]:
    """Header, ciphertext chunks and trailer of ``plaintext``."""
    enc = encryptor(len(plaintext), **fields)
    chunks = list(enc.encrypt_chunks([plaintext]))
    return enc.header, chunks, enc.finish()


def decrypt(
    header: dict[str, Any],
    trailer: SealedDocumentTrailer,
    ciphertext: Iterable[BytesLike],
    *,
    audience_key: bytes = AUDIENCE_KEY,
    signing_key: bytes = SENDER_KEY,
) -> bytes:
    dec = DocumentDecryptor.with_audience_key(header, trailer, audience_key, signing_key)
    plaintext = b"".join(dec.decrypt_chunks(ciphertext))
    dec.finish()
    return plaintext


def resign(header: dict[str, Any], commitment: bytes, content_hash: bytes) -> SealedDocumentTrailer:
    """A trailer the sender device (or whoever holds its key) signs over arbitrary values."""
    hd = document_header_digest(header)
    signature = SENDER.signing_private_key().sign(_signing_input(hd, commitment, content_hash))
    return SealedDocumentTrailer(commitment, content_hash, signature)


# --- sizes --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "chunks"),
    [
        (0, 1),
        (1, 1),
        (CHUNK_SIZE - 1, 1),
        (CHUNK_SIZE, 1),
        (CHUNK_SIZE + 1, 2),
        (3 * CHUNK_SIZE, 3),
        (MAX_DOCUMENT_SIZE, 2**20),
    ],
)
def test_chunk_count_and_ciphertext_size(size: int, chunks: int) -> None:
    assert chunk_count(size) == chunks
    assert ciphertext_size(size) == size + 16 * chunks
    assert ENCRYPTED_CHUNK_SIZE == CHUNK_SIZE + 16 == 65552


@pytest.mark.parametrize("size", [-1, MAX_DOCUMENT_SIZE + 1, True])
def test_sizes_out_of_range_are_refused(size: int) -> None:
    with pytest.raises(DocumentError):
        chunk_count(size)


def test_chunk_nonce_layout() -> None:
    assert chunk_nonce(0, False) == bytes(12)
    assert chunk_nonce(0, True) == bytes(11) + b"\x01"
    assert chunk_nonce(0x0102, False) == bytes(9) + b"\x01\x02\x00"


# --- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size",
    [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE]
    + [random.Random(7).randrange(1, 5 * CHUNK_SIZE) for _ in range(3)],
)
def test_round_trip(size: int) -> None:
    plaintext = pattern(size, seed=size)
    header, chunks, trailer = seal(plaintext)
    assert len(chunks) == chunk_count(size)
    assert all(len(chunk) == ENCRYPTED_CHUNK_SIZE for chunk in chunks[:-1])
    assert len(b"".join(chunks)) == ciphertext_size(size)
    assert decrypt(header, trailer, chunks) == plaintext
    # With the item key (as from a grant) and through the wire form of the trailer.
    wire = SealedDocumentTrailer.from_json(json.dumps(trailer.to_json()))
    item_key = document_key(AUDIENCE_KEY, header)
    dec = DocumentDecryptor(header, wire, item_key, SENDER_KEY)
    assert b"".join(dec.decrypt_chunks(chunks)) == plaintext
    checked = dec.finish()
    assert checked.size == size
    assert Label.from_canonical(checked.label, CATALOG) == LABEL
    assert checked.to_json() == header


def test_plaintext_chunks_are_yielded_at_chunk_boundaries() -> None:
    plaintext = pattern(2 * CHUNK_SIZE + 5)
    header, chunks, trailer = seal(plaintext)
    dec = DocumentDecryptor.with_audience_key(header, trailer, AUDIENCE_KEY, SENDER_KEY)
    assert [len(p) for p in dec.decrypt_chunks(pieces(b"".join(chunks), 1000))] == [
        CHUNK_SIZE,
        CHUNK_SIZE,
        5,
    ]


@settings(max_examples=30, deadline=None)
@given(
    size=st.integers(min_value=0, max_value=3 * CHUNK_SIZE + 17),
    in_sizes=st.lists(st.integers(min_value=1, max_value=2 * CHUNK_SIZE), min_size=1),
    out_sizes=st.lists(st.integers(min_value=1, max_value=2 * CHUNK_SIZE + 40), min_size=1),
)
def test_any_piece_sizes(size: int, in_sizes: list[int], out_sizes: list[int]) -> None:
    plaintext = pattern(size, seed=size)

    def split(data: bytes, sizes: list[int]) -> Iterator[bytes]:
        position, turn = 0, 0
        while position < len(data):
            step = sizes[turn % len(sizes)]
            yield data[position : position + step]
            position, turn = position + step, turn + 1

    enc = encryptor(size)
    ciphertext = b"".join(enc.encrypt_chunks(split(plaintext, in_sizes)))
    trailer = enc.finish()
    _, reference, reference_trailer = seal(plaintext, version_id=enc.header["version_id"])
    assert ciphertext == b"".join(reference)
    assert trailer == reference_trailer
    assert decrypt(enc.header, trailer, split(ciphertext, out_sizes)) == plaintext


def test_accepts_bytearray_memoryview_and_empty_pieces() -> None:
    plaintext = pattern(CHUNK_SIZE + 3)
    enc = encryptor(len(plaintext))
    ciphertext = b"".join(
        enc.encrypt_chunks([b"", bytearray(plaintext[:10]), memoryview(plaintext)[10:], b""])
    )
    trailer = enc.finish()
    assert decrypt(enc.header, trailer, [b"", memoryview(ciphertext), b""]) == plaintext


async def _aiter(items: Iterable[bytes]) -> AsyncIterator[bytes]:
    for item in items:
        yield item


async def test_async_round_trip() -> None:
    plaintext = pattern(2 * CHUNK_SIZE + 100)
    enc = encryptor(len(plaintext))
    ciphertext = [chunk async for chunk in enc.aencrypt_chunks(_aiter(pieces(plaintext, 5000)))]
    trailer = enc.finish()
    assert ciphertext == seal(plaintext, version_id=enc.header["version_id"])[1]
    dec = DocumentDecryptor.with_audience_key(enc.header, trailer, AUDIENCE_KEY, SENDER_KEY)
    joined = b"".join(ciphertext)
    out = [chunk async for chunk in dec.adecrypt_chunks(_aiter(pieces(joined, 777)))]
    dec.finish()
    assert b"".join(out) == plaintext


async def test_async_truncation_is_detected() -> None:
    header, chunks, trailer = seal(pattern(2 * CHUNK_SIZE + 1))
    dec = DocumentDecryptor.with_audience_key(header, trailer, AUDIENCE_KEY, SENDER_KEY)
    with pytest.raises(DocumentError, match="ended after"):
        async for _ in dec.adecrypt_chunks(_aiter(chunks[:-1])):
            pass
    with pytest.raises(DocumentError):
        dec.finish()


# --- encryption misuse ------------------------------------------------------------------------


@pytest.mark.parametrize("given_size", [0, 99, 101, 2 * CHUNK_SIZE])
def test_plaintext_must_match_the_header_size(given_size: int) -> None:
    enc = encryptor(100)
    with pytest.raises(DocumentError, match="plaintext"):
        list(enc.encrypt_chunks([pattern(given_size)]))
    with pytest.raises(DocumentError):
        enc.finish()


def test_extra_plaintext_is_refused_and_nothing_is_signed() -> None:
    enc = encryptor(CHUNK_SIZE)
    out: list[bytes] = []
    with pytest.raises(DocumentError, match="longer"):
        out.extend(enc.encrypt_chunks([pattern(CHUNK_SIZE), b"x"]))
    assert len(out) == 1  # the extra byte itself is never sealed
    with pytest.raises(DocumentError):
        enc.finish()


def test_encryptor_is_single_use_and_finishes_only_at_the_end() -> None:
    enc = encryptor(3 * CHUNK_SIZE)
    stream = enc.encrypt_chunks(pieces(pattern(3 * CHUNK_SIZE), CHUNK_SIZE))
    next(stream)
    with pytest.raises(DocumentError, match="not completely"):
        enc.finish()
    list(stream)
    enc.finish()
    with pytest.raises(DocumentError, match="once"):
        list(enc.encrypt_chunks([b""]))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("version_id", "7C9E1A3B-5D7F-4B2D-9E4F-6A8C0E2B4D61"),
        ("version_number", 0),
        ("filename", "../etc/passwd"),
        ("content_type", "text/plain\n"),
        ("size", -1),
    ],
)
def test_encryptor_checks_fields(field: str, value: Any) -> None:
    with pytest.raises(DocumentError, match=field):
        encryptor(**{"size": 0} | {field: value})


def test_encryptor_refuses_naive_time_and_short_key() -> None:
    with pytest.raises(DocumentError, match="created_at"):
        encryptor(0, created_at=datetime(2026, 3, 4))
    with pytest.raises(DocumentError, match="audience key"):
        encryptor(0, audience_key=bytes(31))


# --- attacks on the chunk stream ------------------------------------------------------------------

PLAINTEXT = pattern(3 * CHUNK_SIZE + 1000, seed=99)
HEADER, CHUNKS, TRAILER = seal(PLAINTEXT)
C0, C1, C2, C3 = CHUNKS
CIPHERTEXT = b"".join(CHUNKS)


def flip(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]


def test_the_fixture_decrypts() -> None:
    assert len(CHUNKS) == 4
    assert decrypt(HEADER, TRAILER, CHUNKS) == PLAINTEXT


@pytest.mark.parametrize(
    "stream",
    [
        pytest.param([], id="nothing"),
        pytest.param([C0, C1, C2], id="final-chunk-dropped"),
        pytest.param([CIPHERTEXT[:-1]], id="cut-in-final-chunk"),
        pytest.param([CIPHERTEXT[: ENCRYPTED_CHUNK_SIZE + 100]], id="cut-mid-chunk"),
        pytest.param([CIPHERTEXT[:ENCRYPTED_CHUNK_SIZE]], id="cut-at-chunk-boundary"),
        pytest.param([C1, C0, C2, C3], id="reordered"),
        pytest.param([C0, C2, C1, C3], id="reordered-middle"),
        pytest.param([C0, C0, C2, C3], id="duplicated"),
        pytest.param([C0, C1, C1, C2, C3], id="duplicated-inserted"),
        pytest.param([C0, C2, C3], id="middle-chunk-dropped"),
        pytest.param([C0, C1, C2, C3, C3], id="final-chunk-appended-again"),
        pytest.param([C0, C1, C2, C3, b"\x00"], id="byte-appended"),
        pytest.param([C0, C1, C2, C0[:1016]], id="final-chunk-replaced-by-prefix"),
    ],
)
def test_stream_tampering_is_detected(stream: list[bytes]) -> None:
    with pytest.raises(DocumentError):
        decrypt(HEADER, TRAILER, stream)


@pytest.mark.parametrize("index", range(4))
@pytest.mark.parametrize("where", ["first", "middle", "tag"])
def test_a_flipped_byte_in_any_chunk_is_detected(index: int, where: str) -> None:
    chunk = CHUNKS[index]
    position = {"first": 0, "middle": len(chunk) // 2, "tag": len(chunk) - 1}[where]
    stream = [*CHUNKS]
    stream[index] = flip(chunk, position)
    dec = DocumentDecryptor.with_audience_key(HEADER, TRAILER, AUDIENCE_KEY, SENDER_KEY)
    released: list[bytes] = []
    with pytest.raises(DocumentError, match=f"chunk {index} does not open"):
        released.extend(dec.decrypt_chunks(stream))
    assert len(released) == index
    with pytest.raises(DocumentError):
        dec.finish()


@pytest.mark.parametrize("other", ["document", "version"])
def test_a_chunk_from_another_document_or_version_is_detected(other: str) -> None:
    fields: dict[str, Any] = (
        {"document_id": str(uuid.uuid4())} if other == "document" else {"version_number": 2}
    )
    _, other_chunks, _ = seal(PLAINTEXT, **fields)
    for index in range(4):
        stream = [*CHUNKS]
        stream[index] = other_chunks[index]
        with pytest.raises(DocumentError, match=f"chunk {index} does not open"):
            decrypt(HEADER, TRAILER, stream)


def test_a_chunk_forged_by_an_audience_member_is_caught_before_the_end_is_released() -> None:
    # Everyone in the audience holds the key and can seal a chunk that opens; only the signed
    # content hash catches it, before the final chunk's plaintext is released.
    key = document_key(AUDIENCE_KEY, HEADER)
    aad = canonical.with_context(canonical.CTX_DOCUMENT_CHUNK, document_header_digest(HEADER))
    forged = AESGCM(key).encrypt(chunk_nonce(1, False), b"\x00" * CHUNK_SIZE, aad)
    dec = DocumentDecryptor.with_audience_key(HEADER, TRAILER, AUDIENCE_KEY, SENDER_KEY)
    released: list[bytes] = []
    with pytest.raises(DocumentError, match="not the one the sender signed"):
        released.extend(dec.decrypt_chunks([C0, forged, C2, C3]))
    assert len(released) == 3
    with pytest.raises(DocumentError):
        dec.finish()


def test_finish_refuses_a_partly_read_stream() -> None:
    dec = DocumentDecryptor.with_audience_key(HEADER, TRAILER, AUDIENCE_KEY, SENDER_KEY)
    stream = dec.decrypt_chunks(CHUNKS)
    next(stream)
    with pytest.raises(DocumentError, match="ended after"):
        dec.finish()


def test_decryptor_is_single_use() -> None:
    dec = DocumentDecryptor.with_audience_key(HEADER, TRAILER, AUDIENCE_KEY, SENDER_KEY)
    list(dec.decrypt_chunks(CHUNKS))
    dec.finish()
    with pytest.raises(DocumentError, match="once"):
        list(dec.decrypt_chunks(CHUNKS))


# --- attacks on the header and trailer ------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("label", parse_label("NATO UNCLASSIFIED", CATALOG, originator="GBR").canonical()),
        ("label", parse_label("NATO SECRET//REL TO USA, GBR, FRA", CATALOG).canonical()),
        ("size", len(PLAINTEXT) - 1),
        ("size", len(PLAINTEXT) + 1),
        ("filename", "minutes.exe"),
        ("content_type", "application/x-msdownload"),
        ("version_number", 3),
        ("sender_device", "device-2"),
        ("container", "committee-8"),
        ("created_at", "2026-03-04T05:08:10Z"),
    ],
)
def test_a_tampered_header_field_is_detected(field: str, value: Any) -> None:
    header = copy.deepcopy(HEADER) | {field: value}
    with pytest.raises(DocumentError, match="signature"):
        decrypt(header, TRAILER, CHUNKS)
    with pytest.raises(DocumentError, match="signature"):
        verify_document(header, TRAILER, TRAILER.content_hash, SENDER_KEY)
    # A sender who re-signs a changed header cannot reuse the ciphertext either: the header
    # digest changes the key (so the commitment fails) ...
    resigned = resign(header, TRAILER.commitment, TRAILER.content_hash)
    with pytest.raises(DocumentError, match="not encrypted under this key"):
        decrypt(header, resigned, CHUNKS)
    # ... and, with the old item key from a grant, the chunks' associated data.
    item_key = document_key(AUDIENCE_KEY, HEADER)
    dec = DocumentDecryptor(header, resigned, item_key, SENDER_KEY)
    with pytest.raises(DocumentError, match=r"does not open|ended|more ciphertext"):
        list(dec.decrypt_chunks(CHUNKS))


def test_wrong_keys_are_refused_before_decrypting() -> None:
    with pytest.raises(DocumentError, match="not encrypted under this key"):
        decrypt(HEADER, TRAILER, CHUNKS, audience_key=bytes(32))
    with pytest.raises(DocumentError, match="not encrypted under this key"):
        DocumentDecryptor(HEADER, TRAILER, bytes(32), SENDER_KEY)
    with pytest.raises(DocumentError, match="document key"):
        DocumentDecryptor(HEADER, TRAILER, bytes(16), SENDER_KEY)


def test_commitment_mismatch_is_refused() -> None:
    # Signed by the sender, but committing to another key: a ciphertext that could open
    # differently under two keys never gets that far.
    trailer = resign(HEADER, hashlib.sha256(b"another key").digest(), TRAILER.content_hash)
    with pytest.raises(DocumentError, match="not encrypted under this key"):
        decrypt(HEADER, trailer, CHUNKS)
    # An unsigned change of the commitment fails the signature.
    with pytest.raises(DocumentError, match="signature"):
        decrypt(HEADER, replace(TRAILER, commitment=bytes(32)), CHUNKS)


def test_a_signature_by_another_device_is_refused() -> None:
    hd = document_header_digest(HEADER)
    signature = OTHER.signing_private_key().sign(
        _signing_input(hd, TRAILER.commitment, TRAILER.content_hash)
    )
    forged = replace(TRAILER, signature=signature)
    with pytest.raises(DocumentError, match="signature"):
        decrypt(HEADER, forged, CHUNKS)
    with pytest.raises(DocumentError, match="signature"):
        verify_document(HEADER, forged, TRAILER.content_hash, SENDER_KEY)
    # And the genuine trailer checked against the other device's key.
    with pytest.raises(DocumentError, match="signature"):
        decrypt(HEADER, TRAILER, CHUNKS, signing_key=OTHER.public().signing_key)


def test_a_trailer_from_another_version_is_refused() -> None:
    _, other_chunks, other_trailer = seal(PLAINTEXT)
    with pytest.raises(DocumentError):
        decrypt(HEADER, other_trailer, CHUNKS)
    with pytest.raises(DocumentError):
        decrypt(HEADER, other_trailer, other_chunks)


def test_a_changed_content_hash_is_refused() -> None:
    with pytest.raises(DocumentError, match="signature"):
        decrypt(HEADER, replace(TRAILER, content_hash=bytes(32)), CHUNKS)
    # Re-signed by the sender over a hash that is not the ciphertext's.
    trailer = resign(HEADER, TRAILER.commitment, bytes(32))
    with pytest.raises(DocumentError, match="not the one the sender signed"):
        decrypt(HEADER, trailer, CHUNKS)


# --- the server's check ---------------------------------------------------------------------------


def test_server_verifies_what_it_stored_without_keys() -> None:
    hasher = ContentHasher()
    for piece in pieces(CIPHERTEXT, 10_000):
        hasher.update(piece)
    assert hasher.length == ciphertext_size(len(PLAINTEXT))
    assert hasher.digest() == TRAILER.content_hash
    checked = verify_document(HEADER, TRAILER, hasher.digest(), SENDER_KEY)
    assert checked.header_digest == document_header_digest(HEADER)
    tampered = ContentHasher()
    tampered.update(flip(CIPHERTEXT, 5))
    with pytest.raises(DocumentError, match="not the one signed"):
        verify_document(HEADER, TRAILER, tampered.digest(), SENDER_KEY)


def test_content_hash_is_the_digest_of_the_whole_ciphertext() -> None:
    assert TRAILER.content_hash == canonical.digest(canonical.CTX_DOCUMENT_CONTENT, CIPHERTEXT)


@pytest.mark.parametrize(
    "wire",
    [
        {"commitment": b64u_encode(bytes(32)), "content_hash": b64u_encode(bytes(32))},
        TRAILER.to_json() | {"extra": ""},
        TRAILER.to_json() | {"signature": b64u_encode(bytes(63))},
        TRAILER.to_json() | {"commitment": b64u_encode(bytes(33))},
        TRAILER.to_json() | {"content_hash": b64u_encode(bytes(32)) + "="},
        "[]",
        "not json",
    ],
)
def test_trailer_wire_form_is_strict(wire: Any) -> None:
    with pytest.raises(DocumentError):
        SealedDocumentTrailer.from_json(wire)


def test_trailer_sizes_are_checked() -> None:
    with pytest.raises(DocumentError):
        SealedDocumentTrailer(bytes(32), bytes(32), bytes(32))


# --- header structure -------------------------------------------------------------------------


def test_header_has_exactly_the_documented_fields() -> None:
    assert set(HEADER) == DOCUMENT_FIELDS
    assert HEADER["chunk_size"] == CHUNK_SIZE
    assert check_document_header(HEADER).to_json() == HEADER


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("type", "attache.message"),
        ("version", 2),
        ("version", True),
        ("document_id", "not-a-uuid"),
        ("version_id", "7C9E1A3B-5D7F-4B2D-9E4F-6A8C0E2B4D61"),
        ("audience_id", 1),
        ("version_number", 0),
        ("version_number", True),
        ("version_number", 1.0),
        ("version_number", 2**31),
        ("container", ""),
        ("container", "a b"),
        ("sender_user", "x" * 65),
        ("sender_device", None),
        ("created_at", "2026-03-04T05:08:09+00:00"),
        ("created_at", "2026-03-04T05:08:09.5Z"),
        ("label", "NATO SECRET"),
        ("label", {"x": "y" * 9000}),
        ("filename", ""),
        ("filename", "a/b.pdf"),
        ("filename", "a\\b.pdf"),
        ("filename", ".."),
        ("filename", "."),
        ("filename", "bad\x00name"),
        ("filename", "line\nbreak"),
        ("filename", "evil\u202efdp.exe"),
        ("filename", "é" * 128),
        ("filename", 7),
        ("content_type", ""),
        ("content_type", "x" * 101),
        ("content_type", "text/plain; charset=utf-8\t"),
        ("content_type", "texte/é"),
        ("size", -1),
        ("size", MAX_DOCUMENT_SIZE + 1),
        ("size", False),
        ("size", 1.0),
        ("chunk_size", 65535),
        ("chunk_size", 65536.0),
    ],
)
def test_malformed_header_fields_are_refused(field: str, value: Any) -> None:
    header = copy.deepcopy(HEADER) | {field: value}
    with pytest.raises(DocumentError, match=field):
        check_document_header(header)


@pytest.mark.parametrize("field", sorted(DOCUMENT_FIELDS - {"type", "version"}))
def test_missing_fields_are_refused(field: str) -> None:
    header = copy.deepcopy(HEADER)
    del header[field]
    with pytest.raises(DocumentError, match=field):
        check_document_header(header)


def test_unknown_fields_and_non_objects_are_refused() -> None:
    with pytest.raises(DocumentError, match="unknown"):
        check_document_header(copy.deepcopy(HEADER) | {"sha256": "00"})
    with pytest.raises(DocumentError, match="JSON object"):
        check_document_header([])  # type: ignore[arg-type]


def test_header_limits_that_are_allowed() -> None:
    header = copy.deepcopy(HEADER) | {
        "filename": "é" * 127 + "a",  # 255 UTF-8 bytes
        "content_type": "x" * 100,
        "version_number": 2**31 - 1,
        "size": MAX_DOCUMENT_SIZE,
    }
    assert check_document_header(header).filename == "é" * 127 + "a"


# --- bounded memory -------------------------------------------------------------------------------

BIG = 64 * 1024 * 1024


def _big_plaintext() -> Iterator[bytes]:
    # Pieces that straddle chunk boundaries, from a fixed buffer, so the test holds little.
    block = pattern(100_003, seed=5)
    sent = 0
    while sent < BIG:
        piece = block[: min(len(block), BIG - sent)]
        sent += len(piece)
        yield piece


def test_64_mib_stream_in_bounded_memory() -> None:
    version_id = str(uuid.uuid4())
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        enc = encryptor(BIG, version_id=version_id)
        total = 0
        for chunk in enc.encrypt_chunks(_big_plaintext()):
            total += len(chunk)
        trailer = enc.finish()
        assert total == ciphertext_size(BIG)
        # Encryption is deterministic for one header and plaintext, so a second encryptor
        # regenerates the same ciphertext, which streams straight into the decryptor.
        again = encryptor(BIG, version_id=version_id)
        dec = DocumentDecryptor.with_audience_key(again.header, trailer, AUDIENCE_KEY, SENDER_KEY)
        received = hashlib.sha256()
        for plaintext in dec.decrypt_chunks(again.encrypt_chunks(_big_plaintext())):
            received.update(plaintext)
        dec.finish()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024, f"peak traced memory {peak} bytes"
    expected = hashlib.sha256()
    for piece in _big_plaintext():
        expected.update(piece)
    assert received.digest() == expected.digest()


# --- known-answer vector --------------------------------------------------------------------------


def _with_context(context: str, payload: bytes) -> bytes:
    return context.encode("utf-8") + b"\x00" + payload


def _sha256_with_context(context: str, payload: bytes) -> bytes:
    return hashlib.sha256(_with_context(context, payload)).digest()


def _h(name: str) -> bytes:
    return bytes.fromhex(VECTOR[name])


def _vector_plaintext() -> bytes:
    return bytes(i % 251 for i in range(VECTOR["plaintext"]["size"]))


def test_vector_recomputed_with_raw_primitives() -> None:
    plaintext = _vector_plaintext()
    assert hashlib.sha256(plaintext).hexdigest() == VECTOR["plaintext"]["sha256"]
    header = VECTOR["header"]
    label = parse_label(VECTOR["label_banner"], CATALOG, originator=VECTOR["label_originator"])
    assert header == {
        "type": "attache.document",
        "version": 1,
        **VECTOR["inputs"],
        "label": label.canonical(),
        "chunk_size": 65536,
    }
    encoded = bytes(rfc8785.dumps(header))
    assert encoded.decode("utf-8") == VECTOR["header_canonical"]
    hd = _sha256_with_context("attache/v1/document-header", encoded)
    assert hd == _h("header_digest_hex")

    info = _with_context("attache/v1/document-key", hd)
    assert info == _h("document_key_info_hex")
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(
        _h("audience_key_hex")
    )
    assert key == _h("document_key_hex")
    commitment = _sha256_with_context("attache/v1/document-key-commitment", key)
    assert commitment == _h("key_commitment_hex")
    aad = _with_context("attache/v1/document-chunk", hd)
    assert aad == _h("associated_data_hex")

    content = hashlib.sha256(_with_context("attache/v1/document-content", b""))
    chunks = []
    count = len(VECTOR["chunks"])
    assert count == 3
    for record in VECTOR["chunks"]:
        index = record["index"]
        nonce = index.to_bytes(11, "big") + (b"\x01" if index == count - 1 else b"\x00")
        assert nonce.hex() == record["nonce_hex"]
        piece = plaintext[index * 65536 : (index + 1) * 65536]
        assert len(piece) == record["plaintext_size"]
        sealed = AESGCM(key).encrypt(nonce, piece, aad)
        assert len(sealed) == record["ciphertext_size"]
        assert hashlib.sha256(sealed).hexdigest() == record["ciphertext_sha256"]
        assert sealed[-16:].hex() == record["tag_hex"]
        content.update(sealed)
        chunks.append(sealed)
    assert chunks[0] == _h("first_chunk_ciphertext_hex")
    assert chunks[-1] == _h("last_chunk_ciphertext_hex")
    assert sum(map(len, chunks)) == VECTOR["ciphertext_size"]
    assert content.digest() == _h("content_hash_hex")

    signed = _with_context("attache/v1/document-signature", hd + commitment + content.digest())
    assert signed == _h("signing_input_hex")
    signing = ed25519.Ed25519PrivateKey.from_private_bytes(
        bytes.fromhex(VECTOR["sender"]["signing_seed"])
    )
    assert signing.public_key().public_bytes_raw().hex() == VECTOR["sender"]["signing_public_key"]
    assert signing.sign(signed) == _h("signature_hex")
    assert VECTOR["trailer"] == {
        "commitment": b64u_encode(commitment),
        "content_hash": b64u_encode(content.digest()),
        "signature": b64u_encode(_h("signature_hex")),
    }


def test_implementation_reproduces_and_opens_the_vector() -> None:
    sender = VECTOR["sender"]
    keys = DeviceKeys.from_private_bytes(
        bytes.fromhex(sender["signing_seed"]) + bytes.fromhex(sender["xwing_seed"])
    )
    inputs = VECTOR["inputs"]
    label = parse_label(VECTOR["label_banner"], CATALOG, originator=VECTOR["label_originator"])
    enc = DocumentEncryptor(
        keys,
        _h("audience_key_hex"),
        **inputs | {"created_at": parse_utc_time(inputs["created_at"])},
        label=label,
    )
    assert enc.header == VECTOR["header"]
    assert enc.item_key == _h("document_key_hex")
    plaintext = _vector_plaintext()
    chunks = list(enc.encrypt_chunks(pieces(plaintext, 4096)))
    assert chunks[0] == _h("first_chunk_ciphertext_hex")
    assert chunks[-1] == _h("last_chunk_ciphertext_hex")
    trailer = enc.finish()
    assert trailer.to_json() == VECTOR["trailer"]

    wire = SealedDocumentTrailer.from_json(json.dumps(VECTOR["trailer"]))
    assert document_key(_h("audience_key_hex"), VECTOR["header"]) == _h("document_key_hex")
    assert (
        verify_document(
            VECTOR["header"],
            wire,
            _h("content_hash_hex"),
            bytes.fromhex(sender["signing_public_key"]),
        ).version_number
        == inputs["version_number"]
    )
    dec = DocumentDecryptor(
        VECTOR["header"], wire, _h("document_key_hex"), bytes.fromhex(sender["signing_public_key"])
    )
    assert b"".join(dec.decrypt_chunks(chunks)) == plaintext
    dec.finish()


# --- docs/PROTOCOL.md stays honest ------------------------------------------------------------


def test_document_context_strings_are_defined_and_documented() -> None:
    defined = {name: value for name, value in vars(canonical).items() if name.startswith("CTX_")}
    assert {name: defined[name] for name in DOCUMENT_CONTEXTS} == DOCUMENT_CONTEXTS
    documented = set(re.findall(r"`(attache/v1/[a-z-]+)`", PROTOCOL_MD))
    assert set(DOCUMENT_CONTEXTS.values()) <= documented
    for name in DOCUMENT_CONTEXTS:
        assert f"`{name}`" in PROTOCOL_MD


@pytest.mark.parametrize(
    "name",
    [
        "header_digest_hex",
        "document_key_hex",
        "key_commitment_hex",
        "content_hash_hex",
        "signature_hex",
    ],
)
def test_worked_example_in_the_document_matches_the_vector(name: str) -> None:
    assert VECTOR[name] in PROTOCOL_MD.replace("\n", "").replace(" ", "")


def test_worked_example_chunk_tags_are_documented() -> None:
    flat = PROTOCOL_MD.replace("\n", "").replace(" ", "")
    for record in VECTOR["chunks"]:
        assert record["tag_hex"] in flat
        assert record["nonce_hex"] in flat
