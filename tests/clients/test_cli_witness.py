"""attache audit witness, verify --witness, checkpoints and compare, against the app served
over TCP: a nation's witness cosigns, an auditor requires it, a fork is refused by the witness
and named by an auditor comparing; refusals are plain sentences."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select, update

from clients.cli import main
from protocol import checkpoint as notes
from server.audit.integrator import integrate
from server.audit.models import AuditCheckpoint
from server.settings import Settings
from tests.factories import PASSPHRASE, Member, World

WITNESS_PASSPHRASE = "a witness's own passphrase"


@pytest.fixture
def settings(database_url: str, tmp_path: Path, origin: str) -> Settings:
    # The log is integrated when the test says, so that the checkpoint cosigned is the latest.
    return Settings(
        data_dir=tmp_path / "var",
        database_url=database_url,
        public_url=origin,
        audit_integrate_seconds=3600,
    )


async def _invoke(member: Member, *args: str, passphrase: str = WITNESS_PASSPHRASE) -> Result:
    env = {
        "ATTACHE_HOME": str(member.keystore.home),
        "ATTACHE_PASSPHRASE": PASSPHRASE,
        "ATTACHE_WITNESS_PASSPHRASE": passphrase,
        "COLUMNS": "200",
        "NO_COLOR": "1",
    }
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, main, list(args), env=env, catch_exceptions=False)


async def _integrate(world: World) -> AuditCheckpoint:
    async with world.app.state.sessionmaker() as session, session.begin():
        found = await integrate(session, world.app.state.audit_signer)
    assert found is not None
    return found


async def _start(world: World) -> tuple[Member, Member, Member]:
    for nation in ("USA", "GBR", "FRA"):
        await world.nation(nation)
    alice = await world.member("alice", "USA")
    await alice.client.create_channel("liaison", "NATO SECRET")
    gwen = await world.member("gwen", "GBR", roles=("auditor",))
    audrey = await world.member("audrey", None, roles=("auditor",))
    for member in (gwen, audrey):
        assert (await _invoke(member, "login")).exit_code == 0
    await _integrate(world)
    return alice, gwen, audrey


def _said(result: Result, prefix: str) -> str:
    return next(line.split(prefix, 1)[1] for line in result.output.splitlines() if prefix in line)


async def test_a_witness_cosigns_and_an_auditor_requires_it(
    world: World, live: str, tmp_path: Path
) -> None:
    alice, gwen, audrey = await _start(world)
    made = await _invoke(gwen, "audit", "witness", "init", "--name", "witness.gbr.example/w1")
    assert made.exit_code == 0, made.output
    vkey = _said(made, "witness key: ").strip()
    assert vkey.startswith("witness.gbr.example/w1+")

    ran = await _invoke(gwen, "audit", "witness", "run")
    assert ran.exit_code == 0, ran.output
    assert "cosigned the checkpoint of size" in ran.output

    verified = await _invoke(audrey, "audit", "verify", "--witness", vkey)
    assert verified.exit_code == 0, verified.output
    assert "cosigned by: witness.gbr.example/w1" in verified.output

    # A second witness required that never ran: named as missing, verification fails.
    fra = await world.member("fabien", "FRA", roles=("auditor",))
    other = await _invoke(fra, "audit", "witness", "init", "--name", "witness.fra.example/w1")
    fra_vkey = _said(other, "witness key: ").strip()
    await alice.client.create_channel("second", "NATO SECRET")
    await _integrate(world)
    assert (await _invoke(gwen, "audit", "witness", "run")).exit_code == 0
    failed = await _invoke(audrey, "audit", "verify", "--witness", vkey, "--witness", fra_vkey)
    assert failed.exit_code == 1
    assert "1 valid cosignatures of the 2 required" in failed.output
    assert "(missing: witness.fra.example/w1)" in failed.output
    assert "VERIFICATION FAILED" in failed.output
    one = await _invoke(
        audrey, "audit", "verify", "--witness", vkey, "--witness", fra_vkey, "--min-witnesses", "1"
    )
    assert one.exit_code == 0, one.output
    # Verified further without witnesses, then with: their checkpoint is behind, a prefix.
    await alice.client.create_channel("third", "NATO SECRET")
    await _integrate(world)
    assert (await _invoke(audrey, "audit", "verify")).exit_code == 0
    behind = await _invoke(audrey, "audit", "verify", "--witness", vkey)
    assert behind.exit_code == 0, behind.output
    assert "is a prefix of the" in behind.output
    assert "nothing new to verify" in behind.output

    # Checkpoints held here compare equal to themselves.
    held = tmp_path / "held.json"
    assert (await _invoke(audrey, "audit", "checkpoints", "--out", str(held))).exit_code == 0
    compared = await _invoke(audrey, "audit", "compare", str(held))
    assert compared.exit_code == 0, compared.output
    assert "3 of their checkpoints agree with the log verified here" in compared.output


async def test_a_fork_is_refused_by_the_witness_and_named_by_compare(
    world: World, live: str, tmp_path: Path
) -> None:
    _, gwen, audrey = await _start(world)
    assert (await _invoke(gwen, "audit", "witness", "init", "--name", "w.gbr")).exit_code == 0
    assert (await _invoke(gwen, "audit", "witness", "run")).exit_code == 0
    assert (await _invoke(audrey, "audit", "verify")).exit_code == 0
    held = tmp_path / "held.json"
    assert (await _invoke(audrey, "audit", "checkpoints", "--out", str(held))).exit_code == 0

    # The malicious server re-signs the checkpoint with another root.
    async with world.app.state.sessionmaker() as session, session.begin():
        row = (await session.execute(select(AuditCheckpoint))).scalars().one()
        forked = notes.Checkpoint(
            notes.Checkpoint.parse(notes.split_note(row.note)[0]).origin,
            row.size,
            hashlib.sha256(b"another history").digest(),
        )
        note = notes.sign_checkpoint(forked, world.app.state.audit_signer)
        await session.execute(
            update(AuditCheckpoint)
            .where(AuditCheckpoint.size == row.size)
            .values(root=forked.root, note=note)
        )
    refused = await _invoke(gwen, "audit", "witness", "run")
    assert refused.exit_code == 1
    assert f"refused to cosign: FORK: the log served a checkpoint of size {row.size}" in (
        refused.output
    )
    assert "Traceback" not in refused.output

    # Another auditor was shown the forked checkpoint: comparing names the fork.
    theirs = json.loads(held.read_text(encoding="utf-8"))
    theirs["checkpoints"] = [note]
    other = tmp_path / "theirs.json"
    other.write_text(json.dumps(theirs), encoding="utf-8")
    compared = await _invoke(audrey, "audit", "compare", str(other))
    assert compared.exit_code == 1
    assert f"FORK: their checkpoint of size {row.size} has root" in compared.output
    assert "together they prove the server signed two histories" in compared.output


async def test_plain_refusals(world: World, live: str, tmp_path: Path) -> None:
    _, gwen, audrey = await _start(world)
    bad = await _invoke(audrey, "audit", "verify", "--witness", "nonsense")
    assert bad.exit_code == 1
    assert "--witness 'nonsense': a witness key is <name>+<key id>+<key>" in bad.output
    assert (await _invoke(gwen, "audit", "witness", "init", "--name", "w.gbr")).exit_code == 0
    made = await _invoke(gwen, "audit", "witness", "init", "--name", "w.gbr")
    assert made.exit_code == 1
    assert "already exists; refusing to overwrite a witness key" in made.output
    vkey = Path(gwen.keystore.home / "witness" / "witness.key.vkey").read_text().strip()
    too_many = await _invoke(audrey, "audit", "verify", "--witness", vkey, "--min-witnesses", "2")
    assert too_many.exit_code == 1
    assert "--min-witnesses 2 needs at least 2 --witness keys" in too_many.output
    ageless = await _invoke(audrey, "audit", "verify", "--max-age", "60")
    assert ageless.exit_code == 1
    assert "--max-age limits witnesses' cosignatures: give their keys with --witness" in (
        ageless.output
    )
    wrong = await _invoke(gwen, "audit", "witness", "run", passphrase="not it")
    assert wrong.exit_code == 1
    assert "wrong passphrase or damaged key file" in wrong.output
    log_key = await _invoke(audrey, "audit", "verify", "--vkey", vkey)
    assert log_key.exit_code == 1
    assert "is not a log's key: verifier key is not an Ed25519 (type 0x01) key" in (log_key.output)
    junk = tmp_path / "junk.json"
    junk.write_text("not json", encoding="utf-8")
    assert (await _invoke(audrey, "audit", "verify")).exit_code == 0
    not_json = await _invoke(audrey, "audit", "compare", str(junk))
    assert not_json.exit_code == 1
    assert "is not JSON: ask for the output of 'attache audit checkpoints'" in not_json.output
    junk.write_text("{}", encoding="utf-8")
    not_ours = await _invoke(audrey, "audit", "compare", str(junk))
    assert not_ours.exit_code == 1
    assert "not a file of checkpoints" in not_ours.output
    nobody = await world.member("nadia", None, roles=("auditor",))
    assert (await _invoke(nobody, "login")).exit_code == 0
    never = await _invoke(nobody, "audit", "checkpoints")
    assert never.exit_code == 1
    assert "nothing verified here yet: run 'attache audit verify' first" in never.output
