"""Opens, with the Python protocol/ code, a document version the page's upload sent.

Reads one JSON object on standard input: what the server the Node test plays received (the
signed header, the trailer, the ciphertext and the audience with one recipient's envelope)
and that recipient device's private keys. Prints the plaintext's SHA-256 and what the header
says, checked as clients/sdk/documents.py's ``Documents.get`` checks a version (the header,
the audience its sender made, the envelope, the signature over the stored bytes, every chunk),
or, with ``tamper`` set, the refusal of a ciphertext with that byte changed. Run by
test/upload.test.ts with the project's virtual environment; not a pytest module.
"""

from __future__ import annotations

import hashlib
import json
import sys

from protocol import envelopes, stream
from protocol.keys import DeviceKeys, b64u_decode


def main() -> None:
    data = json.load(sys.stdin)
    keys = DeviceKeys.from_private_bytes(bytes.fromhex(data["device_private_hex"]))
    sender_key = bytes.fromhex(data["sender_signing_key_hex"])
    header = stream.check_document_header(data["header"])
    audience = data["audience"]
    audience_header = envelopes.check_audience_header(audience["header"])
    if (
        audience_header.audience_id != header.audience_id
        or audience_header.creator_device != header.sender_device
        or audience_header.container != header.container
    ):
        raise SystemExit("the version came with an audience its sender did not make")
    audience_key = envelopes.open_audience_envelope(
        keys,
        data["device_id"],
        audience["header"],
        b64u_decode(audience["signature"]),
        b64u_decode(audience["envelope"]),
        sender_key,
    )
    ciphertext = bytearray(b64u_decode(data["ciphertext"]))
    if data.get("tamper") is not None:
        ciphertext[data["tamper"]] ^= 1
    try:
        decryptor = stream.DocumentDecryptor.with_audience_key(
            data["header"],
            stream.SealedDocumentTrailer.from_json(data["trailer"]),
            audience_key,
            sender_key,
        )
        content = hashlib.sha256()
        for piece in decryptor.decrypt_chunks([bytes(ciphertext)]):
            content.update(piece)
        decryptor.finish()
    except stream.DocumentError as exc:
        json.dump({"refused": str(exc)}, sys.stdout)
        return
    json.dump(
        {
            "sha256": content.hexdigest(),
            "filename": header.filename,
            "size": header.size,
            "content_type": header.content_type,
            "recipients": list(audience_header.devices),
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
