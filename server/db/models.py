"""Every ORM model, imported in one place so that metadata is complete (Alembic, tests)."""

from server.audit.models import AuditEvent
from server.auth.models import LoginChallenge, SessionToken
from server.channels.models import (
    Audience,
    AudienceEnvelope,
    Channel,
    ChannelMember,
    Delivery,
    Message,
)
from server.coalition.models import CoalitionPolicyProposal, CoalitionPolicyVersion
from server.committees.models import (
    ActionItem,
    ActionItemUpdate,
    AgendaItem,
    Committee,
    Meeting,
)
from server.db.base import Base
from server.devices.models import Device, EnrolmentCode
from server.directory.models import Nation, Office, PartnerGroup, PartnerGroupMember, User
from server.documents.models import Document, DocumentVersion
from server.releases.models import GrantEnvelope, ItemGrant, ReleaseRequest

__all__ = [
    "ActionItem",
    "ActionItemUpdate",
    "AgendaItem",
    "Audience",
    "AudienceEnvelope",
    "AuditEvent",
    "Base",
    "Channel",
    "ChannelMember",
    "CoalitionPolicyProposal",
    "CoalitionPolicyVersion",
    "Committee",
    "Delivery",
    "Device",
    "Document",
    "DocumentVersion",
    "EnrolmentCode",
    "GrantEnvelope",
    "ItemGrant",
    "LoginChallenge",
    "Meeting",
    "Message",
    "Nation",
    "Office",
    "PartnerGroup",
    "PartnerGroupMember",
    "ReleaseRequest",
    "SessionToken",
    "User",
]
