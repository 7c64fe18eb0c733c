"""Opens, with the Python protocol/ code, a grant the web client's grants test sealed in
TypeScript, and seals one the other way for the page to open.

Reads one JSON object on standard input (the grant, the item key it seals, the grantor's and
the recipient device's private keys, the recipient's device id) and prints the header digest
and item key Python finds, with a grant Python made of the reversed item key to the same
device. Run by test/grants.test.ts with the project's virtual environment; not a pytest module.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

from protocol import envelopes, grants
from protocol.keys import DeviceKeys, b64u_decode


def main() -> None:
    data = json.load(sys.stdin)
    grantor = DeviceKeys.from_private_bytes(bytes.fromhex(data["grantor_private_hex"]))
    recipient = DeviceKeys.from_private_bytes(bytes.fromhex(data["recipient_private_hex"]))
    device_id = data["device_id"]
    sealed = grants.SealedGrant.from_json(data["grant"])
    item_key = grants.open_grant(
        recipient,
        device_id,
        sealed.header,
        sealed.signature,
        sealed.envelopes[device_id],
        grantor.public().signing_key,
    )
    header = grants.check_grant_header(sealed.header)
    made = grants.create_grant(
        grantor,
        item_key[::-1],
        grant_id="5eed0000-1234-4abc-8def-0123456789ab",
        request_id=header.request_id,
        item_type=header.item_type,
        item_id=header.item_id,
        container=header.container,
        grantor_user=header.grantor_user,
        grantor_device=header.grantor_device,
        previous_label=header.previous_label,
        label=header.label,
        recipients=[envelopes.Recipient(device_id, recipient.public())],
        created_at=datetime(2026, 11, 26, 10, 0, tzinfo=UTC),
    )
    assert b64u_decode(data["item_key"]) == item_key
    json.dump(
        {
            "header_digest_hex": header.header_digest.hex(),
            "item_key_hex": item_key.hex(),
            "grant": made.to_json(),
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
