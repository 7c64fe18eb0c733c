"""GET /v1/policy/{version}/proof (PROTOCOL.md §17.3.1, §18.6): a published version's
publication leaf with its inclusion proof, at the latest checkpoint or at the latest one the
witnesses named cosigned, for anyone (a device being enrolled has no session). On SQLite and
PostgreSQL; the client's checks of these answers are tests/clients/test_policy_log.py's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from clients.sdk.witness import cosign_latest
from protocol import policy_log as pl
from protocol.checkpoint import NoteVerifier
from protocol.coalition import (
    CoalitionPolicy,
    PolicyNation,
    SignedPolicy,
    build_policy,
    sign_policy,
)
from protocol.cosignature import CosignatureSigner
from server.audit.integrator import integrate
from server.audit.models import AuditCheckpoint, AuditEvent
from server.auth.principal import CONSOLE
from server.coalition import service
from tests.factories import World

TOML = (Path(__file__).resolve().parents[2] / "protocol" / "catalogs" / "default.toml").read_text(
    encoding="utf-8"
)


async def _integrate(world: World) -> AuditCheckpoint:
    async with world.app.state.sessionmaker() as session, session.begin():
        found = await integrate(session, world.app.state.audit_signer)
    assert found is not None
    return found


async def _publish(world: World, policy: CoalitionPolicy, *nations: str) -> None:
    signed = SignedPolicy(
        policy, tuple(sign_policy(policy, n, world.authorities[n]) for n in nations)
    )
    async with world.app.state.sessionmaker() as session, session.begin():
        await service.do_publish_policy(session, CONSOLE, signed)


async def _founded(world: World) -> tuple[CoalitionPolicy, CoalitionPolicy]:
    for nation in ("USA", "GBR", "FRA"):
        await world.nation(nation)
    v1 = build_policy(
        coalition="test",
        nations=[
            PolicyNation.of(code, code, [world.authorities[code].public_bytes()])
            for code in ("USA", "GBR", "FRA")
        ],
        groups={},
        catalog_toml=TOML,
        threshold=2,
    )
    v2 = build_policy(
        coalition="test",
        nations=list(v1.nations.values()),
        groups={"DUO": ["GBR", "USA"]},
        catalog_toml=TOML,
        threshold=2,
        previous=v1,
    )
    await _publish(world, v1, "USA", "GBR", "FRA")
    return v1, v2


async def _proof(http: httpx.AsyncClient, version: int, **params: Any) -> httpx.Response:
    return await http.get(f"/v1/policy/{version}/proof", params=params)


async def test_a_published_version_is_proven_to_anyone(
    world: World, http: httpx.AsyncClient
) -> None:
    v1, v2 = await _founded(world)
    before = await _proof(http, 1)
    assert before.status_code == 503, before.text  # not integrated yet
    assert "not in a checkpoint yet" in before.json()["detail"]
    first = await _integrate(world)
    answer = await _proof(http, 1)  # anonymous
    assert answer.status_code == 200, answer.text
    log_key = NoteVerifier.from_vkey(world.app.state.audit_signer.vkey())
    proven = pl.verify_publication(answer.json(), log_key=log_key, policy=v1)
    assert (proven.size, proven.publication.digest) == (first.size, v1.digest_b64u)
    await _publish(world, v2, "USA", "GBR")
    later = await _integrate(world)
    answer = await _proof(http, 2, old=first.size)
    assert answer.status_code == 200, answer.text
    proven = pl.verify_publication(
        answer.json(), log_key=log_key, policy=v2, held=(first.size, first.root)
    )
    assert proven.size == later.size
    assert proven.publication.previous == v1.digest_b64u
    missing = await _proof(http, 3)
    assert missing.status_code == 404
    assert missing.json()["detail"] == "no policy version 3 is published"


async def test_a_version_stored_without_its_publication_is_not_proven(
    world: World, http: httpx.AsyncClient
) -> None:
    _, v2 = await _founded(world)
    await _publish(world, v2, "USA", "GBR")
    async with world.app.state.sessionmaker() as session, session.begin():
        row = (
            await session.execute(
                select(AuditEvent).where(
                    AuditEvent.action == "policy.publish", AuditEvent.object_id == "2"
                )
            )
        ).scalar_one()
        await session.delete(row)
    await _integrate(world)
    answer = await _proof(http, 2)
    assert answer.status_code == 404
    assert answer.json()["detail"] == (
        "the audit log has no publication of coalition policy version 2"
    )


async def test_with_witnesses_the_proof_is_at_the_checkpoint_they_cosigned(
    world: World, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    _, v2 = await _founded(world)
    gbr = CosignatureSigner("witness.gbr.example/w1", Ed25519PrivateKey.generate())
    await _integrate(world)  # a device being enrolled proves version 1 first
    auditor = await world.member("gwen", "GBR", roles=("auditor",))
    cosigned = await _integrate(world)
    await cosign_latest(auditor.client, gbr, tmp_path / "gbr.json")
    await _publish(world, v2, "USA", "GBR")
    await _integrate(world)
    named = {"witness": [gbr.name]}
    first = await _proof(http, 1, **named)
    assert first.status_code == 200, first.text
    assert first.json()["checkpoint"]["size"] == cosigned.size
    assert gbr.name in first.json()["checkpoint"]["note"]
    # Version 2 is in the latest checkpoint, not yet in one the witness cosigned.
    second = await _proof(http, 2, **named)
    assert second.status_code == 503, second.text
    assert "not in a checkpoint the witnesses named cosigned yet" in second.json()["detail"]
    assert (await _proof(http, 2)).status_code == 200
    # None cosigned by an unknown witness: the latest, for the client to name what is missing.
    latest = await _proof(http, 2, witness=["witness.fra.example/w1"])
    assert latest.status_code == 200
    assert "witness.fra.example" not in latest.json()["checkpoint"]["note"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"min_witnesses": 1}, "min_witnesses"),
        ({"witness": ["a", "b"], "min_witnesses": 3}, "min_witnesses"),
        ({"old": -1}, "old"),
    ],
)
async def test_bad_parameters_are_problems(
    world: World, http: httpx.AsyncClient, params: dict[str, Any], field: str
) -> None:
    await _founded(world)
    await _integrate(world)
    answer = await _proof(http, 1, **params)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert field in answer.text
