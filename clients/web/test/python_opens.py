"""Opens, with the Python protocol/ code, what the web client's interop test sealed in TypeScript.

Reads one JSON object on standard input (an audience, a message and a document version sealed
by clients/web, the recipient device's private keys, and a secret sealed under a passphrase)
and prints what it decrypted, with a secret Python sealed for the page to open. Run by
test/interop.test.ts with the project's virtual environment; not a pytest module.
"""

from __future__ import annotations

import hashlib
import json
import sys

from protocol import envelopes
from protocol.keys import DeviceKeys, KdfParams, b64u_decode, open_secret, seal_secret
from protocol.stream import DocumentDecryptor, SealedDocumentTrailer


def main() -> None:
    data = json.load(sys.stdin)
    keys = DeviceKeys.from_private_bytes(bytes.fromhex(data["device_private_hex"]))
    sender_key = bytes.fromhex(data["sender_signing_key_hex"])
    device_id = data["device_id"]
    audience = envelopes.SealedAudience.from_json(data["audience"], partial=True)
    audience_key = envelopes.open_audience_envelope(
        keys,
        device_id,
        audience.header,
        audience.signature,
        audience.envelopes[device_id],
        sender_key,
    )
    message = envelopes.SealedMessage.from_json(data["message"])
    text = envelopes.decrypt_message(message, audience_key, sender_key).decode("utf-8")
    document = data["document"]
    decryptor = DocumentDecryptor.with_audience_key(
        document["header"],
        SealedDocumentTrailer.from_json(document["trailer"]),
        audience_key,
        sender_key,
    )
    content = b"".join(decryptor.decrypt_chunks([b64u_decode(document["ciphertext"])]))
    decryptor.finish()
    secret = data["secret"]
    opened = open_secret(secret["passphrase"], secret["blob"].encode(), purpose=secret["purpose"])
    sealed = seal_secret(
        secret["passphrase"], opened[::-1], purpose=secret["purpose"], params=KdfParams.for_tests()
    )
    json.dump(
        {
            "message": text,
            "document_sha256": hashlib.sha256(content).hexdigest(),
            "secret_hex": opened.hex(),
            "sealed_reversed": sealed.decode(),
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
