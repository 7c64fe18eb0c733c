"""Witnesses (issue 13, item 4): nations' witnesses cosign the audit log's checkpoints after
checking consistency with what they cosigned before; auditors require their cosignatures and
compare checkpoints. The malicious server is played by editing what it serves: checkpoints
rewritten and re-signed with its own key (a fork), deleted (a replay of an older one), and
cosignature lines forged or missing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select, update

from clients.sdk.audit import compare_checkpoints, export_checkpoints, verify_log
from clients.sdk.witness import WitnessError, cosign_latest
from protocol import checkpoint as notes
from protocol.checkpoint import Checkpoint
from protocol.cosignature import CosignatureSigner, CosignatureVerifier
from server.audit.integrator import integrate
from server.audit.models import AuditCheckpoint, AuditCosignature
from tests.factories import Member, World
from tests.race import Call, assert_no_server_error, race


async def _integrate(world: World) -> AuditCheckpoint:
    async with world.app.state.sessionmaker() as session, session.begin():
        found = await integrate(session, world.app.state.audit_signer)
    assert found is not None
    return found


def _witness(name: str) -> CosignatureSigner:
    return CosignatureSigner(name, Ed25519PrivateKey.generate())


class Setup:
    def __init__(self, world: World, tmp_path: Path) -> None:
        self.world = world
        self.tmp = tmp_path
        self.gbr = _witness("witness.gbr.example/w1")
        self.fra = _witness("witness.fra.example/w1")
        self.gbr_auditor: Member
        self.fra_auditor: Member
        self.auditor: Member
        self.alice: Member

    async def start(self) -> None:
        world = self.world
        for nation in ("USA", "GBR", "FRA"):
            await world.nation(nation)
        self.alice = await world.member("alice", "USA")
        await self.alice.client.create_channel("liaison", "NATO SECRET")
        self.gbr_auditor = await world.member("gwen", "GBR", roles=("auditor",))
        self.fra_auditor = await world.member("france", "FRA", roles=("auditor",))
        self.auditor = await world.member("audrey", None, roles=("auditor",))
        await _integrate(world)

    async def more(self, name: str) -> AuditCheckpoint:
        await self.alice.client.create_channel(name, "NATO SECRET")
        return await _integrate(self.world)

    async def cosign(self, who: str, now: float | None = None) -> Any:
        signer, member = (
            (self.gbr, self.gbr_auditor) if who == "gbr" else (self.fra, self.fra_auditor)
        )
        return await cosign_latest(member.client, signer, self.tmp / f"{who}-state.json", now=now)

    def pinned(self, *who: str) -> list[CosignatureVerifier]:
        return [getattr(self, w).verifier() for w in who]


@pytest.fixture
async def setup(world: World, tmp_path: Path) -> Setup:
    s = Setup(world, tmp_path)
    await s.start()
    return s


async def _checkpoint_row(world: World, size: int | None = None) -> AuditCheckpoint:
    async with world.app.state.sessionmaker() as session:
        stmt = select(AuditCheckpoint).order_by(AuditCheckpoint.size.desc()).limit(1)
        if size is not None:
            stmt = select(AuditCheckpoint).where(AuditCheckpoint.size == size)
        row: AuditCheckpoint = (await session.execute(stmt)).scalar_one()
        return row


async def _fork(world: World, size: int) -> str:
    """The malicious server: the checkpoint of ``size`` rewritten with another root and
    re-signed with the log's own key, as a server showing another history would sign it."""
    root = hashlib.sha256(b"another history").digest()
    row = await _checkpoint_row(world, size)
    origin = Checkpoint.parse(notes.split_note(row.note)[0]).origin
    note = notes.sign_checkpoint(Checkpoint(origin, size, root), world.app.state.audit_signer)
    async with world.app.state.sessionmaker() as session, session.begin():
        await session.execute(
            update(AuditCheckpoint).where(AuditCheckpoint.size == size).values(root=root, note=note)
        )
    return note


async def test_witnesses_cosign_and_an_auditor_requires_them(setup: Setup, tmp_path: Path) -> None:
    first = await setup.cosign("gbr")
    assert first.new
    assert first.previous_size is None
    assert first.log_pinned_now
    await setup.cosign("fra")
    served = await setup.auditor.client.request("GET", "/v1/audit/checkpoint")
    assert served["note"].count("\n\u2014 ") == 3  # the log's signature and two cosignatures
    home = tmp_path / "auditor"
    report = await verify_log(
        setup.auditor.client, home, witnesses=setup.pinned("gbr", "fra"), min_witnesses=2
    )
    assert report.ok, report.problems
    assert set(report.witnesses) == {"witness.gbr.example/w1", "witness.fra.example/w1"}
    # The log grows before the witnesses run again: an auditor requiring them verifies the
    # latest checkpoint they cosigned, not the newer one they have not seen yet.
    uncosigned = await setup.more("first-more")
    report = await verify_log(
        setup.auditor.client, tmp_path / "other", witnesses=setup.pinned("gbr", "fra")
    )
    assert report.ok, report.problems
    assert report.size == first.size < uncosigned.size
    # An auditor who verified the newer one without witnesses, then requires them: the
    # witnesses' checkpoint is a prefix of what it verified, nothing more to do...
    ahead = tmp_path / "ahead"
    assert (await verify_log(setup.auditor.client, ahead)).size == uncosigned.size
    report = await verify_log(setup.auditor.client, ahead, witnesses=setup.pinned("gbr", "fra"))
    assert report.ok, report.problems
    assert report.behind
    # ...unless it is not a prefix of the leaves kept here: a fork.
    kept = next(ahead.glob("audit/*/leaves.bin"))
    kept.write_bytes(b"\xff" * 32 + kept.read_bytes()[32:])
    report = await verify_log(setup.auditor.client, ahead, witnesses=setup.pinned("gbr", "fra"))
    assert report.problems == [
        f"FORK: the witnesses' checkpoint of size {first.size} is not a prefix of the "
        f"{uncosigned.size} leaves verified here before"
    ]

    # The log grows; the witness checks the new checkpoint extends the one it cosigned.
    grown = await setup.more("second")
    again = await setup.cosign("gbr")
    assert (again.previous_size, again.size) == (first.size, grown.size)
    # The same checkpoint cosigned again: the first cosignature stands.
    repeat = await setup.cosign("gbr", now=time.time() + 60)
    assert not repeat.new
    assert repeat.stored == again.cosignature
    report = await verify_log(setup.auditor.client, home, witnesses=setup.pinned("gbr"))
    assert report.ok, report.problems
    await setup.cosign("fra")
    report = await verify_log(setup.auditor.client, home, witnesses=setup.pinned("gbr", "fra"))
    assert report.ok, report.problems
    # The checkpoint verified twice, with more cosignatures the second time, is held once.
    held = export_checkpoints(home, setup.auditor.client.server)["checkpoints"]
    assert [notes.Checkpoint.parse(notes.split_note(n)[0]).size for n in held] == [
        first.size,
        grown.size,
    ]
    assert held[-1].count("\n\u2014 ") == 3
    # An older checkpoint is served with its own cosignatures.
    older = await setup.auditor.client.request(
        "GET", "/v1/audit/checkpoint", params={"size": first.size}
    )
    assert first.cosignature in older["note"]


async def test_a_missing_cosignature_fails_when_required(setup: Setup, tmp_path: Path) -> None:
    await setup.cosign("gbr")
    report = await verify_log(
        setup.auditor.client, tmp_path / "a", witnesses=setup.pinned("gbr", "fra")
    )
    assert not report.ok
    size = report.size
    assert report.problems == [
        f"checkpoint of size {size}: the checkpoint has 1 valid cosignatures of the 2 "
        "required from the witnesses pinned (missing: witness.fra.example/w1)"
    ]
    # Nothing was saved from a failed verification: the next one starts afresh.
    report = await verify_log(
        setup.auditor.client, tmp_path / "a", witnesses=setup.pinned("gbr", "fra"), min_witnesses=1
    )
    assert report.ok, report.problems
    assert report.previous_size is None


async def test_a_forged_cosignature_is_named(setup: Setup, tmp_path: Path) -> None:
    await setup.cosign("gbr")
    await setup.cosign("fra")
    # The malicious server swaps FRA's signature bytes for GBR's under FRA's name and key id.
    async with setup.world.app.state.sessionmaker() as session, session.begin():
        rows = {r.witness: r for r in (await session.execute(select(AuditCosignature))).scalars()}
        gbr_blob = rows["witness.gbr.example/w1"].line.split(" ")[2]
        fra_line = rows["witness.fra.example/w1"].line
        name, blob = fra_line.split(" ")[1], fra_line.split(" ")[2]
        forged_blob = base64.b64decode(blob)[:12] + base64.b64decode(gbr_blob)[12:]
        forged = f"\u2014 {name} {base64.b64encode(forged_blob).decode()}\n"
        await session.execute(
            update(AuditCosignature).where(AuditCosignature.witness == name).values(line=forged)
        )
    report = await verify_log(
        setup.auditor.client, tmp_path / "a", witnesses=setup.pinned("gbr", "fra"), min_witnesses=1
    )
    assert not report.ok
    assert (
        f"checkpoint of size {report.size}: the cosignature of witness witness.fra.example/w1 "
        "does not verify with its pinned key: forged"
    ) in report.problems


async def test_a_witness_refuses_a_fork_and_an_auditor_comparing_catches_it(
    setup: Setup, tmp_path: Path
) -> None:
    cosigned = await setup.cosign("gbr")
    home = tmp_path / "auditor"
    assert (await verify_log(setup.auditor.client, home)).ok

    # Same size, another root: the witness refuses, and nothing is posted.
    forked_note = await _fork(setup.world, cosigned.size)
    with pytest.raises(
        WitnessError, match=f"FORK: the log served a checkpoint of size {cosigned.size} with root"
    ):
        await setup.cosign("gbr")
    # Another auditor was shown the forked checkpoint; comparing with it names the fork.
    theirs = {"format": "attache-audit-checkpoints", "version": 1, "checkpoints": [forked_note]}
    server = setup.auditor.client.server
    report = await compare_checkpoints(setup.auditor.client, home, server, theirs)
    assert not report.ok
    assert report.forks == [
        f"FORK: their checkpoint of size {cosigned.size} has root "
        f"{hashlib.sha256(b'another history').hexdigest()}, but the log verified here has root "
        f"{cosigned.root.hex()} at that size"
    ]
    # Our own checkpoints agree with themselves.
    mine = export_checkpoints(home, server)
    assert (await compare_checkpoints(None, home, server, mine)).agreed == 1


async def test_a_witness_refuses_a_larger_checkpoint_that_does_not_extend(
    setup: Setup, tmp_path: Path
) -> None:
    cosigned = await setup.cosign("gbr")
    home = tmp_path / "auditor"
    assert (await verify_log(setup.auditor.client, home)).ok
    grown = await setup.more("second")
    forked_note = await _fork(setup.world, grown.size)
    with pytest.raises(
        WitnessError,
        match=f"FORK: the checkpoint of size {grown.size} is not consistent with the size "
        f"{cosigned.size} this witness cosigned",
    ):
        await setup.cosign("gbr")
    # An auditor holding the smaller checkpoint is shown, by another, the forked larger one.
    theirs = {"format": "attache-audit-checkpoints", "version": 1, "checkpoints": [forked_note]}
    report = await compare_checkpoints(
        setup.auditor.client, home, setup.auditor.client.server, theirs
    )
    assert report.forks == [
        f"FORK: their checkpoint of size {grown.size} is not consistent with the "
        f"{cosigned.size} leaves verified here (the consistency proof fails)"
    ]


async def test_a_replayed_older_checkpoint_is_refused(setup: Setup, tmp_path: Path) -> None:
    first = await _checkpoint_row(setup.world)
    grown = await setup.more("second")
    await setup.cosign("gbr")
    home = tmp_path / "auditor"
    assert (await verify_log(setup.auditor.client, home, witnesses=setup.pinned("gbr"))).ok
    # The malicious server serves the older checkpoint again (with its old cosignatures).
    async with setup.world.app.state.sessionmaker() as session, session.begin():
        await session.execute(delete(AuditCheckpoint).where(AuditCheckpoint.size == grown.size))
    with pytest.raises(
        WitnessError,
        match=f"served a checkpoint of size {first.size}, older than the size {grown.size} "
        "this witness cosigned: a rollback or a replayed checkpoint",
    ):
        await setup.cosign("gbr")
    report = await verify_log(setup.auditor.client, home)
    assert any("the log was rolled back" in p for p in report.problems)
    # An auditor that never verified before is shown the old checkpoint, honestly cosigned
    # long ago: only a limit on the cosignatures' age refuses it.
    async with setup.world.app.state.sessionmaker() as session, session.begin():
        await session.execute(delete(AuditCosignature))
    old = await setup.cosign("fra", now=time.time() - 7200)
    assert old.size == first.size
    fresh = tmp_path / "fresh"
    assert (await verify_log(setup.auditor.client, fresh, witnesses=setup.pinned("fra"))).ok
    report = await verify_log(
        setup.auditor.client, tmp_path / "fresh2", witnesses=setup.pinned("fra"), max_age=3600
    )
    assert not report.ok
    assert "too old: witness.fra.example/w1, cosigned 720" in report.problems[0]


async def test_a_signature_not_by_the_log_key_is_refused(setup: Setup) -> None:
    await setup.cosign("gbr")
    grown = await setup.more("second")
    other = notes.NoteSigner(setup.world.app.state.audit_signer.name, Ed25519PrivateKey.generate())
    note = notes.sign_checkpoint(Checkpoint.parse(notes.split_note(grown.note)[0]), other)
    async with setup.world.app.state.sessionmaker() as session, session.begin():
        await session.execute(
            update(AuditCheckpoint).where(AuditCheckpoint.size == grown.size).values(note=note)
        )
    with pytest.raises(WitnessError, match="does not verify with the log key"):
        await setup.cosign("gbr")


async def _post(member: Member, body: Any) -> httpx.Response:
    return await member.client._http.post(
        "/v1/audit/cosignatures",
        json=body,
        headers={"Authorization": f"Bearer {member.client.token}"},
    )


async def test_bad_cosignatures_are_clear_problems(setup: Setup) -> None:
    latest = await _checkpoint_row(setup.world)
    body = notes.split_note(latest.note)[0]
    gbr = setup.gbr
    good = gbr.cosign(body, 1_800_000_000 - 10**8)
    ok = {"size": latest.size, "vkey": gbr.vkey(), "cosignature": good.line()}
    fra_key = setup.fra.vkey()
    log_vkey = setup.world.app.state.audit_signer.vkey()
    future = gbr.cosign(body, 4_000_000_000)
    other_body = Checkpoint.parse(body)
    moved = gbr.cosign(Checkpoint(other_body.origin, latest.size, b"\x01" * 32).body(), 1)
    cases: list[tuple[Member, dict[str, Any], int, str, str | None]] = [
        (setup.alice, ok, 403, "only auditors read the audit log", None),
        (setup.gbr_auditor, {**ok, "vkey": "nonsense"}, 422, "vkey: a witness key is", "vkey"),
        (setup.gbr_auditor, {**ok, "vkey": log_vkey}, 422, "not a witness key", "vkey"),
        (setup.gbr_auditor, {**ok, "cosignature": "- x y"}, 422, "em dash", "cosignature"),
        (setup.gbr_auditor, {**ok, "vkey": fra_key}, 422, "not those of the witness key", None),
        (setup.gbr_auditor, {**ok, "size": latest.size + 1000}, 404, "no checkpoint of size", None),
        (setup.gbr_auditor, {**ok, "cosignature": future.line()}, 422, "in the future", None),
        (setup.gbr_auditor, {**ok, "cosignature": moved.line()}, 422, "does not verify", None),
        (setup.gbr_auditor, {**ok, "extra": 1}, 422, "", None),
        (setup.gbr_auditor, {**ok, "size": -1}, 422, "", None),
    ]
    for member, sent, status, detail, field in cases:
        answer = await _post(member, sent)
        assert answer.status_code == status, (sent, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        problem = answer.json()
        assert detail in problem["detail"], problem
        if field is not None:
            assert problem["field"] == field
    async with setup.world.app.state.sessionmaker() as session:
        assert (await session.execute(select(func.count(AuditCosignature.size)))).scalar() == 0
    stored = await _post(setup.gbr_auditor, ok)
    assert stored.status_code == 201
    assert stored.json()["cosignature"] == good.line()
    # Asking for the latest checkpoint some witnesses cosigned, badly.
    for params, field in [
        ({"size": "1", "witness": "w"}, "size"),
        ({"min_witnesses": "1"}, "min_witnesses"),
        ({"witness": "w", "min_witnesses": "2"}, "min_witnesses"),
    ]:
        wrong = await setup.auditor.client._http.get(
            "/v1/audit/checkpoint",
            params=params,
            headers={"Authorization": f"Bearer {setup.auditor.client.token}"},
        )
        assert wrong.status_code == 422, wrong.text
        assert wrong.json()["field"] == field
    nobody = await setup.auditor.client._http.get(
        "/v1/audit/checkpoint",
        params={"witness": "witness.nobody/w1"},
        headers={"Authorization": f"Bearer {setup.auditor.client.token}"},
    )
    assert nobody.status_code == 404
    assert nobody.json()["witness"] == ["witness.nobody/w1"]
    # The witness view refuses a size that is not one.
    refused = await setup.gbr_auditor.client._http.get(
        "/v1/audit/witness",
        params={"old": "-1"},
        headers={"Authorization": f"Bearer {setup.gbr_auditor.client.token}"},
    )
    assert refused.status_code == 422
    assert refused.headers["content-type"] == "application/problem+json"


async def test_the_same_cosignature_posted_at_once_is_stored_once(
    setup: Setup, live_url: str
) -> None:
    latest = await _checkpoint_row(setup.world)
    body = notes.split_note(latest.note)[0]
    line = setup.gbr.cosign(body, 1_700_000_000).line()
    headers = {"Authorization": f"Bearer {setup.gbr_auditor.client.token}"}
    call = Call(
        "POST",
        "/v1/audit/cosignatures",
        json={"size": latest.size, "vkey": setup.gbr.vkey(), "cosignature": line},
        headers=headers,
    )
    responses = await race(live_url, [call] * 12)
    assert_no_server_error(responses)
    assert sorted(r.status_code for r in responses) == [200] * 11 + [201]
    assert {json.dumps(r.json(), sort_keys=True) for r in responses} == {
        json.dumps(responses[0].json(), sort_keys=True)
    }
    async with setup.world.app.state.sessionmaker() as session:
        count = (await session.execute(select(func.count(AuditCosignature.size)))).scalar()
    assert count == 1


_line_blobs = st.binary(max_size=100).map(lambda b: base64.b64encode(b).decode())
_texts = st.text(st.characters(codec="utf-8"), max_size=300)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    size=st.integers(min_value=-(2**64), max_value=2**64),
    vkey=_texts | st.builds(lambda t: f"w+00000000+{t}", _texts),
    cosignature=_texts | st.builds(lambda n, b: f"\u2014 {n} {b}", _texts, _line_blobs),
)
async def test_no_cosignature_post_is_a_server_error(
    setup: Setup, size: int, vkey: str, cosignature: str
) -> None:
    answer = await _post(
        setup.gbr_auditor, {"size": size, "vkey": vkey, "cosignature": cosignature}
    )
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.headers["content-type"] == "application/problem+json"


async def test_a_witness_guards_its_state(setup: Setup, tmp_path: Path) -> None:
    state = tmp_path / "gbr-state.json"
    # Two runs at once on one state file: one cosigns, the other is refused before anything.
    outcomes = await asyncio.gather(
        setup.cosign("gbr"), setup.cosign("gbr"), return_exceptions=True
    )
    refused = [o for o in outcomes if isinstance(o, WitnessError)]
    assert len(refused) == 1
    assert "another witness run holds" in str(refused[0])
    # The log key is pinned in the state: another one is refused.
    other = notes.NoteSigner("elsewhere", Ed25519PrivateKey.generate()).vkey()
    with pytest.raises(WitnessError, match="the log key given differs from the one in"):
        await cosign_latest(setup.gbr_auditor.client, setup.gbr, state, log_vkey=other)
    # A damaged state is never started over.
    state.write_text('{"version": 1, "size": 3}', encoding="utf-8")
    with pytest.raises(WitnessError, match=r"is damaged .* restore it from a backup"):
        await setup.cosign("gbr")
