"""Clients hold the server to the coalition policy (issue 13, items 1 and 5): pinned at
enrolment, followed only through validly signed successors, and the only source of the nations'
authority keys and of the catalog. The server is played as a compromised one: it registers a
nation of its own, widens groups, rolls back, forks and forges policy versions; honest clients
seal nothing to what the policy does not admit. On SQLite and PostgreSQL.

The world: USA, GBR and FRA found the coalition "test" (threshold 2, the group DUO of GBR and
USA); alice (USA), bob (GBR) and chloe (FRA) enrol after, members of "liaison" (NATO SECRET).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import delete, func, select, update

from clients.cli import main
from clients.sdk import MessagingError, Messenger, enroll
from clients.sdk.coalition import NO_POLICY, PolicyRefused
from protocol import keys
from protocol.canonical import canonical_json
from protocol.catalog import Catalog
from protocol.coalition import (
    CoalitionPolicy,
    PolicyNation,
    SignedPolicy,
    build_policy,
    sign_policy,
)
from server.audit.models import AuditEvent
from server.auth.principal import CONSOLE
from server.channels.models import Audience, Message
from server.coalition import service as coalition
from server.coalition.models import CoalitionPolicyVersion
from server.devices import service as devices
from server.devices.models import Device
from server.directory import endpoints as directory_endpoints
from server.directory import service as directory
from server.errors import Conflict, InvalidInput
from tests.factories import PASSPHRASE, Member, World

TOML = (Path(__file__).resolve().parents[2] / "protocol" / "catalogs" / "default.toml").read_text(
    encoding="utf-8"
)
FOUNDERS = ("USA", "GBR", "FRA")


@dataclass
class Coalition:
    v1: CoalitionPolicy
    alice: Member
    bob: Member
    chloe: Member


def _signed(world: World, policy: CoalitionPolicy, *nations: str) -> SignedPolicy:
    return SignedPolicy(
        policy, tuple(sign_policy(policy, n, world.authorities[n]) for n in nations)
    )


def _successor(previous: CoalitionPolicy, **changes: Any) -> CoalitionPolicy:
    fields: dict[str, Any] = {
        "coalition": previous.coalition,
        "nations": list(previous.nations.values()),
        "groups": dict(previous.groups),
        "catalog_toml": previous.catalog_toml,
        "threshold": previous.threshold,
        "previous": previous,
    }
    return build_policy(**(fields | changes))


async def _publish(world: World, document: SignedPolicy) -> None:
    async with world.app.state.sessionmaker() as session, session.begin():
        await coalition.do_publish_policy(session, CONSOLE, document)


async def _serve(world: World, document: SignedPolicy) -> None:
    """What a compromised server does: store a version without checking it."""
    policy = document.policy
    async with world.app.state.sessionmaker() as session, session.begin():
        await session.execute(
            delete(CoalitionPolicyVersion).where(
                CoalitionPolicyVersion.policy_version == policy.policy_version
            )
        )
        session.add(
            CoalitionPolicyVersion(
                policy_version=policy.policy_version,
                coalition=policy.coalition,
                digest=policy.digest_b64u,
                document=canonical_json(document.to_json()).decode(),
            )
        )


async def _unpublish(world: World, *versions: int) -> None:
    async with world.app.state.sessionmaker() as session, session.begin():
        await session.execute(
            delete(CoalitionPolicyVersion).where(
                CoalitionPolicyVersion.policy_version.in_(versions)
            )
        )


async def _founded(world: World) -> Coalition:
    for nation in FOUNDERS:
        await world.nation(nation)
    v1 = build_policy(
        coalition="test",
        nations=[
            PolicyNation.of(code, code.title(), [world.authorities[code].public_bytes()])
            for code in FOUNDERS
        ],
        groups={"DUO": ["GBR", "USA"]},
        catalog_toml=TOML,
        threshold=2,
    )
    await _publish(world, _signed(world, v1, *FOUNDERS))
    alice = await world.member("alice", "USA")
    bob = await world.member("bob", "GBR")
    chloe = await world.member("chloe", "FRA")
    await alice.client.create_channel("liaison", "NATO SECRET")
    for name in ("bob", "chloe"):
        await alice.client.add_member("liaison", name)
    return Coalition(v1, alice, bob, chloe)


async def _messenger(member: Member) -> Messenger:
    return await Messenger.from_client(
        member.client, member.keystore, member.device_keys, owns_client=False
    )


async def _count(world: World, model: Any) -> int:
    async with world.app.state.sessionmaker() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def _audiences(world: World) -> dict[str, set[str]]:
    """Every audience stored, by id, with its devices."""
    async with world.app.state.sessionmaker() as session:
        audiences = (await session.execute(select(Audience))).scalars().all()
    return {str(a.id): set(a.header["devices"]) for a in audiences}


async def _audience_devices(world: World, *, besides: Any = ()) -> set[str]:
    """The devices of every audience stored (but those of ``besides``, ids)."""
    audiences = await _audiences(world)
    return {d for audience_id, ds in audiences.items() if audience_id not in besides for d in ds}


# --- pinning and following ------------------------------------------------------------------


async def test_enrolment_pins_the_founding_policy_and_takes_keys_from_it(world: World) -> None:
    c = await _founded(world)
    pinned = c.alice.keystore.policy_pin()
    assert pinned is not None
    founding, latest = pinned
    assert founding == c.v1.digest
    assert latest.policy.digest == c.v1.digest
    # The nations' keys are the policy's: nothing is pinned from GET /v1/nations.
    assert c.alice.keystore.pins() == {}
    am = await _messenger(c.alice)
    assert am.policy is not None
    assert am.policy.policy.policy_version == 1
    assert am.catalog.groups["DUO"] == frozenset({"GBR", "USA"})
    sent = await am.send("liaison", "hello", label="NATO SECRET//REL TO USA, GBR")
    assert sent.excluded == ()
    assert c.bob.device_id in sent.released_to
    (message,) = await (await _messenger(c.bob)).sync()
    assert message.verified
    assert message.text == "hello"


async def test_enrolment_checks_the_founding_digest_given(world: World) -> None:
    c = await _founded(world)
    user = await world.user("dan", "USA")
    store = world.keystore("dan")
    with pytest.raises(PolicyRefused, match=r"not \S+ as you were given"):
        await enroll(
            world.origin,
            username="dan",
            code=await world.code(user),
            device_name="dan-laptop",
            passphrase=PASSPHRASE,
            keystore=store,
            policy_digest=keys.b64u_encode(b"\x01" * 32),
            transport=world.transport,
        )
    assert not store.has_device()
    done = await enroll(
        world.origin,
        username="dan",
        code=await world.code(user),
        device_name="dan-laptop",
        passphrase=PASSPHRASE,
        keystore=store,
        policy_digest=c.v1.digest_b64u,
        transport=world.transport,
    )
    assert done.policy is not None
    assert done.policy.founding == c.v1.digest


async def test_later_versions_are_followed_only_through_valid_successors(world: World) -> None:
    c = await _founded(world)
    v2 = _successor(c.v1, groups={"DUO": ["FRA", "GBR", "USA"]})
    v3 = _successor(v2, threshold=3)
    await _publish(world, _signed(world, v2, "USA", "GBR"))
    await _publish(world, _signed(world, v3, "GBR", "FRA"))
    am = await _messenger(c.alice)
    assert am.policy is not None
    assert am.policy.policy.digest == v3.digest
    assert am.policy.previous_version == 1
    assert am.catalog.groups["DUO"] == frozenset({"FRA", "GBR", "USA"})
    assert _pinned(c.alice) == (c.v1.digest, v3.digest)

    # A version 4 adding ZZZ, signed by two nations where version 3 asks three.
    zzz = keys.AuthorityKey.generate()
    v4 = _successor(
        v3, nations=[*v3.nations.values(), PolicyNation.of("ZZZ", "Z", [zzz.public_bytes()])]
    )
    await _serve(world, _signed(world, v4, "USA", "GBR"))
    with pytest.raises(PolicyRefused) as refused:
        await _messenger(c.alice)
    assert "version 4 does not follow version 3 held here" in str(refused.value)
    assert "its threshold is 3" in str(refused.value)

    # Rolled back to version 2.
    await _unpublish(world, 3, 4)
    with pytest.raises(PolicyRefused, match="version 2, older than version 3 held here"):
        await _messenger(c.alice)

    # Another version 3, validly signed (a fork shown to this client).
    other = _successor(v2, groups={})
    await _serve(world, _signed(world, other, "USA", "GBR"))
    with pytest.raises(PolicyRefused, match="a fork is refused"):
        await _messenger(c.alice)

    # No policy at all: no falling back to the server's directory.
    await _unpublish(world, 1, 2, 3)
    with pytest.raises(PolicyRefused, match="the server publishes none"):
        await _messenger(c.alice)
    assert _pinned(c.alice) == (c.v1.digest, v3.digest)


def _pinned(member: Member) -> tuple[bytes, bytes] | None:
    """The founding digest and the latest version's digest pinned in ``member``'s home."""
    pinned = member.keystore.policy_pin()
    return None if pinned is None else (pinned[0], pinned[1].policy.digest)


async def test_without_a_policy_trust_on_first_use_is_said_then_the_first_is_pinned(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    for nation in FOUNDERS:
        await world.nation(nation)
    alice = await world.member("alice", "USA")
    assert alice.keystore.policy_pin() is None
    with caplog.at_level(logging.WARNING, logger="attache.sdk"):
        am = await _messenger(alice)
    assert am.policy is None
    assert NO_POLICY in caplog.text
    v1 = build_policy(
        coalition="test",
        nations=[
            PolicyNation.of(code, code, [world.authorities[code].public_bytes()])
            for code in FOUNDERS
        ],
        groups={},
        catalog_toml=TOML,
        threshold=2,
    )
    await _publish(world, _signed(world, v1, *FOUNDERS))
    am = await _messenger(alice)
    assert am.policy is not None
    assert am.policy.pinned_now
    assert _pinned(alice) == (v1.digest, v1.digest)


# --- the malicious server -------------------------------------------------------------------


def _ignoring_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server compromised: it decides with its own directory and catalog, registers
    nations and groups no policy version lists and takes certificates made with keys no
    version lists, as an honest one no longer does (an honest server's refusals are
    tests/server/test_coalition.py's)."""

    async def none(_session: object) -> None:
        return None

    monkeypatch.setattr(directory, "policy_in_force", none)
    monkeypatch.setattr(directory_endpoints, "policy_in_force", none)
    monkeypatch.setattr(devices, "policy_in_force", none)


async def test_a_server_made_nation_in_a_widened_group_gets_no_key(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = await _founded(world)
    _ignoring_the_policy(monkeypatch)
    # The server: ZZZ added to its catalog's nations and to NATO, registered with a key of the
    # server's own making, and a ZZZ person enrolled, certified with it and made a member.
    widened = TOML.replace('"KOR", "UKR",', '"KOR", "UKR", "ZZZ",', 1).replace(
        "NATO = [\n", 'NATO = [\n  "ZZZ",\n', 1
    )
    assert widened.count("ZZZ") == 2
    world.app.state.catalog = Catalog.from_toml(widened)
    await world.nation("ZZZ")
    zed = await world.member("zed", "ZZZ")
    await c.alice.client.add_member("liaison", "zed")
    nations = {n["code"] for n in await c.alice.client.nations()}
    assert "ZZZ" in nations  # the server says so; the client does not listen

    am = await _messenger(c.alice)
    assert "ZZZ" not in am.catalog.nations
    assert "ZZZ" not in am.catalog.groups["NATO"]
    with pytest.raises(MessagingError) as refused:
        await am.send("liaison", "for NATO", label="NATO SECRET//REL TO NATO")
    said = str(refused.value)
    assert said.startswith("not sent: the server requires devices this client does not vouch")
    assert f"device {zed.device_id} of zed" in said
    assert "nation ZZZ, which coalition policy version 1 does not list" in said
    assert zed.device_id not in await _audience_devices(world)
    assert await _count(world, Message) == 0

    # A key the server made for a founding nation counts no more than ZZZ's.
    forger = keys.AuthorityKey.generate()
    now = datetime.now(UTC)
    forged = keys.issue_certificate(
        forger,
        device_id=c.chloe.device_id,
        user_id=c.chloe.user.id,
        username="chloe",
        nationality="FRA",
        clearance={"policy": "NATO", "level": "SECRET", "categories": {}},
        device_keys=c.chloe.device_keys.public(),
        issued_at=now,
        expires_at=now + timedelta(days=1),
    )
    async with world.app.state.sessionmaker() as session, session.begin():
        await session.execute(
            update(Device)
            .where(Device.id == c.chloe.device_id)
            .values(certificate=forged.to_json())
        )
    before = await _audiences(world)  # bob's and chloe's, made for the refused send above
    am = await _messenger(c.alice)
    with pytest.raises(MessagingError) as refused:
        await am.send("liaison", "for NATO", label="NATO SECRET//REL TO NATO")
    assert "which coalition policy version 1 does not list for FRA" in str(refused.value)
    devices = await _audience_devices(world, besides=before)
    assert c.bob.device_id in devices
    assert zed.device_id not in devices
    assert c.chloe.device_id not in devices
    assert await _count(world, Message) == 0


async def test_a_recipient_eligible_only_through_a_widened_group_is_not_sealed_to(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = await _founded(world)
    _ignoring_the_policy(monkeypatch)
    # The policy's DUO is GBR and USA; the server's directory widens it to FRA.
    async with world.app.state.sessionmaker() as session, session.begin():
        await directory.do_create_group(
            session, CONSOLE, world.app.state.catalog, name="DUO", members=["FRA", "GBR", "USA"]
        )
    am = await _messenger(c.alice)
    sent = await am.send("liaison", "to two", label="NATO SECRET//REL TO USA, GBR")
    assert c.chloe.device_id not in sent.released_to
    with pytest.raises(MessagingError) as refused:
        await am.send("liaison", "to DUO", label="NATO SECRET//REL TO DUO")
    said = str(refused.value)
    assert said.startswith("not sent: the server requires devices not eligible for")
    assert "under coalition policy version 1" in said
    assert f"device {c.chloe.device_id} of chloe (FRA): nationality FRA not in" in said
    assert c.chloe.device_id not in await _audience_devices(world)
    assert await _count(world, Message) == 1


# --- attache policy -------------------------------------------------------------------------


async def _cli(member: Member, *args: str) -> Result:
    env = {"ATTACHE_HOME": str(member.keystore.home), "NO_COLOR": "1"}
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, main, list(args), env=env, catch_exceptions=False)


async def test_enroll_pins_the_policy(world: World, live: str, tmp_path: Path) -> None:
    c = await _founded(world)
    user = await world.user("dan", "USA")
    runner = CliRunner()

    async def enrol(home: Path, digest: str) -> Result:
        args = ["enroll", "--server", live, "--user", "dan", "--code", await world.code(user)]
        env = {"ATTACHE_HOME": str(home), "ATTACHE_PASSPHRASE": PASSPHRASE, "NO_COLOR": "1"}
        return await asyncio.to_thread(
            runner.invoke, main, [*args, "--policy", digest], env=env, catch_exceptions=False
        )

    other = keys.b64u_encode(b"\x01" * 32)
    refused = await enrol(tmp_path / "first", other)
    assert refused.exit_code == 1
    assert f"not {other} as you were given; refusing it" in refused.output
    done = await enrol(tmp_path / "dan", c.v1.digest_b64u)
    assert done.exit_code == 0, done.output
    assert f"pinned coalition policy test version 1, founding digest {c.v1.digest_b64u}" in (
        done.stdout
    )
    key_id = world.authorities["FRA"].key_id
    assert f"pinned FRA authority key {key_id}" in done.stdout


async def test_policy_show_and_diff(world: World, live: str) -> None:
    c = await _founded(world)
    shown = await _cli(c.alice, "policy", "show")
    assert shown.exit_code == 0, shown.output
    out = shown.stdout
    assert "coalition test, policy version 1" in out
    assert f"founding digest: {c.v1.digest_b64u}" in out
    assert "pinned here: version 1, the server's latest" in out
    assert "threshold: 2 of 3 nations sign the next version" in out
    key_id = world.authorities["GBR"].key_id
    assert f"GBR  Gbr  (authority keys {key_id})" in out
    assert "DUO (policy): GBR, USA" in out

    dan = keys.AuthorityKey.generate()
    v2 = _successor(
        c.v1,
        nations=[
            *c.v1.nations.values(),
            PolicyNation.of("DEU", "Germany", [dan.public_bytes()]),
        ],
        groups={"DUO": ["DEU", "GBR", "USA"]},
        catalog_toml=TOML.replace('FVEY = ["AUS",', 'FVEY = ["AUS", "DEU",', 1),
    )
    await _publish(world, _signed(world, v2, "USA", "FRA"))
    shown = await _cli(c.alice, "policy", "show")
    assert shown.exit_code == 0, shown.output
    assert "pinned here: version 1; the server's version 2 follows it" in shown.stdout
    diff = await _cli(c.alice, "policy", "diff", "1", "2")
    assert diff.exit_code == 0, diff.output
    lines = diff.stdout.splitlines()
    assert lines[0] == "coalition policy version 1 -> version 2:"
    assert f"  + nation DEU (Germany), keys {dan.key_id}" in lines
    assert "  ~ group DUO: +DEU" in lines
    assert "  ~ catalog:" in lines
    assert any(line.startswith('  +FVEY = ["AUS", "DEU",') for line in lines)
    same = await _cli(c.alice, "policy", "diff", "2", "2")
    assert same.stdout.splitlines()[1:] == ["  no change"]

    missing = await _cli(c.alice, "policy", "diff", "1", "7")
    assert missing.exit_code == 1
    assert "there is no coalition policy version 7: the latest is version 2" in missing.output
    assert "Traceback" not in missing.output
    await _unpublish(world, 2)
    rolled = await _cli(c.alice, "policy", "show")
    assert rolled.exit_code == 1
    assert "older than version 2 held here" in rolled.output


# --- the honest server decides under the policy in force --------------------------------------


async def test_the_server_decides_with_the_policy_in_force_and_names_its_version(
    world: World,
) -> None:
    # Before any policy, the directory's own group counts; once one is published, only the
    # policy's groups do.
    async with world.app.state.sessionmaker() as session, session.begin():
        await directory.do_create_group(
            session, CONSOLE, world.app.state.catalog, name="TRIO", members=list(FOUNDERS)
        )
    c = await _founded(world)
    served = await c.alice.client.catalog()
    assert served["version"] == "test.policy.1"
    assert served["toml"] == TOML
    assert served["groups"] == {"DUO": ["GBR", "USA"]}
    assert sorted(served["nations"]) == sorted(FOUNDERS)
    groups = {g["name"]: g for g in await c.alice.client.groups()}
    assert "TRIO" not in groups
    assert groups["DUO"]["members"] == ["GBR", "USA"]
    assert groups["DUO"]["source"] == "policy"

    am = await _messenger(c.alice)
    sent = await am.send("liaison", "to two", label="NATO SECRET//REL TO DUO")
    assert sorted(sent.released_to) == sorted([c.alice.device_id, c.bob.device_id])
    assert await _submit_catalog(world, sent.message_id) == "test.policy.1"

    # Version 2 widens DUO to FRA: the next decision follows it, and says so.
    v2 = _successor(c.v1, groups={"DUO": ["FRA", "GBR", "USA"]})
    await _publish(world, _signed(world, v2, "USA", "GBR"))
    am = await _messenger(c.alice)
    sent = await am.send("liaison", "to three", label="NATO SECRET//REL TO DUO")
    assert c.chloe.device_id in sent.released_to
    assert await _submit_catalog(world, sent.message_id) == "test.policy.2"
    assert (await c.alice.client.catalog())["version"] == "test.policy.2"


async def test_the_honest_server_registers_only_what_the_policy_lists(world: World) -> None:
    c = await _founded(world)
    stranger = keys.AuthorityKey.generate()

    async def add_nation(code: str, key: keys.AuthorityKey) -> None:
        async with world.app.state.sessionmaker() as session, session.begin():
            catalog = await directory.load_catalog(session, world.app.state.catalog)
            await directory.do_create_nation(
                session, CONSOLE, catalog, code=code, name=code, authority_key=key.public_bytes()
            )

    with pytest.raises(InvalidInput) as refused:
        await add_nation("DEU", stranger)
    assert str(refused.value) == (
        "nation DEU is not in the coalition policy (version 1): the nations admit it by "
        "signing a version that lists it (attache policy propose)"
    )
    # Listed by version 2, but with another key than the one offered.
    deu = keys.AuthorityKey.generate()
    v2 = _successor(
        c.v1,
        nations=[*c.v1.nations.values(), PolicyNation.of("DEU", "Germany", [deu.public_bytes()])],
    )
    await _publish(world, _signed(world, v2, "USA", "FRA"))
    with pytest.raises(InvalidInput) as refused:
        await add_nation("DEU", stranger)
    assert str(refused.value) == (
        f"authority key {keys.authority_key_id(stranger.public_bytes())} is not one the "
        "coalition policy (version 2) lists for DEU"
    )
    await add_nation("DEU", deu)
    assert "DEU" in {n["code"] for n in await c.alice.client.nations()}

    async def add_group(name: str, members: list[str]) -> None:
        async with world.app.state.sessionmaker() as session, session.begin():
            catalog = await directory.load_catalog(session, world.app.state.catalog)
            await directory.do_create_group(session, CONSOLE, catalog, name=name, members=members)

    with pytest.raises(Conflict) as conflict:
        await add_group("PAIR", ["FRA", "GBR"])
    assert str(conflict.value) == (
        "partner groups are set by the coalition policy (version 2): propose a version with "
        "group PAIR (attache policy propose)"
    )
    assert "PAIR" not in {g["name"] for g in await c.alice.client.groups()}


async def _submit_catalog(world: World, message_id: str) -> str:
    """The catalog version the submit's audit event records for ``message_id``."""
    async with world.app.state.sessionmaker() as session:
        stmt = select(AuditEvent).where(
            AuditEvent.action == "message.submit", AuditEvent.object_id == message_id
        )
        event = (await session.execute(stmt)).scalar_one()
    assert event.decision == "allow"
    return str(event.details["catalog"])
