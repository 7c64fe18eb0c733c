"""Directory actions: nations, partner groups, offices, users, clearances.

Every change writes its audit event in the same transaction.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from sqlalchemy.ext.asyncio import AsyncSession

from protocol import keys
from protocol.catalog import Catalog, CatalogError
from protocol.labels import Clearance, LabelError, parse_clearance, render_clearance
from server.audit import log as audit
from server.audit.refusals import record_refusal
from server.auth.principal import (
    ALL_ROLES,
    ROLE_AUDITOR,
    ROLE_OPERATOR,
    ROLE_SECURITY_OFFICER,
    Caller,
    check_manages_user,
    check_operator,
)
from server.coalition.service import policy_in_force
from server.db.changes import CATALOG, kept
from server.directory import repository as repo
from server.directory.models import Nation, Office, PartnerGroup, PartnerGroupMember, User
from server.errors import Conflict, InvalidInput, NotFound, PermissionDenied

# Roles a user without a nationality may hold: the server's own staff, who are never
# cleared for labelled content.
NATIONLESS_ROLES = frozenset({ROLE_OPERATOR, ROLE_AUDITOR})


# --- catalog ---------------------------------------------------------------------------------


async def load_catalog(session: AsyncSession, base: Catalog) -> Catalog:
    """The catalog the server decides with.

    Once a coalition policy is published, the latest version's catalog (its TOML, nations and
    groups; ``server.coalition.service.policy_in_force``), whose ``version`` names the policy
    version: what the directory holds beyond it (a nation or group no version lists) does not
    exist for a decision, as it does not for a client. Before that, the shipped catalog
    extended with the nations and groups of this directory.

    Kept in memory (its ``version`` names what it was built from, which cached decisions are
    keyed on), and read again only when this process changed a nation, a group or the policy,
    or after ``CATALOG_MAX_AGE`` seconds, which is how a nation, group or policy version added
    at the console (``attache-server``, another process) reaches a running server.
    """
    cache = kept(session, "catalog", 16)
    hit: tuple[float, Catalog] | None = cache.get(id(base)) if cache is not None else None
    now = time.monotonic()
    if hit is not None and now - hit[0] < CATALOG_MAX_AGE:
        return hit[1]
    version = cache.log.version if cache is not None else 0
    in_force = await policy_in_force(session)
    if in_force is not None:
        catalog = in_force.catalog
    else:
        nations = [n.code for n in await repo.list_nations(session)]
        groups = {name: members for name, (_, members) in (await repo.list_groups(session)).items()}
        catalog = base.with_directory(nations, groups)
    if cache is not None:
        cache.put(id(base), version, frozenset({CATALOG}), (now, catalog))
    return catalog


CATALOG_MAX_AGE = 1.0


def check_clearance(text: str, catalog: Catalog) -> Clearance:
    try:
        return parse_clearance(text, catalog)
    except LabelError as exc:
        raise InvalidInput(f"clearance {text!r}: {exc}", field="clearance") from exc


def clearance_banner(user: User, catalog: Catalog) -> str | None:
    if user.clearance is None:
        return None
    try:
        return render_clearance(Clearance.from_canonical(user.clearance, catalog), catalog)
    except LabelError:
        # A clearance the current catalog no longer knows: shown raw, and denied by decide().
        return f"(unknown clearance {user.clearance})"


# --- nations ---------------------------------------------------------------------------------


async def do_create_nation(
    session: AsyncSession,
    caller: Caller,
    catalog: Catalog,
    *,
    code: str,
    name: str,
    authority_key: bytes,
) -> Nation:
    """Register a nation with the public half of its enrolment authority key. Operator only."""
    check_operator(caller)
    if code not in catalog.nations:
        raise InvalidInput(
            f"unknown nation {code!r}: the label catalog does not list it", field="code"
        )
    try:
        keys.load_signing_public_key(authority_key)
        key_id = keys.authority_key_id(authority_key)
    except ValueError as exc:
        raise InvalidInput(
            f"the authority key is not an Ed25519 public key: {exc}", field="authority_key"
        ) from exc
    in_force = await policy_in_force(session)
    if in_force is not None:
        # Under a coalition policy a nation exists only as a version lists it: the directory
        # registers the nations and keys the nations signed, nothing else.
        version = in_force.policy.policy_version
        listed = in_force.policy.nations.get(code)
        if listed is None:
            raise InvalidInput(
                f"nation {code} is not in the coalition policy (version {version}): the "
                "nations admit it by signing a version that lists it (attache policy propose)",
                field="code",
            )
        if key_id not in listed.authority_keys:
            raise InvalidInput(
                f"authority key {key_id} is not one the coalition policy (version {version}) "
                f"lists for {code}",
                field="authority_key",
            )
    if await repo.get_nation(session, code) is not None:
        raise Conflict(f"nation {code} is already registered", nation=code)
    nation = Nation(code=code, name=name, authority_key=authority_key, authority_key_id=key_id)
    session.add(nation)
    audit.record(
        session,
        actor=caller.actor,
        action="nation.create",
        object_type="nation",
        object_id=code,
        subject_nation=code,
        details={"name": name, "authority_key_id": key_id},
    )
    await session.flush()
    return nation


async def access_nation(session: AsyncSession, code: str) -> Nation:
    nation = await repo.get_nation(session, code)
    if nation is None:
        raise NotFound(f"unknown nation {code!r}", nation=code)
    return nation


# --- partner groups --------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupView:
    name: str
    members: list[str]
    description: str
    source: str


async def list_groups(session: AsyncSession, catalog: Catalog) -> list[GroupView]:
    """Groups the catalog ships and groups this directory added, one list; under a coalition
    policy, the policy's groups (``catalog`` is then its catalog)."""
    if await policy_in_force(session) is not None:
        return [
            GroupView(name, sorted(catalog.groups[name]), "", "policy")
            for name in sorted(catalog.groups)
        ]
    directory = await repo.list_groups(session)
    views = [
        GroupView(name, sorted(catalog.groups[name]), "", "catalog")
        for name in sorted(catalog.groups)
        if name not in directory
    ]
    views += [
        GroupView(name, sorted(members), group.description, "directory")
        for name, (group, members) in directory.items()
    ]
    return sorted(views, key=lambda v: v.name)


async def do_create_group(
    session: AsyncSession,
    caller: Caller,
    catalog: Catalog,
    *,
    name: str,
    members: Sequence[str],
    description: str = "",
) -> GroupView:
    """Add a partner group usable in REL TO. Operator only; members must be known nations.
    Under a coalition policy, groups are the policy's: refused."""
    check_operator(caller)
    in_force = await policy_in_force(session)
    if in_force is not None:
        raise Conflict(
            f"partner groups are set by the coalition policy (version "
            f"{in_force.policy.policy_version}): propose a version with group {name} "
            "(attache policy propose)",
            group=name,
        )
    if name in catalog.groups or name in catalog.nations:
        raise Conflict(f"{name} already names a nation or partner group", group=name)
    unknown = sorted(set(members) - set(catalog.nations))
    if unknown:
        raise InvalidInput(
            f"unknown nation {unknown[0]!r} in group {name}", field="members", unknown=unknown
        )
    try:
        catalog.with_directory([], {name: members})
    except CatalogError as exc:
        raise InvalidInput(str(exc), field="name") from exc
    session.add(PartnerGroup(name=name, description=description))
    await session.flush()
    session.add_all(
        PartnerGroupMember(group_name=name, nation_code=m) for m in sorted(set(members))
    )
    audit.record(
        session,
        actor=caller.actor,
        action="group.create",
        object_type="group",
        object_id=name,
        details={"members": sorted(set(members)), "description": description},
    )
    await session.flush()
    return GroupView(name, sorted(set(members)), description, "directory")


# --- offices ---------------------------------------------------------------------------------


async def do_create_office(
    session: AsyncSession, caller: Caller, *, nation: str, name: str, host: str = ""
) -> Office:
    """Open a liaison office of a registered nation. Operator only."""
    check_operator(caller)
    await access_nation(session, nation)
    if await repo.find_office(session, nation, name) is not None:
        raise Conflict(f"{nation} already has an office named {name!r}", office=name)
    office = Office(nation_code=nation, name=name, host=host)
    session.add(office)
    await session.flush()
    audit.record(
        session,
        actor=caller.actor,
        action="office.create",
        object_type="office",
        object_id=office.id,
        subject_nation=nation,
        details={"name": name, "host": host},
    )
    return office


async def access_office(session: AsyncSession, office_id: str) -> Office:
    office = await repo.get_office(session, office_id)
    if office is None:
        raise NotFound(f"unknown office {office_id!r}", office=office_id)
    return office


# --- users -----------------------------------------------------------------------------------


def check_roles(roles: Sequence[str], nationality: str | None) -> list[str]:
    unknown = sorted(set(roles) - ALL_ROLES)
    if unknown:
        raise InvalidInput(
            f"unknown role {unknown[0]!r}; roles are {', '.join(sorted(ALL_ROLES))}",
            field="roles",
        )
    if nationality is None and not set(roles) <= NATIONLESS_ROLES:
        raise InvalidInput(
            "a user without a nationality may only be an operator or an auditor", field="roles"
        )
    if nationality is not None and ROLE_OPERATOR in roles:
        raise InvalidInput(
            "operators run the server for every nation and hold no nationality", field="roles"
        )
    return sorted(set(roles))


async def check_manages(
    session: AsyncSession,
    caller: Caller,
    user: User,
    *,
    action: str,
    object_type: str = "user",
    object_id: str | None = None,
) -> None:
    """``check_manages_user``, with a refusal audited as a denied ``action`` on the user (or
    on ``object_type`` ``object_id`` of theirs) and kept (``keep_changes``) although the
    request fails: call it before changing anything."""
    try:
        check_manages_user(caller, user)
    except PermissionDenied as exc:
        await _refuse(
            session,
            caller,
            user,
            exc,
            action=action,
            object_type=object_type,
            object_id=object_id,
        )


async def _refuse(
    session: AsyncSession,
    caller: Caller,
    user: User,
    refusal: PermissionDenied,
    *,
    action: str,
    object_type: str = "user",
    object_id: str | None = None,
) -> NoReturn:
    """Audit ``refusal`` as a denied ``action`` on ``user`` and raise it, kept."""
    await record_refusal(
        session,
        actor=caller.actor,
        action=action,
        object_type=object_type,
        # A user not yet created has no id: the username names them.
        object_id=object_id or user.id or user.username,
        reasons=[refusal.detail],
        subject_nation=user.nationality,
    )
    raise PermissionDenied(refusal.detail, keep_changes=True, **refusal.fields) from None


async def check_sets_clearance(
    session: AsyncSession, caller: Caller, user: User, *, action: str
) -> dict[str, Any]:
    """Clearances come from nations: once a nation has a security officer (a user of it who
    holds the role, enabled or not), only its security officers set its users' clearances
    (``check_manages`` already keeps other nations' out). Until then an operator may, to
    bootstrap the nation's first security officer.

    Returns what the change's audit event adds: ``{"bootstrap": true}`` for an operator's
    bootstrap. A refusal is audited and kept: call this after ``check_manages`` and before
    changing anything.
    """
    if not caller.is_operator or user.nationality is None:
        return {}
    nation = user.nationality
    officers = await repo.holders_of_role(session, nation, ROLE_SECURITY_OFFICER)
    if not officers:
        return {"bootstrap": True}
    refusal = PermissionDenied(
        f"{nation} has a security officer ({', '.join(officers)}), so only {nation}'s security "
        f"officers set the clearances of its users; an operator sets a clearance only to "
        "bootstrap a nation's first security officer",
        nation=nation,
        security_officers=officers,
    )
    await _refuse(session, caller, user, refusal, action=action)


async def check_keeps_security_officer(
    session: AsyncSession, caller: Caller, user: User, roles: Sequence[str]
) -> None:
    """An operator may not take the role away from a nation's only security officer: that
    would give the operator back the power to set the nation's clearances
    (``check_sets_clearance``). The nation's own security officers may."""
    if (
        not caller.is_operator
        or user.nationality is None
        or ROLE_SECURITY_OFFICER not in user.roles
        or ROLE_SECURITY_OFFICER in roles
    ):
        return
    nation = user.nationality
    if await repo.holders_of_role(session, nation, ROLE_SECURITY_OFFICER) != [user.username]:
        return
    refusal = PermissionDenied(
        f"{user.username} is {nation}'s only security officer; only {nation}'s security "
        "officers change that, since its security officers alone set its clearances",
        nation=nation,
    )
    await _refuse(session, caller, user, refusal, action="user.update")


async def access_user(session: AsyncSession, user_id: str) -> User:
    user = await repo.get_user(session, user_id)
    if user is None:
        user = await repo.get_user_by_username(session, user_id)
    if user is None:
        raise NotFound(f"unknown user {user_id!r}", user=user_id)
    return user


async def do_create_user(
    session: AsyncSession,
    caller: Caller,
    catalog: Catalog,
    *,
    username: str,
    display_name: str = "",
    nationality: str | None,
    office_id: str | None = None,
    clearance: str | None = None,
    roles: Sequence[str] = ("officer",),
) -> User:
    """Create a user. Operators create anyone; a security officer only their own nation's. A
    clearance given is subject to ``check_sets_clearance``."""
    if nationality is not None:
        await access_nation(session, nationality)
    candidate = User(username=username, nationality=nationality)
    await check_manages(session, caller, candidate, action="user.create")
    authority: dict[str, Any] = {}
    if clearance is not None:
        authority = await check_sets_clearance(session, caller, candidate, action="user.create")
    checked_roles = check_roles(roles, nationality)
    if office_id is not None:
        office = await access_office(session, office_id)
        if office.nation_code != nationality:
            raise InvalidInput(
                f"office {office.name!r} belongs to {office.nation_code}, not {nationality}",
                field="office_id",
            )
    cleared: Clearance | None = None
    if clearance is not None:
        if nationality is None:
            raise InvalidInput("a user without a nationality cannot hold a clearance")
        cleared = check_clearance(clearance, catalog)
    if await repo.get_user_by_username(session, username) is not None:
        raise Conflict(f"username {username!r} is taken", username=username)
    user = User(
        username=username,
        display_name=display_name,
        nationality=nationality,
        office_id=office_id,
        clearance=cleared.canonical() if cleared else None,
        roles=checked_roles,
    )
    session.add(user)
    await session.flush()
    audit.record(
        session,
        actor=caller.actor,
        action="user.create",
        object_type="user",
        object_id=user.id,
        subject_nation=nationality,
        details={
            "username": username,
            "roles": checked_roles,
            "office_id": office_id,
            "clearance": user.clearance,
            **authority,
        },
    )
    return user


async def do_update_user(
    session: AsyncSession,
    caller: Caller,
    user: User,
    *,
    display_name: str | None = None,
    office_id: str | None = None,
    roles: Sequence[str] | None = None,
    active: bool | None = None,
) -> User:
    """Change a user's name, office, roles or active flag; old and new values are audited."""
    await check_manages(session, caller, user, action="user.update")
    changes: dict[str, Any] = {}
    if display_name is not None and display_name != user.display_name:
        changes["display_name"] = [user.display_name, display_name]
        user.display_name = display_name
    if office_id is not None and office_id != user.office_id:
        office = await access_office(session, office_id)
        if office.nation_code != user.nationality:
            raise InvalidInput(
                f"office {office.name!r} belongs to {office.nation_code}, not {user.nationality}",
                field="office_id",
            )
        changes["office_id"] = [user.office_id, office_id]
        user.office_id = office_id
    if roles is not None:
        checked = check_roles(roles, user.nationality)
        await check_keeps_security_officer(session, caller, user, checked)
        if checked != sorted(user.roles):
            changes["roles"] = [sorted(user.roles), checked]
            user.roles = checked
    if active is not None and active != user.active:
        changes["active"] = [user.active, active]
        user.active = active
    if changes:
        audit.record(
            session,
            actor=caller.actor,
            action="user.update",
            object_type="user",
            object_id=user.id,
            subject_nation=user.nationality,
            details={"changes": changes},
        )
        await session.flush()
    return user
