"""A home that requires witnesses proves a coalition policy version at a checkpoint they
cosigned (PROTOCOL.md §18.6, §19.4): the proof is asked for at the latest checkpoint the
required witnesses cosigned, and its note must carry their valid cosignatures, as a key
directory bundle's must; the checkpoint is then kept. A version published after their last
cosignature waits for their next one, and a proof whose cosignatures the server stripped is
refused, naming what is missing. On SQLite and PostgreSQL; the log is integrated when a test
says, so that the checkpoint a witness cosigned stays the latest unless the test moves on.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clients.sdk import coalition
from clients.sdk.coalition import PolicyRefused, logged_version
from clients.sdk.keystore import WitnessRequirement
from clients.sdk.witness import cosign_latest
from protocol.checkpoint import split_note
from protocol.coalition import PolicyNation, build_policy
from protocol.cosignature import CosignatureSigner
from server.audit import publications
from server.audit.integrator import integrate
from server.audit.models import AuditCheckpoint
from server.settings import Settings
from tests.clients.test_coalition_pinning import (
    FOUNDERS,
    TOML,
    _messenger,
    _publish,
    _signed,
    _successor,
)
from tests.factories import World


@pytest.fixture
def settings(database_url: str, tmp_path: Path, origin: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "var",
        database_url=database_url,
        public_url=origin,
        audit_integrate_seconds=3600,
    )


async def _integrate(world: World) -> AuditCheckpoint:
    async with world.app.state.sessionmaker() as session, session.begin():
        found = await integrate(session, world.app.state.audit_signer)
    assert found is not None
    return found


async def test_a_home_requiring_witnesses_proves_versions_at_their_checkpoint(
    world: World, live: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(coalition, "LOG_WAIT", 0.5)
    for nation in FOUNDERS:
        await world.nation(nation)
    v1 = build_policy(
        coalition="test",
        nations=[
            PolicyNation.of(code, code, [world.authorities[code].public_bytes()])
            for code in FOUNDERS
        ],
        groups={"DUO": ["GBR", "USA"]},
        catalog_toml=TOML,
        threshold=2,
    )
    await _publish(world, _signed(world, v1, *FOUNDERS))
    await _integrate(world)
    alice = await world.member("alice", "USA")
    gwen = await world.member("gwen", "GBR", roles=("auditor",))
    await _integrate(world)
    gbr = CosignatureSigner("witness.gbr.example/w1", Ed25519PrivateKey.generate())
    alice.keystore.require_witnesses(WitnessRequirement.of([gbr.vkey()]))

    async def cosign() -> int:
        done = await cosign_latest(gwen.client, gbr, tmp_path / "gbr.json", now=time.time())
        return done.size

    # Version 2 is published after the witness's last cosignature: not followed until it
    # cosigns a checkpoint that holds it.
    await cosign()
    v2 = _successor(v1, groups={"DUO": ["FRA", "GBR", "USA"]})
    await _publish(world, _signed(world, v2, "USA", "GBR"))
    await _integrate(world)
    with pytest.raises(PolicyRefused) as refused:
        await _messenger(alice)
    assert str(refused.value).startswith("coalition policy version 2 is not in the audit log")
    assert "not in a checkpoint the witnesses named cosigned yet" in str(refused.value)
    cosigned = await cosign()
    am = await _messenger(alice)
    assert am.policy is not None
    assert am.policy.policy.digest == v2.digest
    assert logged_version(alice.keystore) == (2, v2.digest_b64u)
    held = alice.keystore.held_checkpoint()
    assert held is not None
    assert held[0] == cosigned  # proven at a cosigned checkpoint, so kept

    # The server strips the witness's cosignature from the proof of version 3.
    v3 = _successor(v2, threshold=3)
    await _publish(world, _signed(world, v3, "GBR", "FRA"))
    await _integrate(world)
    await cosign()
    original = publications.publication_proof

    async def stripped(*args: Any) -> Any:
        answer = await original(*args)
        body, _ = split_note(answer["checkpoint"]["note"])
        lines = answer["checkpoint"]["note"][len(body) :].splitlines(keepends=True)
        answer["checkpoint"]["note"] = body + "".join(
            line for line in lines if gbr.name not in line
        )
        return answer

    monkeypatch.setattr(publications, "publication_proof", stripped)
    with pytest.raises(PolicyRefused) as refused:
        await _messenger(alice)
    said = str(refused.value)
    assert said.startswith("coalition policy version 3 is refused: the checkpoint it is proven")
    assert "lacks the witnesses' cosignatures this device requires" in said
    assert f"missing: {gbr.name}" in said
    assert logged_version(alice.keystore) == (2, v2.digest_b64u)
    assert alice.keystore.held_checkpoint() == held
