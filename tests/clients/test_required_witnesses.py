"""Witnesses' cosignatures required by a home before it seals (PROTOCOL.md §19.4,
docs/client.md): the SDK's Messenger, and so ``attache send``, trusts a key directory
checkpoint only with valid, recent enough cosignatures of the witnesses the home requires.

Nations' witnesses run here as they do in production (``clients.sdk.witness.cosign_latest``,
through an auditor's session); the malicious server is played by what it stores and serves:
a required witness that never cosigned, a cosignature line with the right witness name and
key id but another key's signature, a valid cosignature of a witness the home does not
require, and an honest cosignature too old. Each is refused by the SDK and the CLI with a
sentence naming the witness and what was wrong, nothing is sealed to anyone, and the
checkpoint is not kept. The log is integrated when a test says, so that the checkpoint a
witness cosigned stays the latest unless the test moves on.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, update

from clients.cli import main
from clients.sdk import MessagingError
from clients.sdk._client import ApiError
from clients.sdk.keystore import KeystoreError, WitnessRequirement
from clients.sdk.witness import cosign_latest
from protocol import checkpoint as notes
from protocol.cosignature import Cosignature, CosignatureSigner
from server.audit.integrator import integrate
from server.audit.models import AuditCheckpoint, AuditCosignature
from server.channels.models import Audience
from server.settings import Settings
from tests.clients.test_cli_messages import _fails, _ok
from tests.factories import PASSPHRASE, Member, World, messenger

REL_USA_GBR = "NATO SECRET//REL TO USA, GBR"
REFUSED = "not sent: the server's key directory is refused: the checkpoint of size"


@pytest.fixture
def settings(database_url: str, tmp_path: Path, origin: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "var",
        database_url=database_url,
        public_url=origin,
        audit_integrate_seconds=3600,
    )


@dataclass
class Witness:
    signer: CosignatureSigner
    runner: Member  # the auditor whose session the witness uses
    state: Path

    @property
    def name(self) -> str:
        return self.signer.name

    @property
    def vkey(self) -> str:
        return self.signer.vkey()

    async def cosign(self, *, ago: int = 0) -> int:
        """Cosign the latest checkpoint (dated ``ago`` seconds back); its size."""
        done = await cosign_latest(
            self.runner.client, self.signer, self.state, now=time.time() - ago
        )
        assert done.new
        return done.size


@dataclass
class Setup:
    alice: Member
    bob: Member
    gbr: Witness
    fra: Witness


async def _integrate(world: World) -> AuditCheckpoint:
    async with world.app.state.sessionmaker() as session, session.begin():
        found = await integrate(session, world.app.state.audit_signer)
    assert found is not None
    return found


@pytest.fixture
async def setup(world: World, live: str, tmp_path: Path) -> Setup:
    for nation in ("USA", "GBR", "FRA"):
        await world.nation(nation)
    alice = await world.member("alice", "USA")
    bob = await world.member("bob", "GBR")
    await alice.client.create_channel("liaison", "NATO SECRET")
    await alice.client.add_member("liaison", "bob")
    gwen = await world.member("gwen", "GBR", roles=("auditor",))
    fabien = await world.member("fabien", "FRA", roles=("auditor",))
    await _integrate(world)  # every device above is in the key directory from here on
    gbr = Witness(
        CosignatureSigner("witness.gbr.example/w1", Ed25519PrivateKey.generate()),
        gwen,
        tmp_path / "gbr-witness.json",
    )
    fra = Witness(
        CosignatureSigner("witness.fra.example/w1", Ed25519PrivateKey.generate()),
        fabien,
        tmp_path / "fra-witness.json",
    )
    return Setup(alice, bob, gbr, fra)


async def _sealed_to(world: World) -> set[str]:
    async with world.app.state.sessionmaker() as session:
        audiences = (await session.execute(select(Audience))).scalars().all()
    return {str(d) for audience in audiences for d in audience.header["devices"]}


async def _refused(s: Setup, world: World) -> str:
    """The SDK's and the CLI's refusal of a send by alice; nothing sealed, nothing kept."""
    before = await _sealed_to(world)
    with pytest.raises(MessagingError) as refused:
        await (await messenger(s.alice)).send("liaison", "secret", label=REL_USA_GBR)
    said = str(refused.value)
    assert said.startswith(REFUSED), said
    assert "lacks the witnesses' cosignatures this device requires" in said
    out = await _fails(s.alice, "send", "--channel", "liaison", "--label", REL_USA_GBR, "x")
    assert out.strip().startswith("Error: not sent: the server's key directory is refused")
    assert await _sealed_to(world) == before
    assert s.alice.keystore.held_checkpoint() is None  # refused, so not kept
    return said + "\n" + out


async def test_a_checkpoint_the_required_witnesses_cosigned_is_accepted(
    setup: Setup, world: World
) -> None:
    size = await setup.gbr.cosign()
    await setup.fra.cosign()
    setup.alice.keystore.require_witnesses(
        WitnessRequirement.of([setup.gbr.vkey, setup.fra.vkey], max_age=600)
    )
    await setup.alice.client.create_channel("later", "NATO SECRET")
    await _integrate(world)  # the latest checkpoint is now one no witness cosigned yet
    sent = await (await messenger(setup.alice)).send("liaison", "hello", label=REL_USA_GBR)
    assert setup.bob.device_id in sent.released_to
    assert sent.excluded == ()
    # The bundle was asked for at the checkpoint the witnesses cosigned, and that was kept.
    held = setup.alice.keystore.held_checkpoint()
    assert held is not None
    assert held[0] == size
    got = await (await messenger(setup.bob)).read("liaison")
    assert [m.text for m in got] == ["hello"]
    assert got[0].verified
    out = await _ok(setup.alice, "send", "--channel", "liaison", "from the CLI")
    assert "released to 2 device(s)" in out


async def test_a_device_certified_since_the_witnesses_cosigned_waits_for_them(
    setup: Setup, world: World
) -> None:
    """Devices are checked at the witnesses' checkpoint, whose directory the server rebuilds
    when key events came after it: a member enrolled since is not in it, so a send that must
    reach them is refused naming them until the witnesses cosign again."""
    size = await setup.gbr.cosign()
    dan = await world.member("dan", "GBR")
    await _integrate(world)  # dan's key events: the latest directory is not the witnesses'
    setup.alice.keystore.require_witnesses(WitnessRequirement.of([setup.gbr.vkey]))
    am = await messenger(setup.alice)
    assert am.transparency is not None
    am.transparency.wait = 0
    sent = await am.send("liaison", "before dan", label=REL_USA_GBR)
    assert setup.bob.device_id in sent.released_to
    assert setup.alice.keystore.held_checkpoint() == (size, await _root(world, size))
    await setup.alice.client.add_member("liaison", "dan")
    before = await _sealed_to(world)
    with pytest.raises(MessagingError) as refused:
        await am.send("liaison", "to dan", label=REL_USA_GBR)
    assert f"device {dan.device_id} of dan" in str(refused.value)
    assert "is not in the key directory" in str(refused.value)
    assert await _sealed_to(world) == before
    await _integrate(world)
    later = await setup.gbr.cosign()
    assert later > size
    sent = await (await messenger(setup.alice)).send("liaison", "to dan", label=REL_USA_GBR)
    assert dan.device_id in sent.released_to
    held = setup.alice.keystore.held_checkpoint()
    assert held is not None
    assert held[0] == later


async def _root(world: World, size: int) -> bytes:
    async with world.app.state.sessionmaker() as session:
        row = await session.get(AuditCheckpoint, size)
    assert row is not None
    return bytes(row.root)


async def test_a_missing_cosignature_is_refused(setup: Setup, world: World) -> None:
    await setup.gbr.cosign()
    setup.alice.keystore.require_witnesses(WitnessRequirement.of([setup.gbr.vkey, setup.fra.vkey]))
    said = await _refused(setup, world)
    assert "1 valid cosignatures of the 2 required" in said
    assert f"(missing: {setup.fra.name})" in said


async def test_a_forged_cosignature_is_refused(setup: Setup, world: World) -> None:
    """The server serves a line with the GBR witness's name and key id whose signature is
    another key's: named as forged, however few witnesses are required."""
    size = await setup.gbr.cosign()
    await setup.fra.cosign()
    async with world.app.state.sessionmaker() as session, session.begin():
        row = await session.get(AuditCheckpoint, size)
        assert row is not None
        body = notes.split_note(row.note)[0]
        impostor = CosignatureSigner(setup.gbr.name, Ed25519PrivateKey.generate())
        made = impostor.cosign(body, int(time.time()))
        forged = Cosignature(
            setup.gbr.name, setup.gbr.signer.verifier().key_id, made.timestamp, made.signature
        )
        changed = await session.execute(
            update(AuditCosignature)
            .where(AuditCosignature.size == size, AuditCosignature.witness == setup.gbr.name)
            .values(line=forged.line())
        )
        assert changed.rowcount == 1
    setup.alice.keystore.require_witnesses(
        WitnessRequirement.of([setup.gbr.vkey, setup.fra.vkey], 1)
    )
    said = await _refused(setup, world)
    assert (
        f"the cosignature of witness {setup.gbr.name} does not verify with its pinned key: forged"
    ) in said


async def test_a_witness_not_required_does_not_count(setup: Setup, world: World) -> None:
    """FRA's witness cosigned the latest checkpoint, validly; this home requires GBR's."""
    size = await setup.fra.cosign()
    latest = await setup.fra.runner.client.request("GET", "/v1/audit/checkpoint")
    assert latest["size"] == size
    assert f"— {setup.fra.name} " in latest["note"]  # served with the checkpoint
    setup.alice.keystore.require_witnesses(WitnessRequirement.of([setup.gbr.vkey]))
    said = await _refused(setup, world)
    assert f"checkpoint of size {size} lacks" in said
    assert "0 valid cosignatures of the 1 required" in said
    assert f"(missing: {setup.gbr.name})" in said


async def test_a_cosignature_too_old_is_refused(setup: Setup, world: World) -> None:
    await setup.gbr.cosign(ago=7200)
    setup.alice.keystore.require_witnesses(WitnessRequirement.of([setup.gbr.vkey], max_age=3600))
    said = await _refused(setup, world)
    assert f"too old: {setup.gbr.name}, cosigned 72" in said
    # The same cosignature counts for a home that accepts its age.
    setup.alice.keystore.require_witnesses(
        WitnessRequirement.of([setup.gbr.vkey], max_age=9000), loosen=True
    )
    sent = await (await messenger(setup.alice)).send("liaison", "now", label=REL_USA_GBR)
    assert setup.bob.device_id in sent.released_to


async def test_the_server_cannot_change_what_is_required(setup: Setup, world: World) -> None:
    """The requirement is kept beside the audit key and the checkpoint: keeping a checkpoint
    leaves it, loosening it needs saying so, and the file stays private."""
    store = setup.alice.keystore
    store.require_witnesses(WitnessRequirement.of([setup.gbr.vkey, setup.fra.vkey], 1))
    await setup.gbr.cosign()
    await (await messenger(setup.alice)).send("liaison", "kept", label=REL_USA_GBR)
    assert store.held_checkpoint() is not None
    assert store.required_witnesses() == WitnessRequirement.of([setup.gbr.vkey, setup.fra.vkey], 1)
    path = store.home / "transparency.json"
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    stored = json.loads(path.read_text())
    assert stored["witnesses"]["min"] == 1
    for looser, why in [
        (WitnessRequirement.of([setup.gbr.vkey], 1), f"witness {setup.fra.name} would no"),
        (
            WitnessRequirement.of([setup.gbr.vkey, setup.fra.vkey, _other_vkey()], 1),
            "1 of 3 witnesses would do where 1 of these 2",
        ),
        (WitnessRequirement.of([setup.gbr.vkey, setup.fra.vkey], 1, 60), None),
        (None, "no witness would be required any more"),
    ]:
        if why is None:  # a maximum age where there was none: stricter, accepted
            store.require_witnesses(looser)
            continue
        with pytest.raises(KeystoreError, match="loosens the witnesses required here") as exc:
            store.require_witnesses(looser)
        assert why in str(exc.value)
    with pytest.raises(KeystoreError, match="cosignatures up to no limit old would count"):
        store.require_witnesses(WitnessRequirement.of([setup.gbr.vkey, setup.fra.vkey], 1))
    # A stricter one (more of the same witnesses) needs no flag.
    store.require_witnesses(WitnessRequirement.of([setup.gbr.vkey, setup.fra.vkey], None, 60))


def _other_vkey() -> str:
    return CosignatureSigner("witness.usa.example/w1", Ed25519PrivateKey.generate()).vkey()


async def test_bad_witness_parameters_are_refused_by_the_server(setup: Setup) -> None:
    path = f"/v1/devices/{setup.bob.device_id}/transparency"
    for params, field in [
        ({"min_witnesses": 1}, "min_witnesses"),
        ({"witness": ["a", "b"], "min_witnesses": 3}, "min_witnesses"),
    ]:
        with pytest.raises(ApiError) as refused:
            await setup.alice.client.request("GET", path, params=params)
        assert refused.value.status == 422
        assert refused.value.problem["field"] == field


# --- the CLI ---------------------------------------------------------------------------------


async def _cli(home: Path, *args: str) -> Result:
    env = {
        "ATTACHE_HOME": str(home),
        "ATTACHE_PASSPHRASE": PASSPHRASE,
        "COLUMNS": "200",
        "NO_COLOR": "1",
    }
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, main, list(args), env=env, catch_exceptions=False)


async def test_setting_and_showing_the_required_witnesses(setup: Setup) -> None:
    home = setup.alice.keystore.home
    shown = await _cli(home, "witness", "show")
    assert shown.exit_code == 0, shown.output
    assert "no witness required" in shown.output
    gbr, fra = setup.gbr.vkey, setup.fra.vkey
    set_ = await _cli(home, "witness", "require", gbr, fra, "--min", "1", "--max-age", "600")
    assert set_.exit_code == 0, set_.output
    assert "requiring 1 of 2 witnesses, each cosigned at most 600 s before the check" in (
        set_.output
    )
    shown = await _cli(home, "witness", "show")
    assert gbr in shown.output
    assert fra in shown.output
    assert setup.alice.keystore.required_witnesses() == WitnessRequirement.of([gbr, fra], 1, 600)

    looser = await _cli(home, "witness", "require", gbr)
    assert looser.exit_code == 1
    assert "that loosens the witnesses required here" in looser.output
    assert f"witness {setup.fra.name} would no longer be required" in looser.output
    assert "say so with --force" in looser.output
    forced = await _cli(home, "witness", "require", gbr, "--force")
    assert forced.exit_code == 0, forced.output
    assert "requiring 1 of 1 witnesses:" in forced.output
    stricter = await _cli(home, "witness", "require", gbr, fra)
    assert stricter.exit_code == 0, stricter.output
    assert (await _cli(home, "witness", "forget")).exit_code == 1
    gone = await _cli(home, "witness", "forget", "--force")
    assert gone.exit_code == 0, gone.output
    assert setup.alice.keystore.required_witnesses() is None


async def test_bad_witness_keys_are_refused_with_a_sentence(setup: Setup) -> None:
    home = setup.alice.keystore.home
    gbr = setup.gbr.vkey
    for args, said in [
        (("nonsense",), "witness key 'nonsense': a witness key is <name>+<key id>+<key>"),
        ((gbr.replace("/w1+", "/w2+"),), "does not match its name and key"),
        (("w+00000000+AQID",), "not a witness key: its type is not 0x04"),
        ((gbr, gbr), "each witness key must name a different witness"),
        ((gbr, "--min", "2"), "--min 2 needs at least 2 witness keys, not 1"),
        ((gbr, "--min", "0"), "Invalid value for '--min'"),
    ]:
        result = await _cli(home, "witness", "require", *args)
        assert result.exit_code in (1, 2), result.output
        assert said in result.output, result.output
        assert "Traceback" not in result.output
    assert setup.alice.keystore.required_witnesses() is None


async def test_enroll_requires_the_witnesses_given(
    setup: Setup, world: World, live: str, tmp_path: Path
) -> None:
    user = await world.user("dan", "USA")
    gbr, fra = setup.gbr.vkey, setup.fra.vkey

    async def enrol(home: Path, *extra: str) -> Result:
        code = await world.code(user)
        return await _cli(home, "enroll", "--server", live, "--user", "dan", "--code", code, *extra)

    bad = await enrol(tmp_path / "bad", "--witness", gbr, "--min-witnesses", "2")
    assert bad.exit_code == 1
    assert "--min-witnesses 2 needs at least 2 witness keys, not 1" in bad.output
    assert not (tmp_path / "bad" / "device.key").exists()  # refused before registering
    done = await enrol(
        tmp_path / "dan",
        "--witness",
        gbr,
        "--witness",
        fra,
        "--min-witnesses",
        "1",
        "--witness-max-age",
        "300",
    )
    assert done.exit_code == 0, done.output
    assert "requiring 1 of 2 witnesses, each cosigned at most 300 s before the check" in (
        done.output
    )
    stored = json.loads((tmp_path / "dan" / "transparency.json").read_text())
    assert stored["witnesses"] == {"keys": sorted([gbr, fra]), "min": 1, "max_age": 300}
    assert isinstance(stored["vkey"], str)
