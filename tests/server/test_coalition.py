"""The coalition policy on the server: attache-server policy publish checks the chain before
storing, GET /v1/policy and /v1/policy/{version} serve what was stored; on both databases."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from clients.sdk import ApiError
from protocol.catalog import load_default_catalog
from protocol.coalition import (
    CoalitionPolicy,
    PolicyNation,
    SignedPolicy,
    build_policy,
    sign_policy,
    verify_chain,
)
from protocol.keys import AuthorityKey
from server.audit.integrator import integrate
from server.audit.models import AuditEvent
from server.auth.principal import CONSOLE
from server.cli import main
from server.coalition import service
from server.db.engine import create_engine, create_sessionmaker
from server.errors import Conflict, InvalidInput, PermissionDenied
from tests.factories import Member, World
from tests.race import Call, assert_no_server_error, race

TOML = (Path(__file__).resolve().parents[2] / "protocol" / "catalogs" / "default.toml").read_text(
    encoding="utf-8"
)
KEYS = {code: AuthorityKey.generate() for code in ("USA", "GBR", "FRA", "ZZZ")}


def founding() -> CoalitionPolicy:
    return build_policy(
        coalition="test",
        nations=[
            PolicyNation.of(code, code.title(), [KEYS[code].public_bytes()])
            for code in ("USA", "GBR", "FRA")
        ],
        groups={},
        catalog_toml=TOML,
        threshold=2,
    )


def successor(previous: CoalitionPolicy, **changes: Any) -> CoalitionPolicy:
    fields: dict[str, Any] = {
        "coalition": previous.coalition,
        "nations": list(previous.nations.values()),
        "groups": dict(previous.groups),
        "catalog_toml": previous.catalog_toml,
        "threshold": previous.threshold,
        "previous": previous,
    }
    return build_policy(**(fields | changes))


def signed(policy: CoalitionPolicy, *nations: str) -> SignedPolicy:
    return SignedPolicy(policy, tuple(sign_policy(policy, n, KEYS[n]) for n in nations))


V1 = founding()
V2 = successor(V1, groups={"DUO": ["GBR", "USA"]})
ZZZ = successor(
    V1, nations=[*V1.nations.values(), PolicyNation.of("ZZZ", "Z", [KEYS["ZZZ"].public_bytes()])]
)


async def _publish(database_url: str, document: SignedPolicy) -> service.Published:
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            try:
                published = await service.do_publish_policy(session, CONSOLE, document)
            except InvalidInput as exc:
                await (session.commit() if exc.keep_changes else session.rollback())
                raise
            await session.commit()
            return published
    finally:
        await engine.dispose()


async def _events(database_url: str, action: str) -> list[AuditEvent]:
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            stmt = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
            return list((await session.execute(stmt)).scalars().all())
    finally:
        await engine.dispose()


async def test_served_as_published(http: httpx.AsyncClient, database_url: str) -> None:
    missing = await http.get("/v1/policy")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert "no coalition policy is published" in missing.json()["detail"]

    first = await _publish(database_url, signed(V1, "USA", "GBR", "FRA"))
    assert first.signers == ("FRA", "GBR", "USA")
    await _publish(database_url, signed(V2, "USA", "FRA"))

    latest = await http.get("/v1/policy")  # anonymous, as a device being enrolled
    assert latest.status_code == 200
    assert latest.headers["content-type"] == "application/json"
    one = await http.get("/v1/policy/1")
    chain = [SignedPolicy.from_json(one.content), SignedPolicy.from_json(latest.content)]
    assert verify_chain(chain).digest == V2.digest
    assert (await http.get("/v1/policy/2")).content == latest.content
    assert (await http.get("/v1/policy/3")).status_code == 404
    for bad in ("0", "-1", str(2**53), str(2**64), "one"):
        response = await http.get(f"/v1/policy/{bad}")
        assert response.status_code == 422, (bad, response.text)


async def test_publish_checks_the_chain(app: object, database_url: str) -> None:
    with pytest.raises(InvalidInput, match="every nation it lists; missing: FRA"):
        await _publish(database_url, signed(V1, "USA", "GBR"))
    with pytest.raises(InvalidInput, match="a founding policy is version 1"):
        await _publish(database_url, signed(V2, "USA", "GBR", "FRA"))
    await _publish(database_url, signed(V1, "USA", "GBR", "FRA"))
    with pytest.raises(Conflict, match="policy version 1 is already published"):
        await _publish(database_url, signed(V1, "USA", "GBR", "FRA"))
    with pytest.raises(InvalidInput, match="its threshold is 2"):
        await _publish(database_url, signed(V2, "USA"))
    with pytest.raises(InvalidInput, match="ZZZ, which is not a nation of version 1"):
        await _publish(database_url, signed(ZZZ, "ZZZ"))
    # Another coalition's founding version does not follow the one published.
    other = build_policy(
        coalition="test",
        nations=[PolicyNation.of("USA", "U", [KEYS["ZZZ"].public_bytes()])],
        groups={},
        catalog_toml=TOML,
        threshold=1,
    )
    forged = SignedPolicy(other, (sign_policy(other, "USA", KEYS["ZZZ"]),))
    with pytest.raises(InvalidInput, match="version 1 does not follow version 1"):
        await _publish(database_url, forged)
    await _publish(database_url, signed(V2, "GBR", "FRA"))
    with pytest.raises(InvalidInput, match="version 1 does not follow version 2"):
        await _publish(database_url, signed(V1, "USA", "GBR", "FRA"))

    events = await _events(database_url, "policy.publish")
    allowed = [e for e in events if e.decision == "allow"]
    denied = [e for e in events if e.decision == "deny"]
    assert [e.object_id for e in allowed] == ["1", "2"]
    assert allowed[1].details["signers"] == ["FRA", "GBR"]
    assert allowed[1].details["previous"] == V1.digest_b64u
    assert allowed[1].details["digest"] == V2.digest_b64u
    assert allowed[0].details["catalog_version"] == load_default_catalog().version
    assert len(denied) == 6  # the already-published one is a conflict, not a refused chain
    assert any("its threshold is 2" in r for e in denied for r in e.reasons)


async def test_only_an_operator_publishes(app: object, database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session:

            class Officer:
                is_operator = False

            with pytest.raises(PermissionDenied):
                await service.do_publish_policy(
                    session,
                    Officer(),  # type: ignore[arg-type]
                    signed(V1, "USA", "GBR", "FRA"),
                )
    finally:
        await engine.dispose()


# --- proposals ---------------------------------------------------------------------------------


async def _call(
    world: World, member: Member | None, method: str, path: str, body: Any = None
) -> httpx.Response:
    headers = {} if member is None else {"Authorization": f"Bearer {member.client.token}"}
    content = None if body is None else json.dumps(body).encode()
    async with httpx.AsyncClient(
        transport=world.transport, base_url=world.origin, headers=headers
    ) as client:
        return await client.request(method, path, content=content)


async def test_proposals_collect_signatures_until_published(
    world: World, database_url: str
) -> None:
    await world.nation("USA")
    sofia = await world.member("sofia", "USA", roles=("security_officer",))
    alice = await world.member("alice", "USA")
    path = "/v1/policy/proposals"

    before = await _call(world, sofia, "POST", path, signed(V2, "USA").to_json())
    assert before.status_code == 409, before.text
    assert "attache-server policy publish" in before.json()["detail"]
    await _publish(database_url, signed(V1, "USA", "GBR", "FRA"))

    assert (await _call(world, None, "POST", path, signed(V2).to_json())).status_code == 401
    refused = await _call(world, alice, "POST", path, signed(V2, "USA").to_json())
    assert refused.status_code == 403
    assert "only a security officer or an operator" in refused.json()["detail"]

    # Proposed unsigned, then signed by one nation, then another: each call keeps what came
    # before; a nation signing again adds nothing.
    first = await _call(world, sofia, "POST", path, signed(V2).to_json())
    assert first.status_code == 201, first.text
    assert first.json() | {"proposed_at": None, "updated_at": None} == {
        "digest": V2.digest_b64u,
        "policy_version": 2,
        "signers": [],
        "threshold": 2,
        "ready": False,
        "proposed_at": None,
        "updated_at": None,
    }
    usa = await _call(world, sofia, "POST", path, signed(V2, "USA").to_json())
    assert usa.status_code == 200
    assert (usa.json()["signers"], usa.json()["ready"]) == (["USA"], False)
    again = await _call(world, sofia, "POST", path, signed(V2, "USA").to_json())
    assert again.json()["signers"] == ["USA"]
    fra = await _call(world, sofia, "POST", path, signed(V2, "FRA").to_json())
    assert (fra.json()["signers"], fra.json()["ready"]) == (["FRA", "USA"], True)

    # What would not count is refused, and nothing of it is kept.
    for document, reason in (
        (signed(ZZZ, "ZZZ"), "ZZZ, which is not a nation of version 1"),
        (signed(successor(V2), "USA"), "version 3 does not follow version 1"),
        (signed(V1, "USA"), "version 1 does not follow version 1"),
    ):
        response = await _call(world, sofia, "POST", path, document.to_json())
        assert response.status_code == 422, response.text
        assert reason in response.json()["detail"]
    # GBR's signature over version 1, presented as its signature over version 2.
    forged = SignedPolicy(V2, (sign_policy(V1, "GBR", KEYS["GBR"]),)).to_json()
    response = await _call(world, sofia, "POST", path, forged)
    assert response.status_code == 422
    assert "the signature of GBR" in response.json()["detail"]
    duplicated = json.dumps(signed(V2).to_json()).replace(
        '"threshold": 2', '"threshold": 2, "threshold": 3'
    )
    async with httpx.AsyncClient(
        transport=world.transport,
        base_url=world.origin,
        headers={"Authorization": f"Bearer {sofia.client.token}"},
    ) as client:
        response = await client.post(path, content=duplicated.encode())
    assert response.status_code == 422
    assert "duplicate JSON key" in response.json()["detail"]

    listed = await _call(world, alice, "GET", path)
    assert [p["digest"] for p in listed.json()] == [V2.digest_b64u]
    stored = await _call(world, alice, "GET", f"{path}/{V2.digest_b64u}")
    assert verify_chain([SignedPolicy.from_json(stored.content)], trusted=V1) is not None
    assert (await _call(world, alice, "GET", f"{path}/{'A' * 43}")).status_code == 404
    assert (await _call(world, alice, "GET", f"{path}/short")).status_code == 422

    published = await _publish_proposal(database_url, V2.digest_b64u)
    assert published.signers == ("FRA", "USA")
    assert (await _call(world, None, "GET", "/v1/policy")).content == stored.content
    assert (await _call(world, alice, "GET", path)).json() == []

    events = await _events(database_url, "policy.propose")
    assert [e.decision for e in events] == ["allow", "deny", "deny", "deny", "deny"]
    signs = await _events(database_url, "policy.sign")
    assert [e.details["signed_by"] for e in signs] == [["USA"], ["FRA"]]
    assert all(e.actor_user_id == sofia.user.id for e in signs)


async def test_signatures_sent_at_once_are_all_kept(
    world: World, live_url: str, database_url: str
) -> None:
    # Two nations' signatures, each sent six times at once, before any proposal exists: one
    # proposal is made, both signatures kept, each recorded once.
    await world.nation("USA")
    sofia = await world.member("sofia", "USA", roles=("security_officer",))
    await _publish(database_url, signed(V1, "USA", "GBR", "FRA"))
    headers = {"Authorization": f"Bearer {sofia.client.token}"}
    calls = [
        Call("POST", "/v1/policy/proposals", json=signed(V2, nation).to_json(), headers=headers)
        for nation in ("USA", "FRA")
    ]
    responses = await race(live_url, [calls[0]] * 6 + [calls[1]] * 6)
    assert_no_server_error(responses)
    assert sorted(r.status_code for r in responses) == [200] * 11 + [201]
    listed = await _call(world, sofia, "GET", "/v1/policy/proposals")
    assert [(p["signers"], p["ready"]) for p in listed.json()] == [(["FRA", "USA"], True)]
    proposed = await _events(database_url, "policy.propose")
    signs = await _events(database_url, "policy.sign")
    assert len(proposed) == 1
    assert len(signs) == 1
    assert {*proposed[0].details["signed_by"], *signs[0].details["signed_by"]} == {"FRA", "USA"}


async def _propose(database_url: str, document: SignedPolicy) -> None:
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            await service.do_propose_policy(session, CONSOLE, document)
            await session.commit()
    finally:
        await engine.dispose()


async def _publish_proposal(database_url: str, digest: str) -> service.Published:
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            published = await service.do_publish_proposal(session, CONSOLE, digest)
            await session.commit()
            return published
    finally:
        await engine.dispose()


# --- attache-server policy ----------------------------------------------------------------------


def _cli(env: dict[str, str], *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def test_policy_publish_and_show(tmp_path: Path, database_url: str, clean_database: None) -> None:
    env = {"ATTACHE_DATA_DIR": str(tmp_path / "var"), "ATTACHE_DATABASE_URL": database_url}
    files = {}
    for name, document in {
        "v1": signed(V1, "USA", "GBR", "FRA"),
        "v2-short": signed(V2, "GBR"),
    }.items():
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(json.dumps(document.to_json()), encoding="utf-8")
    (tmp_path / "junk.json").write_text('{"policy": 1}', encoding="utf-8")

    assert "no coalition policy is published" in _cli(env, "policy", "show", code=1)
    out = _cli(env, "policy", "publish", str(files["v1"]))
    assert f"policy version 1 of test published, digest {V1.digest_b64u}" in out
    assert "signed by FRA, GBR, USA" in out
    refused = _cli(env, "policy", "publish", str(files["v2-short"]), code=1)
    assert "policy version 2 is refused" in refused
    assert "signed by 1 nation(s) of version 1 (GBR); its threshold is 2" in refused
    assert "not a signed coalition policy" in _cli(
        env, "policy", "publish", str(tmp_path / "junk.json"), code=1
    )
    assert "cannot read" in _cli(env, "policy", "publish", str(tmp_path / "none.json"), code=1)
    assert "give either FILE or --proposal" in _cli(env, "policy", "publish", code=1)
    assert "no proposal" in _cli(env, "policy", "publish", "--proposal", "x" * 43, code=1)
    # Version 2 again, from the signatures the server collected.
    asyncio.run(_propose(database_url, signed(V2, "GBR")))
    digest = V2.digest_b64u
    assert "its threshold is 2" in _cli(env, "policy", "publish", "--proposal", digest, code=1)
    asyncio.run(_propose(database_url, signed(V2, "USA")))
    assert "signed by GBR, USA" in _cli(env, "policy", "publish", "--proposal", digest)

    shown = _cli(env, "policy", "show")
    assert "policy version 2" in shown
    assert "threshold 2 of 3 nations" in shown
    assert "group DUO: GBR, USA" in shown
    assert KEYS["FRA"].key_id in shown
    assert "policy version 1" in _cli(env, "policy", "show", "1")
    assert "no policy version 3 is published" in _cli(env, "policy", "show", "3", code=1)

    events = asyncio.run(_events(database_url, "policy.publish"))
    assert [(e.object_id, e.decision) for e in events] == [
        ("1", "allow"),
        ("2", "deny"),
        ("2", "deny"),
        ("2", "allow"),
    ]
    assert all(e.details["via"] == "attache-server" for e in events)


async def test_certificates_are_checked_against_the_keys_of_the_policy_in_force(
    world: World,
) -> None:
    """A nation's authority key rotated by a published version is the one the server checks
    certificates against from then on, with no step of the operator's; the rotated-out key,
    and a nation the policy does not list, certify nothing (the server registered both)."""
    for nation in ("USA", "GBR", "FRA", "DEU"):
        await world.nation(nation)
    founders = ("USA", "GBR", "FRA")
    v1 = build_policy(
        coalition="test",
        nations=[
            PolicyNation.of(code, code.title(), [world.authorities[code].public_bytes()])
            for code in founders
        ],
        groups={},
        catalog_toml=TOML,
        threshold=2,
    )
    v1_signatures = tuple(sign_policy(v1, n, world.authorities[n]) for n in founders)
    old, new = world.authorities["USA"], AuthorityKey.generate()
    v2 = build_policy(
        coalition="test",
        nations=[
            PolicyNation.of("USA", "Usa", [new.public_bytes()]),
            v1.nations["GBR"],
            v1.nations["FRA"],
        ],
        groups={},
        catalog_toml=TOML,
        threshold=2,
        previous=v1,
    )
    async with world.app.state.sessionmaker() as session, session.begin():
        await service.do_publish_policy(session, CONSOLE, SignedPolicy(v1, v1_signatures))
        await service.do_publish_policy(
            session,
            CONSOLE,
            SignedPolicy(
                v2, (sign_policy(v2, "USA", old), sign_policy(v2, "GBR", world.authorities["GBR"]))
            ),
        )

    async with world.app.state.sessionmaker() as session, session.begin():
        # Enrolment proves each version's publication in the log (PROTOCOL.md §18.6).
        await integrate(session, world.app.state.audit_signer)
    world.authorities["USA"] = new
    alice = await world.member("alice", "USA")  # certified with the new key: active, signed in
    assert (await alice.client.me())["username"] == "alice"

    world.authorities["USA"] = old
    with pytest.raises(ApiError) as refused:
        await world.member("bob", "USA")
    assert refused.value.status == 422
    assert f"authority key {old.key_id} is not listed for USA in coalition policy version 2" in (
        refused.value.detail
    )
    with pytest.raises(ApiError) as refused:
        await world.member("dieter", "DEU")
    assert "nation DEU is not in coalition policy version 2" in refused.value.detail
