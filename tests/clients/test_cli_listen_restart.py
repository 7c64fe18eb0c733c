"""``attache listen`` survives a server restart (issue 10, item 4): the server runs as a process
of its own; the CLI listens in another; the server is stopped (SIGTERM, a restart) or killed
(SIGKILL, a crash) mid-listen, a message is sent while it is down (through the test's app, on
the same database), and a server started again on the same address brings the listener back:
it shows what was sent meanwhile, then live messages, each once, each with where it was sent,
and nothing from before it started."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys

import pytest

from clients.sdk import AttacheClient, Messenger
from server.settings import Settings
from tests.clients.server_process import free_port, serve, wait_until_up
from tests.factories import PASSPHRASE, Member, World

REL_USA_GBR = "NATO SECRET//REL TO USA, GBR"
WAIT = 60.0


@pytest.fixture
def origin() -> str:
    """The address the server process serves, and the one the homes record (login proofs are
    bound to it): a free port, not bound by the test, so that each server process can."""
    return f"http://127.0.0.1:{free_port()}"


class _Output:
    """What a process writes on one of its streams, read as it comes."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.text = ""
        self._stream = stream

    async def expect(self, pattern: str, since: int = 0) -> re.Match[str]:
        """The first match of ``pattern`` in what was written from offset ``since`` on."""

        async def read() -> re.Match[str]:
            while (found := re.compile(pattern, re.M).search(self.text, since)) is None:
                line = await self._stream.readline()
                if not line:
                    raise AssertionError(f"the stream ended before {pattern!r}:\n{self.text}")
                self.text += line.decode("utf-8")
            return found

        try:
            return await asyncio.wait_for(read(), WAIT)
        except TimeoutError:
            raise AssertionError(f"no {pattern!r} in time:\n{self.text}") from None


async def _listen(member: Member, count: int) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "ATTACHE_HOME": str(member.keystore.home),
        "ATTACHE_PASSPHRASE": PASSPHRASE,
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "200",
        "NO_COLOR": "1",
    }
    code = "from clients.cli import main; main()"
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        "listen",
        "--count",
        str(count),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _messenger(member: Member, client: AttacheClient) -> Messenger:
    return await Messenger.from_client(
        client, member.keystore, member.device_keys, owns_client=False
    )


def _stop(process: subprocess.Popen[bytes], how: signal.Signals) -> None:
    process.send_signal(how)
    process.wait(30)


async def test_listen_survives_server_restarts(
    world: World, settings: Settings, origin: str
) -> None:
    for nation in ("USA", "GBR"):
        await world.nation(nation)
    alice = await world.member("alice", "USA")
    bob = await world.member("bob", "GBR")
    await alice.client.create_channel("liaison", "NATO SECRET")
    await alice.client.add_member("liaison", "bob")
    # Through the test's app (same database): sent before the listener starts, never shown.
    local = await _messenger(alice, alice.client)
    await local.send("liaison", "old news", label=REL_USA_GBR)

    server = serve(settings, origin)
    remote = AttacheClient(origin, token=alice.client.token)
    listener: asyncio.subprocess.Process | None = None
    try:
        await asyncio.to_thread(wait_until_up, origin, server)
        listener = await _listen(bob, count=4)
        assert listener.stdout is not None
        assert listener.stderr is not None
        out, err = _Output(listener.stdout), _Output(listener.stderr)
        await out.expect(r"^listening as bob; Ctrl-C to stop$")
        over_the_wire = await _messenger(alice, remote)

        # Stopped (a restart) before anything was shown, then (a crash) after something was:
        # each time a message is sent while no server answers the listener, and it must
        # neither be lost nor bring back what came before.
        for n, how in enumerate((signal.SIGTERM, signal.SIGKILL), start=1):
            since = len(err.text)
            await asyncio.to_thread(_stop, server, how)
            await err.expect(r"; connecting again in \d+\.\d s$", since)
            await local.send("liaison", f"while it was down {n}", label=REL_USA_GBR)
            server = serve(settings, origin)
            await asyncio.to_thread(wait_until_up, origin, server)
            await err.expect(r"^connected again; 1 message\(s\) sent meanwhile follow$", since)
            await out.expect(rf"^while it was down {n}$")
            await over_the_wire.send("liaison", f"live {n}", label=REL_USA_GBR)
            await out.expect(rf"^live {n}$")
        assert await asyncio.wait_for(listener.wait(), WAIT) == 0
        out.text += (await listener.stdout.read()).decode("utf-8")
    finally:
        await remote.aclose()
        if listener is not None and listener.returncode is None:
            listener.kill()
            await listener.wait()
        server.kill()
        server.wait()

    shown = re.findall(
        r"^#(\d+)  from alice \(USA\)  .* UTC  in channel liaison  id \S+\n(.*)$", out.text, re.M
    )
    assert [text for _, text in shown] == [
        "while it was down 1",
        "live 1",
        "while it was down 2",
        "live 2",
    ], out.text
    seqs = [int(seq) for seq, _ in shown]
    assert seqs == sorted(seqs)
    assert "old news" not in out.text
    assert "WARNING" not in out.text
