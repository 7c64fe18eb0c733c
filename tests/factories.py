"""Test factories: nations with real authority keys, users, and devices enrolled the real way."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from clients.sdk import AttacheClient, Keystore, Messenger, certify_device, enroll
from protocol import keys
from server.auth.principal import CONSOLE
from server.devices.service import do_issue_enrolment_code
from server.directory import service as directory
from server.directory.models import User

PASSPHRASE = "correct horse battery staple"
FAST_KDF = keys.KdfParams.for_tests()


@dataclass
class Member:
    """A user with one enrolled, certified device and a signed-in client."""

    user: User
    keystore: Keystore
    device_id: str
    device_keys: keys.DeviceKeys
    client: AttacheClient
    # Whether its Messengers check the key directory (the SDK's default): see World.
    key_transparency: bool = True


@dataclass
class World:
    app: Any
    transport: httpx.ASGITransport
    homes: Path
    origin: str
    # False where the server integrates the audit log only when a test says so (tests/
    # conftest.py): a device enrolled there is never logged by itself, so members' Messengers
    # do not check the key directory unless a test sets one (test_transparency does).
    key_transparency: bool = True
    authorities: dict[str, keys.AuthorityKey] = field(default_factory=dict)
    # Each nation's first security officer made by ``member``: once a nation has one, only
    # its security officers set its users' clearances, so ``user`` creates through them.
    officers: dict[str, Member] = field(default_factory=dict)
    _clients: list[AttacheClient] = field(default_factory=list)

    async def close(self) -> None:
        for client in self._clients:
            await client.aclose()

    def client(self, token: str | None = None) -> AttacheClient:
        c = AttacheClient(self.origin, token=token, transport=self.transport)
        self._clients.append(c)
        return c

    async def _session(self) -> Any:
        return self.app.state.sessionmaker()

    async def nation(self, code: str, name: str | None = None) -> keys.AuthorityKey:
        authority = keys.AuthorityKey.generate()
        async with self.app.state.sessionmaker() as session, session.begin():
            catalog = await directory.load_catalog(session, self.app.state.catalog)
            await directory.do_create_nation(
                session,
                CONSOLE,
                catalog,
                code=code,
                name=name or code,
                authority_key=authority.public_bytes(),
            )
        self.authorities[code] = authority
        return authority

    async def user(
        self,
        username: str,
        nation: str | None,
        *,
        clearance: str | None = "NATO SECRET",
        roles: tuple[str, ...] = ("officer",),
    ) -> User:
        officer = self.officers.get(nation) if nation is not None else None
        if officer is not None and clearance is not None:
            await officer.client.create_user(
                username=username, nationality=nation, clearance=clearance, roles=list(roles)
            )
            async with self.app.state.sessionmaker() as session:
                created = await directory.access_user(session, username)
                session.expunge(created)
                return created
        async with self.app.state.sessionmaker() as session, session.begin():
            catalog = await directory.load_catalog(session, self.app.state.catalog)
            return await directory.do_create_user(
                session,
                CONSOLE,
                catalog,
                username=username,
                nationality=nation,
                clearance=clearance if nation else None,
                roles=roles,
            )

    async def code(self, user: User) -> str:
        async with self.app.state.sessionmaker() as session, session.begin():
            issued = await do_issue_enrolment_code(session, CONSOLE, self.app.state.settings, user)
            return issued.code

    def keystore(self, username: str) -> Keystore:
        return Keystore(self.homes / username, kdf=FAST_KDF)

    async def enrolled(self, user: User, *, certify: bool = True) -> Member:
        """Enrol a device for ``user`` through the API, certify it with the nation's authority
        key (unless told not to) and sign in."""
        store = self.keystore(user.username)
        result = await enroll(
            self.origin,
            username=user.username,
            code=await self.code(user),
            device_name=f"{user.username}-laptop",
            passphrase=PASSPHRASE,
            keystore=store,
            transport=self.transport,
        )
        device = result.device
        client = self.client()
        if certify and user.nationality is not None:
            device = await certify_device(
                client, user.nationality, self.authorities[user.nationality], device
            )
        device_keys = store.device_keys(PASSPHRASE)
        if device["status"] == "active":
            await client.login(device["id"], device_keys)
        return Member(user, store, device["id"], device_keys, client, self.key_transparency)

    async def member(
        self,
        username: str,
        nation: str | None,
        *,
        clearance: str | None = "NATO SECRET",
        roles: tuple[str, ...] = ("officer",),
    ) -> Member:
        member = await self.enrolled(
            await self.user(username, nation, clearance=clearance, roles=roles)
        )
        if nation is not None and "security_officer" in roles:
            self.officers.setdefault(nation, member)
        return member


async def messenger(member: Member) -> Messenger:
    """A Messenger over ``member``'s signed-in client (which stays the world's to close)."""
    return await Messenger.from_client(
        member.client,
        member.keystore,
        member.device_keys,
        owns_client=False,
        key_transparency=member.key_transparency,
    )


@dataclass
class Liaison:
    """The channel "liaison" (NATO SECRET), made by alice, with its three other members."""

    alice: Member  # USA, the sender
    bob: Member  # GBR
    chloe: Member  # FRA
    dora: Member  # USA, a disclosure officer


async def liaison(world: World) -> Liaison:
    for nation in ("USA", "GBR", "FRA"):
        await world.nation(nation)
    alice = await world.member("alice", "USA")
    bob = await world.member("bob", "GBR")
    chloe = await world.member("chloe", "FRA")
    dora = await world.member("dora", "USA", roles=("officer", "disclosure_officer"))
    await alice.client.create_channel("liaison", "NATO SECRET")
    for name in ("bob", "chloe", "dora"):
        await alice.client.add_member("liaison", name)
    return Liaison(alice, bob, chloe, dora)
