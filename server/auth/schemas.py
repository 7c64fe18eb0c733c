from __future__ import annotations

from datetime import datetime

from server.directory.schemas import UserRead
from server.schemas import B64u, Identifier, ReadModel, StrictModel


class ChallengeCreate(StrictModel):
    device_id: Identifier


class ChallengeRead(ReadModel):
    challenge_id: str
    challenge: str
    server: str
    expires_at: datetime


class SessionCreate(StrictModel):
    challenge_id: Identifier
    signature: B64u


class SessionRead(ReadModel):
    token: str
    expires_at: datetime
    device_id: str
    user: UserRead
