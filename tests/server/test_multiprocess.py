"""Two server processes on one machine, one PostgreSQL database and one data directory
(issue 11, items 3 and 4), started as `attache-server run` starts them, each on its own port
behind a stand-in for a load balancer (``Via``: every client calls the one public origin).

- Item 4: the two processes, started at once in a new data directory, make one audit key
  (the same key and checkpoints signed by it from both), and a document uploaded through
  either is downloaded through the other (the blob store is a directory both reach,
  ATTACHE_BLOB_DIR); a version streaming through one is refused a second stream through the
  other (409) and is not expired from under it by a third process.
- Item 2: a message submitted through one process is delivered live to a stream held by the
  other; one submit sent many times at once through both is stored and delivered once (and
  the roster's tag from one is current at the other); a member removed through one stops
  getting the channel's messages on a stream held by the other at once (its roster notice
  arrives there, and the other's own decisions use the new membership); and a logout
  through one closes the stream held by the other.
- Item 3: the process that integrates the audit log is killed with SIGKILL in the middle of
  a run while events are being written through both; the other takes over within a few
  seconds, and the log has no gap and no fork: every event has exactly one leaf, every stored
  checkpoint is signed by the one key over the root of its prefix, and the auditor's
  verification (clients.sdk.audit.verify_log, what `attache audit verify` runs) passes and
  proves the new checkpoint consistent with the one it verified before the kill. And the
  lock alone: a round that finds it taken leaves at once, and a holder gone silent
  mid-transaction (a vanished machine) loses it after its idle bound.

PostgreSQL only: SQLite is served by one process (``several_processes_refusal``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from clients.sdk import AttacheClient, ConnectionFailed
from clients.sdk.audit import AuditState, verify_log
from clients.sdk.documents import Documents
from protocol import checkpoint as notes
from protocol import merkle
from server.audit import repository as repo
from server.audit.models import AuditCheckpoint, AuditEvent, AuditLeaf
from server.db import migrate
from server.db.base import utcnow
from server.db.engine import create_engine, create_sessionmaker
from server.documents.service import do_expire_uploads
from server.documents.storage import BlobBusy, BlobStore
from server.settings import Settings
from tests.clients.test_messaging import _messenger, _trio, _until
from tests.clients.test_roster_notices import _listening
from tests.conftest import _postgres_database
from tests.factories import World
from tests.server.test_documents_uploads import _pending, _problem, _stall

# The one address clients know, as behind a load balancer; the servers' ATTACHE_PUBLIC_URL.
ORIGIN = "http://attache.test"
SERVER = Path(sys.executable).parent / "attache-server"
REDIS_URL = "redis://127.0.0.1:6379/0"
# "A few seconds": from the integrator's death to every event then written being in a
# checkpoint signed by the other process, which looks every second.
HANDOVER_SECONDS = 5.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Via(httpx.AsyncBaseTransport):
    """Sends every request for ORIGIN to one server process's port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(scheme="http", host="127.0.0.1", port=self.port)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class Server:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def client(self, token: str | None = None) -> AttacheClient:
        return AttacheClient(ORIGIN, token=token, transport=Via(self.port))


def _start(database_url: str, data_dir: Path, blob_dir: Path, log: Path) -> Server:
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("ATTACHE_")}
    env |= {
        "ATTACHE_DATABASE_URL": database_url,
        "ATTACHE_DATA_DIR": str(data_dir),
        "ATTACHE_BLOB_DIR": str(blob_dir),
        "ATTACHE_PUBLIC_URL": ORIGIN,
        "ATTACHE_AUDIT_INTEGRATE_SECONDS": "1",
        # The machine's Redis: the bus between the two (its channel is named after the
        # audit origin, which the two share).
        "ATTACHE_REDIS_URL": REDIS_URL,
        "PYTHONUNBUFFERED": "1",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(SERVER), "run", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return Server(port, process, log)


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"the server stopped at start:\n{server.log.read_text()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"http://127.0.0.1:{server.port}/readyz").status_code == 200:
                return
        time.sleep(0.1)
    pytest.fail(f"the server did not start:\n{server.log.read_text()}")


@pytest.fixture
def database_url() -> Iterator[str]:
    """A migrated PostgreSQL database of this test's own (as `attache-server migrate` does)."""
    for url in _postgres_database():
        migrate.upgrade(url)
        yield url


@pytest.fixture
def servers(database_url: str, tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    """Two `attache-server run` processes started at once, one new data directory, and the
    blobs in a directory of their own (as a shared filesystem would be mounted)."""
    data_dir, blob_dir = tmp_path / "var", tmp_path / "shared" / "blobs"
    pair = (
        _start(database_url, data_dir, blob_dir, tmp_path / "a.log"),
        _start(database_url, data_dir, blob_dir, tmp_path / "b.log"),
    )
    try:
        for server in pair:
            _wait_ready(server)
        yield pair
    finally:
        for server in pair:
            if server.process.poll() is None:
                server.process.terminate()
        for server in pair:
            server.process.wait(timeout=30)
        for server in pair:
            assert "Traceback" not in server.log.read_text(), server.log.read_text()


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    made = create_engine(database_url)
    yield made
    await made.dispose()


@pytest.fixture
async def world(
    servers: tuple[Server, Server], engine: AsyncEngine, database_url: str, tmp_path: Path
) -> AsyncIterator[World]:
    """Factories that write the directory as the console does, and reach the API through the
    first server."""
    settings = Settings(data_dir=tmp_path / "console", database_url=database_url, public_url=ORIGIN)
    state = SimpleNamespace(
        sessionmaker=create_sessionmaker(engine),
        catalog=settings.load_catalog(),
        settings=settings,
    )
    w = World(SimpleNamespace(state=state), Via(servers[0].port), tmp_path / "homes", ORIGIN)
    try:
        yield w
    finally:
        await w.close()


# --- item 4: one data directory, one key, every blob from both -------------------------------


async def test_two_processes_share_one_audit_key_and_every_blob(
    servers: tuple[Server, Server], world: World, tmp_path: Path
) -> None:
    a, b = servers
    keys = (tmp_path / "var" / "keys").iterdir()
    assert [path.name for path in keys] == ["audit-ed25519.pem"]

    t = await _trio(world)  # alice, bob and chloe, signed in through a
    async with a.client() as from_a, b.client() as from_b:
        key_a = await from_a.request("GET", "/v1/audit/key")
        key_b = await from_b.request("GET", "/v1/audit/key")
    assert key_a == key_b
    verifier = notes.NoteVerifier.from_vkey(key_a["vkey"])

    # A version uploaded through each process, downloaded through the other.
    content = {name: os.urandom(150_000 + n) for n, name in enumerate(("one.bin", "two.bin"))}
    for name in content:
        (tmp_path / name).write_bytes(content[name])
    via_b = {m.user.username: b.client(m.client.token) for m in (t.alice, t.bob)}
    try:
        alice_b = await _messenger(t.alice, via_b["alice"])
        bob_b = await _messenger(t.bob, via_b["bob"])
        first = await Documents(t.am).put("liaison", tmp_path / "one.bin")
        second = await Documents(alice_b).put("liaison", tmp_path / "two.bin")
        got = await Documents(bob_b).get(first["id"], tmp_path / "bob" / "one.bin")
        assert got.path.read_bytes() == content["one.bin"]
        got = await Documents(t.bm).get(second["id"], tmp_path / "bob" / "two.bin")
        assert got.path.read_bytes() == content["two.bin"]
        stored = {path.name for path in (tmp_path / "shared" / "blobs").rglob("*-*")}
        assert stored == {first["id"], second["id"]}
        assert not (tmp_path / "var" / "blobs").exists()

        # One writer per blob across the processes: a version streaming through a is refused
        # through b (409, as a second stream within one process is), and taken once it ends.
        (pending,) = await _pending(t, t.alice, 1)
        blobs = BlobStore(tmp_path / "shared" / "blobs")
        stalled = await _stall(f"http://127.0.0.1:{a.port}", t.alice, pending)
        await _held_by_a_stream(blobs, pending.id)
        again = await _stall(f"http://127.0.0.1:{b.port}", t.alice, pending, sent=0)
        try:
            status, headers, body = await again.response()
            _problem(status, headers, body, 409)
            assert body["retry_after"] >= 1
            # Nor does another process's expiry take it from under the stream, idle as it
            # may look (the stream's own process knows it streams; no other does).
            removed = await do_expire_uploads(
                world.app.state.sessionmaker,
                blobs,
                1,
                now=utcnow() + timedelta(days=2),
            )
            assert removed == []
        finally:
            again.close()
            stalled.close()
        headers = {"Authorization": f"Bearer {t.alice.client.token}"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{b.port}") as http:
            for _ in range(100):
                put = await http.put(
                    f"/v1/uploads/{pending.id}/content",
                    content=pending.ciphertext,
                    headers=headers,
                )
                if put.status_code != 409:
                    break
                await asyncio.sleep(0.1)
        assert put.status_code == 200, put.text

        # Each process serves checkpoints that the one key verifies.
        await _wait_integrated(world)
        for client in (t.bob.client, via_b["bob"]):
            latest = await client.request("GET", "/v1/audit/checkpoint")
            notes.open_note(latest["note"], [verifier])
    finally:
        for client in via_b.values():
            await client.aclose()
    await _check_log(world, verifier)


async def _held_by_a_stream(blobs: BlobStore, blob_id: str) -> None:
    """Until a server process streams into the blob (holds its lock)."""
    for _ in range(300):
        try:
            with blobs.writing(blob_id, create=False):
                pass
        except BlobBusy:
            return
        await asyncio.sleep(0.02)
    pytest.fail("the upload did not begin")


# --- item 2: the bus between them ----------------------------------------------------------


async def test_a_message_a_removal_and_a_logout_through_one_reach_a_stream_on_the_other(
    servers: tuple[Server, Server], world: World
) -> None:
    a, b = servers
    t = await _trio(world)  # alice, bob and chloe, signed in through a
    first = await t.am.send("liaison", "before anyone listens")
    channel_id = str(first.channel_id)
    via_b = {m.user.username: b.client(m.client.token) for m in (t.bob, t.chloe)}
    try:
        bob_b = await _messenger(t.bob, via_b["bob"])
        chloe_b = await _messenger(t.chloe, via_b["chloe"])
        for messenger in (bob_b, chloe_b):
            messenger.stream_url = f"ws://127.0.0.1:{b.port}/v1/stream"
        await chloe_b.send("liaison", "chloe, through b")  # her roster, kept on b's side
        assert channel_id in chloe_b._rosters
        async with _listening(bob_b) as bob_got, _listening(chloe_b) as chloe_got:
            # Submitted through a, delivered live by b.
            await t.am.send("liaison", "through a, live on b")
            await _until(lambda: [m.text for m in bob_got] == ["through a, live on b"])
            await _until(lambda: [m.text for m in chloe_got] == ["through a, live on b"])

            # Chloe removed through a: her stream on b hears it at once...
            await t.alice.client.remove_member("liaison", "chloe")
            await _until(lambda: channel_id not in chloe_b._rosters)
            # ...and b decides with the new membership: bob, sending through b, is given a
            # roster without her, and nothing more of the channel reaches her stream.
            after = await bob_b.send("liaison", "through b, after the removal")
            assert t.chloe.device_id not in after.released_to
            await t.am.send("liaison", "through a, after the removal")
            await _until(lambda: len(bob_got) == 3)

            # One submit sent ten times at once through each process, sealed for the roster
            # alice fetched through a (its tag in If-Match, which b must take as its own):
            # stored once, every answer naming it, delivered once.
            answers: list[dict[str, Any]] = []
            submit = t.am.client.submit_message

            async def through_both(channel: str, sealed: dict[str, Any], **kw: Any) -> Any:
                async with (
                    a.client(t.alice.client.token) as on_a,
                    b.client(t.alice.client.token) as on_b,
                ):
                    found = await asyncio.gather(
                        *(c.submit_message(channel, sealed, **kw) for c in (on_a, on_b) * 10)
                    )
                answers.extend(found)
                return found[0]

            t.am.client.submit_message = through_both  # type: ignore[method-assign]
            try:
                once = await t.am.send("liaison", "once, however often it is sent")
            finally:
                t.am.client.submit_message = submit  # type: ignore[method-assign]
            assert len(answers) == 20
            assert {answer["seq"] for answer in answers} == {once.seq}
            await _until(lambda: len(bob_got) == 4)
            await asyncio.sleep(0.5)  # time enough for a stray or repeated push to arrive
            assert [m.text for m in bob_got].count("once, however often it is sent") == 1
            assert len(bob_got) == 4
            assert [m.text for m in chloe_got] == ["through a, live on b"]

        # A logout through a closes the stream bob holds on b, at once.
        async with websockets.connect(f"ws://127.0.0.1:{b.port}/v1/stream") as stream:
            await stream.send(json.dumps({"type": "auth", "token": t.bob.client.token}))
            assert json.loads(await stream.recv())["type"] == "ready"
            await t.bob.client.logout()
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(stream.recv(), 5)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4401
    finally:
        for client in via_b.values():
            await client.aclose()


# --- item 3: the integrator killed mid-run, replaced without a gap or a fork -----------------


async def test_a_killed_integrator_is_replaced_without_a_gap_or_a_fork(
    servers: tuple[Server, Server], world: World, engine: AsyncEngine, tmp_path: Path
) -> None:
    auditor = await world.member("audrey", None, roles=("auditor",))
    clients = {server.pid: server.client(auditor.client.token) for server in servers}
    alive = dict(clients)
    written = 0
    stop = asyncio.Event()

    async def write_events() -> None:
        """Audit events through both processes, without pause: each read of the log is one."""
        nonlocal written
        while not stop.is_set():
            for pid, client in list(alive.items()):
                try:
                    await client.request("GET", "/v1/audit/events", params={"limit": 1})
                    written += 1
                except ConnectionFailed:
                    alive.pop(pid, None)  # the load balancer stops sending it requests

    writer = asyncio.create_task(write_events())
    try:
        await _wait_integrated(world, everything=False)
        home = tmp_path / "auditor"
        before = await verify_log(auditor.client, home)
        assert before.ok, before.problems

        # Catch the integrator in the middle of a run: hold the events waiting to be
        # integrated (as a slow statement would), so that the run that took the lock has
        # written their leaves and waits to mark them. Then kill its process.
        async with engine.connect() as holder:
            pending = await holder.execute(
                text("SELECT id FROM audit_events WHERE leaf_index IS NULL FOR UPDATE")
            )
            assert pending.all(), "the writer keeps events waiting"
            victim = await _integrating_process(engine)
            assert victim in clients, victim
            killed_at = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            await asyncio.to_thread(next(s for s in servers if s.pid == victim).process.wait)
            await holder.rollback()
        async with world.app.state.sessionmaker() as session:
            last_id = await session.scalar(select(func.max(AuditEvent.id)))

        # The survivor's next rounds integrate everything written up to the kill.
        while True:
            async with world.app.state.sessionmaker() as session:
                behind = await session.scalar(
                    select(func.count())
                    .select_from(AuditEvent)
                    .where(AuditEvent.id <= last_id, AuditEvent.leaf_index.is_(None))
                )
            if not behind:
                break
            assert time.monotonic() - killed_at < HANDOVER_SECONDS, f"{behind} not integrated"
            await asyncio.sleep(0.05)
        handover = time.monotonic() - killed_at
        written_at_kill = written
        while written < written_at_kill + 20:  # and events go on being written and integrated
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await writer
    await _wait_integrated(world)
    survivor = next(client for pid, client in clients.items() if pid != victim)
    try:
        after = await verify_log(survivor, home)
    finally:
        for client in clients.values():
            await client.aclose()
    assert after.ok, after.problems
    assert after.previous_size == before.size < after.size
    pinned = AuditState(home, ORIGIN).vkey()
    assert pinned is not None
    verifier = notes.NoteVerifier.from_vkey(pinned)
    await _check_log(world, verifier)
    print(f"handover in {handover:.2f} s")


async def test_a_round_skips_at_once_while_another_process_integrates(
    engine: AsyncEngine,
) -> None:
    """The lock is tried, never waited for: a process finds it taken and leaves at once
    (holding no pooled connection behind the integrator); once free, the round that takes it
    names itself and bounds its statements and idle moments."""
    sessions = create_sessionmaker(engine)
    async with engine.connect() as other:
        await other.execute(text("SELECT pg_advisory_xact_lock(hashtext('attache-audit'))"))
        async with sessions() as session, session.begin():
            started = time.monotonic()
            assert not await repo.claim_integrator(session, "attache-integrator 1@here", 30)
            assert time.monotonic() - started < 1
        await other.rollback()
    async with sessions() as session, session.begin():
        assert await repo.claim_integrator(session, "attache-integrator 1@here", 30)
        shown = await session.execute(
            text(
                "SELECT current_setting('application_name'),"
                " current_setting('statement_timeout'),"
                " current_setting('idle_in_transaction_session_timeout')"
            )
        )
        assert shown.one() == ("attache-integrator 1@here", "30s", "30s")
    async with sessions() as session, session.begin():  # for that transaction only
        shown = await session.execute(text("SELECT current_setting('statement_timeout')"))
        assert shown.scalar_one() == "0"


async def test_a_holder_gone_silent_lets_go_within_its_bound(engine: AsyncEngine) -> None:
    """A machine that vanishes leaves its connection open and silent, mid-transaction:
    PostgreSQL ends that transaction once it has been idle for the bound (30 s in the
    server, 1 s here), and the lock with it."""
    sessions = create_sessionmaker(engine)
    vanished = sessions()
    assert await repo.claim_integrator(vanished, "attache-integrator 1@gone", 1)
    started = time.monotonic()
    while True:
        async with sessions() as session, session.begin():
            if await repo.claim_integrator(session, "attache-integrator 2@here", 30):
                break
        assert time.monotonic() - started < 10
        await asyncio.sleep(0.1)
    assert 0.9 < time.monotonic() - started
    await (await vanished.connection()).invalidate()
    await vanished.close()


async def _integrating_process(engine: AsyncEngine) -> int:
    """The pid of the server process whose integrator holds the lock and waits mid-run."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        async with engine.connect() as connection:
            names = (
                await connection.execute(
                    text(
                        "SELECT application_name FROM pg_stat_activity"
                        " WHERE application_name LIKE 'attache-integrator %'"
                        " AND wait_event_type = 'Lock'"
                    )
                )
            ).scalars()
            for name in names:
                found = re.fullmatch(r"attache-integrator (\d+)@.*", name)
                assert found is not None, name
                return int(found[1])
        await asyncio.sleep(0.05)
    pytest.fail("no integrator was caught in the middle of a run")


async def _wait_integrated(world: World, *, everything: bool = True) -> None:
    """Until every event written so far is in the log (or, while a writer keeps writing, until
    some are)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        async with world.app.state.sessionmaker() as session:
            pending = await session.scalar(
                select(func.count()).select_from(AuditEvent).where(AuditEvent.leaf_index.is_(None))
            )
            integrated = await session.scalar(select(func.count()).select_from(AuditLeaf))
        if integrated and not (everything and pending):
            return
        await asyncio.sleep(0.1)
    pytest.fail("the audit log is not integrated")


async def _check_log(world: World, verifier: notes.NoteVerifier) -> None:
    """No gap and no fork in what the database holds: leaves 0..n-1, one per event and each
    the hash of its event's body; every checkpoint signed with the one key, over the root of
    the leaves below its size. Called once nothing writes any more."""
    await _wait_integrated(world)
    async with world.app.state.sessionmaker() as session:
        leaves = (
            await session.execute(
                select(AuditLeaf.index, AuditLeaf.leaf_hash, AuditEvent.body, AuditEvent.leaf_index)
                .join(AuditEvent, AuditEvent.id == AuditLeaf.event_id)
                .order_by(AuditLeaf.index)
            )
        ).all()
        events = await session.scalar(select(func.count()).select_from(AuditEvent))
        checkpoints = (
            (await session.execute(select(AuditCheckpoint).order_by(AuditCheckpoint.size)))
            .scalars()
            .all()
        )
    assert [leaf.index for leaf in leaves] == list(range(events))
    for leaf in leaves:
        assert leaf.leaf_index == leaf.index
        assert bytes(leaf.leaf_hash) == merkle.leaf_hash(leaf.body.encode("utf-8"))
    assert checkpoints
    builder = merkle.RootBuilder()
    hashes = iter(bytes(leaf.leaf_hash) for leaf in leaves)
    for stored in checkpoints:
        while builder.size < stored.size:
            builder.add(next(hashes))
        body, _ = notes.open_note(stored.note, [verifier])
        signed = notes.Checkpoint.parse(body)
        assert (signed.size, signed.root) == (stored.size, bytes(stored.root))
        assert signed.root == builder.root()
    assert checkpoints[-1].size == events
