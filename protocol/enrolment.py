"""One-time enrolment codes: their alphabet, normal form and digest.

A code is 120 random bits in RFC 4648 base32, shown in groups of four (``ABCD-EFGH-...``) so a
person can read it over the phone. Case, spaces and dashes are ignored. The server stores only
the digest, and a device's registration proof names the digest (not the code), binding the
proof to that one code.
"""

from __future__ import annotations

import base64
import secrets

from protocol.canonical import CTX_ENROLMENT_CODE, digest

CODE_BYTES = 15


def new_code() -> str:
    raw = base64.b32encode(secrets.token_bytes(CODE_BYTES)).decode("ascii")
    return "-".join(raw[i : i + 4] for i in range(0, len(raw), 4))


def normalise_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch not in " -\t")


def code_digest(code: str) -> bytes:
    return digest(CTX_ENROLMENT_CODE, normalise_code(code).encode("utf-8"))
