"""Documents: chunked, streaming encryption of one document version. ``docs/PROTOCOL.md``
("Documents") is the byte-level contract; this module implements it.

A document version is a signed header (``hd`` is its digest), a document-version key
``HKDF-SHA256(audience key, info=CTX || hd)`` (the item key a grant seals), and a ciphertext that
is the plaintext in 64 KiB chunks, each sealed with AES-256-GCM under that key, in the STREAM
construction of age (Hoang, Reyhanitabar, Rogaway and Vizár): chunk ``i`` has the nonce
``i`` (11 bytes, big-endian) || last-chunk flag (1 byte) and the associated data
``CTX || hd``. A trailer holds the key commitment, the hash of the whole ciphertext and the
sender device's signature over ``hd || commitment || content hash``, so that:

- truncation, reordering, duplication, dropping, appending and moving chunks between documents
  or versions make a chunk fail to open (the counter, the flag and ``hd`` are all bound);
- one ciphertext opens under one key only (the signed commitment);
- the server checks the sender's signature over exactly what it stored, without any key.

Everything streams: the encryptor and decryptor hold at most one chunk (plus the piece the
caller handed in), whatever the document size. They work over iterables (or async iterables) of
byte strings of any length; nothing here does I/O.

Every failure to check, verify or open raises ``DocumentError`` (a ValueError) naming what failed.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import unicodedata
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from protocol.canonical import (
    CTX_DOCUMENT_CHUNK,
    CTX_DOCUMENT_CONTENT,
    CTX_DOCUMENT_HEADER,
    CTX_DOCUMENT_KEY,
    CTX_DOCUMENT_KEY_COMMITMENT,
    CTX_DOCUMENT_SIGNATURE,
    CanonicalizationError,
    canonical_json,
    digest,
    with_context,
)
from protocol.envelopes import (
    _CONTENT_TYPE,
    AUDIENCE_KEY_SIZE,
    MAX_CONTENT_TYPE_LENGTH,
    MAX_LABEL_BYTES,
    EnvelopeError,
    _header_digest,
    _id_field,
    _key_bytes,
    _load_wire,
    _require_fields,
    _time_field,
    _uuid_field,
    _verify,
    _wire_bytes,
)
from protocol.keys import SIGNATURE_SIZE, DeviceKeys, b64u_encode, format_utc_time
from protocol.labels import Label

__all__ = [
    "CHUNK_SIZE",
    "CONTENT_HASH_SIZE",
    "DOCUMENT_FIELDS",
    "DOCUMENT_KEY_SIZE",
    "DOCUMENT_TYPE",
    "DOCUMENT_VERSION",
    "ENCRYPTED_CHUNK_SIZE",
    "KEY_COMMITMENT_SIZE",
    "MAX_DOCUMENT_SIZE",
    "MAX_FILENAME_BYTES",
    "MAX_VERSION_NUMBER",
    "TAG_SIZE",
    "BytesLike",
    "ContentHasher",
    "DocumentDecryptor",
    "DocumentEncryptor",
    "DocumentError",
    "DocumentHeader",
    "SealedDocumentTrailer",
    "check_document_header",
    "chunk_count",
    "chunk_nonce",
    "ciphertext_size",
    "document_header_digest",
    "document_key",
    "verify_document",
]

DOCUMENT_TYPE: Final = "attache.document"
DOCUMENT_VERSION: Final = 1

#: Plaintext bytes per chunk; every chunk but the last is exactly this long.
CHUNK_SIZE: Final = 64 * 1024
TAG_SIZE: Final = 16
#: A full chunk once sealed: the plaintext chunk followed by its 16-byte GCM tag.
ENCRYPTED_CHUNK_SIZE: Final = CHUNK_SIZE + TAG_SIZE
#: 64 GiB: 2**20 chunks, far below the 2**88 the 11-byte counter allows.
MAX_DOCUMENT_SIZE: Final = 64 * 1024**3
DOCUMENT_KEY_SIZE: Final = 32
KEY_COMMITMENT_SIZE: Final = 32
CONTENT_HASH_SIZE: Final = 32
MAX_FILENAME_BYTES: Final = 255
MAX_VERSION_NUMBER: Final = 2**31 - 1

_COUNTER_SIZE: Final = 11
_LAST_CHUNK: Final = b"\x01"
_NOT_LAST_CHUNK: Final = b"\x00"

#: What the streaming functions accept as a piece of data.
BytesLike = bytes | bytearray | memoryview

DOCUMENT_FIELDS: Final = frozenset(
    {
        "type",
        "version",
        "document_id",
        "version_id",
        "version_number",
        "container",
        "sender_user",
        "sender_device",
        "audience_id",
        "created_at",
        "label",
        "filename",
        "content_type",
        "size",
        "chunk_size",
    }
)


class DocumentError(ValueError):
    """A document version that is malformed, not validly signed, incomplete or cannot be opened."""


@contextmanager
def _as_document_error() -> Iterator[None]:
    # The field checks shared with messages raise EnvelopeError; callers here expect one type.
    try:
        yield
    except EnvelopeError as exc:
        raise DocumentError(str(exc)) from exc


# --------------------------------------------------------------------------------------------
# Sizes


def _check_size(size: int) -> int:
    if type(size) is not int or not 0 <= size <= MAX_DOCUMENT_SIZE:
        raise DocumentError(f"a document size is an integer from 0 to {MAX_DOCUMENT_SIZE}")
    return size


def chunk_count(size: int) -> int:
    """How many chunks a ``size``-byte plaintext makes: ``max(1, ceil(size / CHUNK_SIZE))``.

    Every chunk but the last is full; the last is never empty unless the document is (an empty
    document is one empty final chunk), so a multiple of ``CHUNK_SIZE`` ends on a full chunk.
    """
    return max(1, -(-_check_size(size) // CHUNK_SIZE))


def ciphertext_size(size: int) -> int:
    """The exact byte length of the ciphertext of a ``size``-byte plaintext."""
    return size + TAG_SIZE * chunk_count(size)


def _plaintext_chunk_size(size: int, index: int, count: int) -> int:
    return CHUNK_SIZE if index < count - 1 else size - (count - 1) * CHUNK_SIZE


def chunk_nonce(index: int, last: bool) -> bytes:
    """The 12-byte AES-GCM nonce of chunk ``index``: the index as an 11-byte big-endian counter,
    then ``0x01`` for the final chunk or ``0x00`` for any other."""
    return index.to_bytes(_COUNTER_SIZE, "big") + (_LAST_CHUNK if last else _NOT_LAST_CHUNK)


# --------------------------------------------------------------------------------------------
# Header


@dataclass(frozen=True, slots=True)
class DocumentHeader:
    """The checked content of a document version header, and its digest ``hd``.

    ``label`` is the canonical label JSON as sent; parse it with ``Label.from_canonical``.
    """

    document_id: str
    version_id: str
    version_number: int
    container: str
    sender_user: str
    sender_device: str
    audience_id: str
    created_at: datetime
    label: Mapping[str, Any]
    filename: str
    content_type: str
    size: int
    header_digest: bytes

    @property
    def chunk_count(self) -> int:
        return chunk_count(self.size)

    @property
    def ciphertext_size(self) -> int:
        return ciphertext_size(self.size)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": DOCUMENT_TYPE,
            "version": DOCUMENT_VERSION,
            "document_id": self.document_id,
            "version_id": self.version_id,
            "version_number": self.version_number,
            "container": self.container,
            "sender_user": self.sender_user,
            "sender_device": self.sender_device,
            "audience_id": self.audience_id,
            "created_at": format_utc_time(self.created_at),
            "label": copy.deepcopy(dict(self.label)),
            "filename": self.filename,
            "content_type": self.content_type,
            "size": self.size,
            "chunk_size": CHUNK_SIZE,
        }


def _int_field(header: Mapping[str, Any], name: str, low: int, high: int) -> int:
    value = header[name]
    # bool is an int in Python but not in JSON.
    if type(value) is not int or not low <= value <= high:
        raise DocumentError(f"document header field {name} must be an integer from {low} to {high}")
    return value


def _label_field(header: Mapping[str, Any]) -> dict[str, Any]:
    label = header["label"]
    if not isinstance(label, Mapping):
        raise DocumentError("document header field label must be a JSON object")
    try:
        label_bytes = canonical_json(label)
    except CanonicalizationError as exc:
        raise DocumentError(f"document header field label is not canonical JSON: {exc}") from exc
    if len(label_bytes) > MAX_LABEL_BYTES:
        raise DocumentError(f"document header field label is longer than {MAX_LABEL_BYTES} bytes")
    return copy.deepcopy(dict(label))


def _filename_field(header: Mapping[str, Any]) -> str:
    value = header["filename"]
    if not isinstance(value, str) or value == "":
        raise DocumentError("document header field filename must be a non-empty string")
    # Category C covers control, format (bidirectional overrides), surrogate and unassigned
    # characters: none belongs in a name shown to people and written to their disks.
    if any(unicodedata.category(char).startswith("C") for char in value):
        raise DocumentError("document header field filename contains control or format characters")
    if len(value.encode("utf-8")) > MAX_FILENAME_BYTES:
        raise DocumentError(
            f"document header field filename is longer than {MAX_FILENAME_BYTES} UTF-8 bytes"
        )
    if "/" in value or "\\" in value or value in {".", ".."}:
        raise DocumentError("document header field filename must be a plain name, not a path")
    return value


def check_document_header(header: Mapping[str, Any]) -> DocumentHeader:
    """Check a document version header's structure (not its signature) and type its fields.

    All of ``DOCUMENT_FIELDS`` and no other; ``chunk_size`` exactly ``CHUNK_SIZE``; ``size``
    from 0 to ``MAX_DOCUMENT_SIZE``; ``version_number`` from 1 to ``MAX_VERSION_NUMBER``; the
    label a JSON object of at most ``MAX_LABEL_BYTES`` canonical bytes (not checked against a
    catalog here). Raises DocumentError naming the field.
    """
    kind = "document"
    with _as_document_error():
        _require_fields(header, DOCUMENT_FIELDS, kind, DOCUMENT_TYPE)
        ids = {
            name: _uuid_field(header, name, kind)
            for name in ("document_id", "version_id", "audience_id")
        }
        names = {
            name: _id_field(header, name, kind)
            for name in ("container", "sender_user", "sender_device")
        }
        created_at = _time_field(header, "created_at", kind)
    content_type = header["content_type"]
    if not isinstance(content_type, str) or _CONTENT_TYPE.fullmatch(content_type) is None:
        raise DocumentError(
            f"document header field content_type must be 1 to {MAX_CONTENT_TYPE_LENGTH} "
            "printable ASCII characters"
        )
    chunk_size = header["chunk_size"]
    if type(chunk_size) is not int or chunk_size != CHUNK_SIZE:
        raise DocumentError(f"document header field chunk_size must be {CHUNK_SIZE}")
    version_number = _int_field(header, "version_number", 1, MAX_VERSION_NUMBER)
    size = _int_field(header, "size", 0, MAX_DOCUMENT_SIZE)
    label = _label_field(header)
    filename = _filename_field(header)
    with _as_document_error():
        hd = _header_digest(CTX_DOCUMENT_HEADER, header, kind)
    return DocumentHeader(
        document_id=ids["document_id"],
        version_id=ids["version_id"],
        version_number=version_number,
        container=names["container"],
        sender_user=names["sender_user"],
        sender_device=names["sender_device"],
        audience_id=ids["audience_id"],
        created_at=created_at,
        label=label,
        filename=filename,
        content_type=content_type,
        size=size,
        header_digest=hd,
    )


def document_header_digest(header: Mapping[str, Any]) -> bytes:
    """``hd = digest(CTX_DOCUMENT_HEADER, canonical_json(header))`` of a checked header."""
    return check_document_header(header).header_digest


# --------------------------------------------------------------------------------------------
# Keys, commitment, content hash and signature


def _derive_document_key(audience_key: bytes, header_digest: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=DOCUMENT_KEY_SIZE,
        salt=None,
        info=with_context(CTX_DOCUMENT_KEY, header_digest),
    ).derive(audience_key)


def document_key(audience_key: bytes, header: Mapping[str, Any]) -> bytes:
    """The document-version key: HKDF-SHA256(ikm=audience key, no salt, info=with_context(
    CTX_DOCUMENT_KEY, hd)), 32 bytes. It is also the version's item key, the one a grant seals
    (never the audience key)."""
    audience_key = _checked_key(audience_key, AUDIENCE_KEY_SIZE, "an audience key")
    return _derive_document_key(audience_key, check_document_header(header).header_digest)


def _checked_key(key: bytes, size: int, what: str) -> bytes:
    with _as_document_error():
        return _key_bytes(key, size, what)


def _key_commitment(key: bytes) -> bytes:
    return digest(CTX_DOCUMENT_KEY_COMMITMENT, key)


def _chunk_aad(header_digest: bytes) -> bytes:
    return with_context(CTX_DOCUMENT_CHUNK, header_digest)


def _signing_input(header_digest: bytes, commitment: bytes, content_hash: bytes) -> bytes:
    # Three 32-byte values, so the concatenation is unambiguous.
    return with_context(CTX_DOCUMENT_SIGNATURE, header_digest + commitment + content_hash)


class ContentHasher:
    """The content hash of a document ciphertext, computed incrementally:
    ``SHA-256(UTF-8(CTX_DOCUMENT_CONTENT) || 0x00 || ct_0 || ct_1 || ...)``, which is
    ``digest(CTX_DOCUMENT_CONTENT, ciphertext)`` of the whole stored ciphertext.

    The server feeds it what it stores, in pieces of any size, and checks ``length`` against
    ``ciphertext_size(header size)`` and ``digest()`` with ``verify_document``.
    """

    __slots__ = ("_hash", "_length")

    def __init__(self) -> None:
        self._hash = hashlib.sha256(with_context(CTX_DOCUMENT_CONTENT, b""))
        self._length = 0

    def update(self, data: BytesLike) -> None:
        self._hash.update(data)
        self._length += len(data)

    @property
    def length(self) -> int:
        """How many ciphertext bytes have been hashed."""
        return self._length

    def digest(self) -> bytes:
        return self._hash.digest()


@dataclass(frozen=True, slots=True)
class SealedDocumentTrailer:
    """What completes a document version once its ciphertext is written: the key commitment,
    the content hash of the ciphertext and the sender device's signature over
    ``hd || commitment || content_hash``."""

    commitment: bytes
    content_hash: bytes
    signature: bytes

    def __post_init__(self) -> None:
        for name, size in (
            ("commitment", KEY_COMMITMENT_SIZE),
            ("content_hash", CONTENT_HASH_SIZE),
            ("signature", SIGNATURE_SIZE),
        ):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != size:
                raise DocumentError(f"a document trailer's {name} is {size} bytes")

    def to_json(self) -> dict[str, str]:
        """``{"commitment": b64u, "content_hash": b64u, "signature": b64u}``."""
        return {
            "commitment": b64u_encode(self.commitment),
            "content_hash": b64u_encode(self.content_hash),
            "signature": b64u_encode(self.signature),
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any] | str | bytes) -> SealedDocumentTrailer:
        """Inverse of ``to_json``, checking structure and sizes (not the signature)."""
        with _as_document_error():
            value = _load_wire(value, "document trailer")
            if set(value) != {"commitment", "content_hash", "signature"}:
                raise DocumentError(
                    "a document trailer has exactly commitment, content_hash and signature"
                )
            return cls(
                commitment=_wire_bytes(
                    value["commitment"], "document key commitment", size=KEY_COMMITMENT_SIZE
                ),
                content_hash=_wire_bytes(
                    value["content_hash"], "document content hash", size=CONTENT_HASH_SIZE
                ),
                signature=_wire_bytes(
                    value["signature"], "document signature", size=SIGNATURE_SIZE
                ),
            )


def verify_document(
    header: Mapping[str, Any],
    trailer: SealedDocumentTrailer,
    content_hash: bytes,
    sender_signing_key: bytes,
) -> DocumentHeader:
    """Check a document version as stored, without any key: what the server does.

    Checks the header structure, that ``content_hash`` (which the caller computed with
    ``ContentHasher`` over the ciphertext it stored) equals the trailer's, and the sender
    device's signature over ``hd || commitment || content_hash``. ``sender_signing_key`` is the
    Ed25519 public key (32 raw bytes) of the device the header names as ``sender_device``; the
    caller looks it up. The caller also checks that it stored exactly
    ``ciphertext_size(size)`` bytes (``ContentHasher.length``). Raises DocumentError.
    """
    checked = check_document_header(header)
    if not hmac.compare_digest(bytes(content_hash), trailer.content_hash):
        raise DocumentError(
            f"document version {checked.version_id}: the ciphertext is not the one signed"
        )
    _verify_trailer(checked, trailer, sender_signing_key)
    return checked


def _verify_trailer(
    checked: DocumentHeader, trailer: SealedDocumentTrailer, sender_signing_key: bytes
) -> None:
    with _as_document_error():
        _verify(
            sender_signing_key,
            trailer.signature,
            _signing_input(checked.header_digest, trailer.commitment, trailer.content_hash),
            "document signature",
        )


def _as_bytes_view(piece: BytesLike) -> memoryview:
    if not isinstance(piece, BytesLike):
        raise TypeError(f"document data comes in bytes, not {type(piece).__name__}")
    return memoryview(piece).cast("B")


# --------------------------------------------------------------------------------------------
# Encryption


class DocumentEncryptor:
    """Encrypts and signs one document version, streaming, in bounded memory.

    Make one per version; it is single use. Feed the plaintext, in pieces of any size, to
    ``encrypt_chunks`` (or ``aencrypt_chunks``), write every ciphertext chunk it yields, in
    order, to one blob, and then call ``finish()`` for the trailer. The plaintext must be
    exactly ``size`` bytes, or DocumentError is raised (before the first extra byte is sealed,
    or at the end if it is short).

    .. danger::
        The chunk nonces are a counter, so the key must never seal two different plaintexts:
        ``version_id`` must be a fresh UUID for every encryption of new content. A retried
        upload re-sends the ciphertext already made (or starts over with a new ``version_id``);
        it never re-encrypts changed content under the same header.
    """

    __slots__ = (
        "_aead",
        "_buffer",
        "_checked",
        "_count",
        "_failed",
        "_hasher",
        "_header",
        "_index",
        "_key",
        "_received",
        "_sender_keys",
        "_started",
        "_trailer",
    )

    def __init__(
        self,
        sender_keys: DeviceKeys,
        audience_key: bytes,
        *,
        document_id: str,
        version_id: str,
        version_number: int,
        container: str,
        sender_user: str,
        sender_device: str,
        audience_id: str,
        created_at: datetime,
        label: Label | Mapping[str, Any],
        filename: str,
        content_type: str,
        size: int,
    ) -> None:
        """``version_id`` is a fresh UUID chosen by the client (see the class warning);
        ``created_at`` must be timezone-aware (truncated to seconds); ``label`` is a Label or
        its canonical dict; ``size`` is the exact plaintext length. Raises DocumentError for a
        malformed field."""
        try:
            created = format_utc_time(created_at)
        except ValueError as exc:
            raise DocumentError(f"document header field created_at: {exc}") from exc
        header: dict[str, Any] = {
            "type": DOCUMENT_TYPE,
            "version": DOCUMENT_VERSION,
            "document_id": document_id,
            "version_id": version_id,
            "version_number": version_number,
            "container": container,
            "sender_user": sender_user,
            "sender_device": sender_device,
            "audience_id": audience_id,
            "created_at": created,
            "label": label.canonical() if isinstance(label, Label) else copy.deepcopy(dict(label)),
            "filename": filename,
            "content_type": content_type,
            "size": size,
            "chunk_size": CHUNK_SIZE,
        }
        audience_key = _checked_key(audience_key, AUDIENCE_KEY_SIZE, "an audience key")
        self._checked = check_document_header(header)
        self._header = header
        self._sender_keys = sender_keys
        self._key = _derive_document_key(audience_key, self._checked.header_digest)
        self._aead = AESGCM(self._key)
        self._count = chunk_count(self._checked.size)
        self._hasher = ContentHasher()
        self._buffer = bytearray()
        self._index = 0
        self._received = 0
        self._started = False
        self._failed = False
        self._trailer: SealedDocumentTrailer | None = None

    @property
    def header(self) -> dict[str, Any]:
        """The header exactly as signed (a copy)."""
        return copy.deepcopy(self._header)

    @property
    def checked_header(self) -> DocumentHeader:
        return self._checked

    @property
    def item_key(self) -> bytes:
        """The document-version key: the item key a grant seals for devices outside the
        audience. Secret."""
        return self._key

    def encrypt_chunks(self, plaintext: Iterable[BytesLike]) -> Iterator[bytes]:
        """Yield the ciphertext chunks of ``plaintext`` (pieces of any size), in order: each
        ``ENCRYPTED_CHUNK_SIZE`` bytes but the last. Raises DocumentError if the pieces add up
        to more or fewer than ``size`` bytes, or if called twice."""
        self._start()
        for piece in plaintext:
            yield from self._feed(piece)
        yield from self._close()

    async def aencrypt_chunks(self, plaintext: AsyncIterable[BytesLike]) -> AsyncIterator[bytes]:
        """``encrypt_chunks`` over an async iterable."""
        self._start()
        async for piece in plaintext:
            for chunk in self._feed(piece):
                yield chunk
        for chunk in self._close():
            yield chunk

    def finish(self) -> SealedDocumentTrailer:
        """The signed trailer, once ``encrypt_chunks`` is exhausted. Raises DocumentError before
        that or after a failure."""
        if self._trailer is None:
            raise DocumentError("the document is not completely encrypted")
        return self._trailer

    def _start(self) -> None:
        if self._started:
            raise DocumentError("a DocumentEncryptor encrypts one document version once")
        self._started = True

    def _fail(self, reason: str) -> DocumentError:
        self._failed = True
        return DocumentError(f"document version {self._checked.version_id}: {reason}")

    def _feed(self, piece: BytesLike) -> Iterator[bytes]:
        if self._failed:
            raise self._fail("encryption already failed")
        view = _as_bytes_view(piece)
        size = self._checked.size
        if self._received + len(view) > size:
            raise self._fail(f"the plaintext is longer than the {size} bytes in the header")
        self._received += len(view)
        position = 0
        while position < len(view):
            wanted = _plaintext_chunk_size(size, self._index, self._count)
            take = min(wanted - len(self._buffer), len(view) - position)
            if not self._buffer and take == wanted:
                # A whole chunk inside this piece: seal it without copying.
                chunk: BytesLike = view[position : position + take]
            else:
                self._buffer += view[position : position + take]
                chunk = self._buffer
            position += take
            if len(chunk) == wanted:
                yield self._seal(chunk)
                self._buffer.clear()

    def _close(self) -> Iterator[bytes]:
        if self._failed:
            raise self._fail("encryption already failed")
        size = self._checked.size
        if self._received != size:
            raise self._fail(
                f"the plaintext is {self._received} bytes, not the {size} in the header"
            )
        if self._index == 0 and size == 0:
            yield self._seal(b"")
        if self._index != self._count or self._buffer:  # pragma: no cover - an invariant
            raise self._fail("internal error: chunks left unsealed")
        self._trailer = self._sign()

    def _seal(self, chunk: BytesLike) -> bytes:
        last = self._index == self._count - 1
        sealed = self._aead.encrypt(
            chunk_nonce(self._index, last), chunk, _chunk_aad(self._checked.header_digest)
        )
        self._hasher.update(sealed)
        self._index += 1
        return sealed

    def _sign(self) -> SealedDocumentTrailer:
        commitment = _key_commitment(self._key)
        content_hash = self._hasher.digest()
        signature = self._sender_keys.signing_private_key().sign(
            _signing_input(self._checked.header_digest, commitment, content_hash)
        )
        return SealedDocumentTrailer(
            commitment=commitment, content_hash=content_hash, signature=signature
        )


# --------------------------------------------------------------------------------------------
# Decryption


class DocumentDecryptor:
    """Checks and decrypts one document version, streaming, in bounded memory.

    On construction it checks the header structure, the sender device's signature over
    ``hd || commitment || content_hash`` as the trailer states them, and the key commitment;
    nothing is decrypted before these succeed. ``decrypt_chunks`` then takes the ciphertext in
    pieces of any size, opens each chunk as soon as it is complete and hashes the ciphertext as
    it goes; before releasing the plaintext of the final chunk it checks that the ciphertext
    hashes to the signed content hash. ``finish()`` then confirms the whole version was read.

    .. danger::
        Plaintext yielded before ``finish()`` returns is authenticated chunk by chunk, but only
        against those who do not hold the key: every device of the audience holds it and could
        have forged chunks. That the whole plaintext is complete and is the one the sender
        signed is proven only when ``decrypt_chunks`` is exhausted without error and
        ``finish()`` returns. Write the plaintext to a temporary file and move it into place
        only after ``finish()``; discard it on any DocumentError.
    """

    __slots__ = (
        "_aad",
        "_aead",
        "_buffer",
        "_checked",
        "_complete",
        "_count",
        "_failed",
        "_hasher",
        "_index",
        "_received",
        "_started",
        "_total",
        "_trailer",
    )

    def __init__(
        self,
        header: Mapping[str, Any],
        trailer: SealedDocumentTrailer,
        item_key: bytes,
        sender_signing_key: bytes,
    ) -> None:
        """Prepare to decrypt with the document-version (item) key, e.g. from a grant, or
        ``document_key(audience_key, header)``; see also ``with_audience_key``.
        ``sender_signing_key`` is the Ed25519 public key (32 raw bytes) of the header's
        ``sender_device``, from a certificate the caller verified for ``sender_user``. Raises
        DocumentError."""
        item_key = _checked_key(item_key, DOCUMENT_KEY_SIZE, "a document key")
        if not isinstance(trailer, SealedDocumentTrailer):
            raise DocumentError("a document trailer is a SealedDocumentTrailer")
        checked = check_document_header(header)
        _verify_trailer(checked, trailer, sender_signing_key)
        if not hmac.compare_digest(trailer.commitment, _key_commitment(item_key)):
            raise DocumentError(
                f"document version {checked.version_id} was not encrypted under this key"
            )
        self._checked = checked
        self._trailer = trailer
        self._aead = AESGCM(item_key)
        self._aad = _chunk_aad(checked.header_digest)
        self._count = chunk_count(checked.size)
        self._total = ciphertext_size(checked.size)
        self._hasher = ContentHasher()
        self._buffer = bytearray()
        self._index = 0
        self._received = 0
        self._started = False
        self._failed = False
        self._complete = False

    @classmethod
    def with_audience_key(
        cls,
        header: Mapping[str, Any],
        trailer: SealedDocumentTrailer,
        audience_key: bytes,
        sender_signing_key: bytes,
    ) -> DocumentDecryptor:
        """Prepare to decrypt with the audience key (from ``open_audience_envelope``). The
        caller checks that the audience's container is the header's."""
        return cls(header, trailer, document_key(audience_key, header), sender_signing_key)

    @property
    def checked_header(self) -> DocumentHeader:
        return self._checked

    def decrypt_chunks(self, ciphertext: Iterable[BytesLike]) -> Iterator[bytes]:
        """Yield the plaintext, one chunk at a time, from ``ciphertext`` in pieces of any size.

        Raises DocumentError as soon as a chunk fails to open or more ciphertext arrives than
        the header's size allows, before releasing the final chunk if the ciphertext is not the
        one signed, and at the end if the ciphertext stopped early. Called once.
        """
        self._start()
        for piece in ciphertext:
            yield from self._feed(piece)
        self._close()

    async def adecrypt_chunks(self, ciphertext: AsyncIterable[BytesLike]) -> AsyncIterator[bytes]:
        """``decrypt_chunks`` over an async iterable."""
        self._start()
        async for piece in ciphertext:
            for chunk in self._feed(piece):
                yield chunk
        self._close()

    def finish(self) -> DocumentHeader:
        """The checked header, once every chunk has been opened and the ciphertext proven to
        be the one the sender signed. Raises DocumentError otherwise (a truncated stream, a
        failure, or ``decrypt_chunks`` not run to the end)."""
        if self._failed:
            raise self._fail("decryption failed")
        if not self._complete:
            raise self._fail(f"the ciphertext ended after {self._received} of {self._total} bytes")
        return self._checked

    def _start(self) -> None:
        if self._started:
            raise DocumentError("a DocumentDecryptor decrypts one document version once")
        self._started = True

    def _fail(self, reason: str) -> DocumentError:
        self._failed = True
        return DocumentError(f"document version {self._checked.version_id}: {reason}")

    def _feed(self, piece: BytesLike) -> Iterator[bytes]:
        if self._failed:
            raise self._fail("decryption already failed")
        view = _as_bytes_view(piece)
        if self._received + len(view) > self._total:
            raise self._fail(f"more ciphertext than the {self._total} bytes the header implies")
        self._received += len(view)
        position = 0
        while position < len(view):
            wanted = _plaintext_chunk_size(self._checked.size, self._index, self._count) + TAG_SIZE
            take = min(wanted - len(self._buffer), len(view) - position)
            if not self._buffer and take == wanted:
                chunk: BytesLike = view[position : position + take]
            else:
                self._buffer += view[position : position + take]
                chunk = self._buffer
            position += take
            if len(chunk) == wanted:
                plaintext = self._open(chunk)
                self._buffer.clear()
                yield plaintext

    def _open(self, chunk: BytesLike) -> bytes:
        last = self._index == self._count - 1
        self._hasher.update(chunk)
        try:
            plaintext = self._aead.decrypt(chunk_nonce(self._index, last), chunk, self._aad)
        except InvalidTag as exc:
            raise self._fail(f"chunk {self._index} does not open") from exc
        self._index += 1
        if last:
            # Everything has been read: prove it is what the sender signed before releasing
            # the final plaintext.
            if not hmac.compare_digest(self._hasher.digest(), self._trailer.content_hash):
                raise self._fail("the ciphertext is not the one the sender signed")
            self._complete = True
        return plaintext

    def _close(self) -> None:
        if self._failed:
            raise self._fail("decryption already failed")
        if not self._complete:
            raise self._fail(f"the ciphertext ended after {self._received} of {self._total} bytes")
