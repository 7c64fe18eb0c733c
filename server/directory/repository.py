"""SQL for the directory. Repositories never commit."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.directory.models import Nation, Office, PartnerGroup, PartnerGroupMember, User


async def get_nation(session: AsyncSession, code: str) -> Nation | None:
    return await session.get(Nation, code)


async def list_nations(session: AsyncSession) -> Sequence[Nation]:
    return (await session.execute(select(Nation).order_by(Nation.code))).scalars().all()


async def get_group(session: AsyncSession, name: str) -> PartnerGroup | None:
    return await session.get(PartnerGroup, name)


async def list_groups(session: AsyncSession) -> dict[str, tuple[PartnerGroup, list[str]]]:
    groups = (await session.execute(select(PartnerGroup))).scalars().all()
    members: defaultdict[str, list[str]] = defaultdict(list)
    rows = await session.execute(
        select(PartnerGroupMember.group_name, PartnerGroupMember.nation_code).order_by(
            PartnerGroupMember.nation_code
        )
    )
    for group_name, nation_code in rows:
        members[group_name].append(nation_code)
    return {g.name: (g, members[g.name]) for g in sorted(groups, key=lambda g: g.name)}


async def get_office(session: AsyncSession, office_id: str) -> Office | None:
    return await session.get(Office, office_id)


async def find_office(session: AsyncSession, nation: str, name: str) -> Office | None:
    stmt = select(Office).where(Office.nation_code == nation, Office.name == name)
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_offices(session: AsyncSession, nation: str | None = None) -> Sequence[Office]:
    stmt = select(Office).order_by(Office.nation_code, Office.name)
    if nation is not None:
        stmt = stmt.where(Office.nation_code == nation)
    return (await session.execute(stmt)).scalars().all()


async def get_user(session: AsyncSession, user_id: str) -> User | None:
    return await session.get(User, user_id)


async def get_user_by_username(session: AsyncSession, username: str) -> User | None:
    stmt = select(User).where(User.username == username)
    return (await session.execute(stmt)).scalar_one_or_none()


async def holders_of_role(session: AsyncSession, nation: str, role: str) -> list[str]:
    """Usernames of the users of ``nation``, enabled or not, who hold ``role``. Roles are a
    JSON list, filtered here rather than in SQL (a nation has a few hundred users at most)."""
    stmt = select(User.username, User.roles).where(User.nationality == nation)
    return sorted(name for name, roles in await session.execute(stmt) if role in (roles or []))


async def list_users(session: AsyncSession, nation: str | None = None) -> Sequence[User]:
    stmt = select(User).order_by(User.username)
    if nation is not None:
        stmt = stmt.where(User.nationality == nation)
    return (await session.execute(stmt)).scalars().all()
