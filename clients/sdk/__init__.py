"""The Attaché Python SDK.

from clients.sdk import Keystore, Messenger, connect

async with await connect(Keystore(), passphrase="...") as client:
    me = await client.me()

async with await Messenger.open(Keystore(), passphrase="...") as m:
    await m.send("liaison", "Meeting moved to 14:00", label="NATO SECRET//REL TO USA, GBR")
    for msg in await m.read("liaison"):
        print(msg.banner, msg.sender, msg.text)
"""

from clients.sdk._client import (
    ApiError,
    AttacheClient,
    ConnectionFailed,
    InvalidArgument,
    RateLimited,
)
from clients.sdk._session import (
    Enrolment,
    certify_device,
    change_clearance,
    check_certifiable,
    connect,
    enroll,
)
from clients.sdk.coalition import HeldPolicy, PolicyRefused
from clients.sdk.committees import (
    ActionItemEntry,
    AgendaEntry,
    CommitteeEntry,
    Committees,
    MeetingAgenda,
)
from clients.sdk.history import History, Shared, Waiting
from clients.sdk.keystore import Keystore, KeystoreError, Profile
from clients.sdk.messaging import (
    Backoff,
    ExcludedDevice,
    MessageStream,
    MessagingError,
    Messenger,
    ReceivedMessage,
    SentMessage,
    StreamClosed,
    StreamStatus,
)
from clients.sdk.releases import Releases

__all__ = [
    "ActionItemEntry",
    "AgendaEntry",
    "ApiError",
    "AttacheClient",
    "Backoff",
    "CommitteeEntry",
    "Committees",
    "ConnectionFailed",
    "Enrolment",
    "ExcludedDevice",
    "HeldPolicy",
    "History",
    "InvalidArgument",
    "Keystore",
    "KeystoreError",
    "MeetingAgenda",
    "MessageStream",
    "MessagingError",
    "Messenger",
    "PolicyRefused",
    "Profile",
    "RateLimited",
    "ReceivedMessage",
    "Releases",
    "SentMessage",
    "Shared",
    "StreamClosed",
    "StreamStatus",
    "Waiting",
    "certify_device",
    "change_clearance",
    "check_certifiable",
    "connect",
    "enroll",
]
