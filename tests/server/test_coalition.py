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
from server.audit.models import AuditEvent
from server.auth.principal import CONSOLE
from server.cli import main
from server.coalition import service
from server.db.engine import create_engine, create_sessionmaker
from server.errors import Conflict, InvalidInput, PermissionDenied

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
        "v2": signed(V2, "GBR", "USA"),
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
    assert "signed by GBR, USA" in _cli(env, "policy", "publish", str(files["v2"]))

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
        ("2", "allow"),
    ]
    assert all(e.details["via"] == "attache-server" for e in events)
