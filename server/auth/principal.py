"""The authenticated caller, and the role checks every service uses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from server.audit.log import OPERATOR_CLI, Actor
from server.devices.models import Device
from server.directory.models import User
from server.errors import PermissionDenied

ROLE_OFFICER = "officer"
ROLE_DISCLOSURE_OFFICER = "disclosure_officer"
ROLE_SECURITY_OFFICER = "security_officer"
ROLE_AUDITOR = "auditor"
ROLE_OPERATOR = "operator"
ALL_ROLES = frozenset(
    {ROLE_OFFICER, ROLE_DISCLOSURE_OFFICER, ROLE_SECURITY_OFFICER, ROLE_AUDITOR, ROLE_OPERATOR}
)


@dataclass(frozen=True)
class Principal:
    user: User
    device: Device
    session_id: str
    session_expires_at: datetime

    @property
    def actor(self) -> Actor:
        return Actor(user_id=self.user.id, device_id=self.device.id, nation=self.user.nationality)

    def has_role(self, role: str) -> bool:
        return role in self.user.roles

    @property
    def is_operator(self) -> bool:
        return self.has_role(ROLE_OPERATOR)


def check_operator(caller: Caller) -> None:
    if not caller.is_operator:
        raise PermissionDenied("only an operator may do this")


def check_manages_user(caller: Caller, user: User) -> None:
    """A nation vouches only for its own people: a security officer manages only their own
    nation's users. Operators manage accounts but cannot make a device trusted, since that
    takes the nation's authority key, which never reaches the server."""
    if caller.is_operator:
        return
    assert isinstance(caller, Principal)
    if not caller.has_role(ROLE_SECURITY_OFFICER):
        raise PermissionDenied("only a security officer or an operator may manage users")
    nation = caller.user.nationality
    if nation is None or nation != user.nationality:
        raise PermissionDenied(
            f"a security officer of {nation} manages only users of {nation}; "
            f"{user.username} is of {user.nationality or 'no nation'}",
            user=user.username,
        )


@dataclass(frozen=True)
class ConsoleOperator:
    """The operator at the server's own console (``attache-server``).

    Whoever can run the server's CLI can read its database anyway, so it acts as an operator;
    like any operator it still cannot make a device trusted without a nation's authority key.
    """

    @property
    def actor(self) -> Actor:
        return OPERATOR_CLI

    def has_role(self, role: str) -> bool:
        return role == ROLE_OPERATOR

    @property
    def is_operator(self) -> bool:
        return True


CONSOLE = ConsoleOperator()
Caller = Principal | ConsoleOperator
