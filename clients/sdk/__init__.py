"""The Attaché Python SDK.

from clients.sdk import Keystore, connect

async with await connect(Keystore(), passphrase="...") as client:
    me = await client.me()
"""

from clients.sdk._client import ApiError, AttacheClient, ConnectionFailed
from clients.sdk._session import (
    Enrolment,
    certify_device,
    change_clearance,
    check_certifiable,
    connect,
    enroll,
)
from clients.sdk.keystore import Keystore, KeystoreError, Profile

__all__ = [
    "ApiError",
    "AttacheClient",
    "ConnectionFailed",
    "Enrolment",
    "Keystore",
    "KeystoreError",
    "Profile",
    "certify_device",
    "change_clearance",
    "check_certifiable",
    "connect",
    "enroll",
]
