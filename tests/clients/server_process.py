"""A server of its own for a test: uvicorn in another process, on the test app's database and
data directory, so that the test can stop or kill it (a restart, a crash) and start it again
while its clients carry on."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx

from server.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(settings: Settings, origin: str) -> subprocess.Popen[bytes]:
    """A server process on ``settings``' database and data directory, at ``origin``
    (``http://127.0.0.1:PORT``, which is also its public URL)."""
    port = origin.rsplit(":", 1)[1]
    env = {
        **os.environ,
        "ATTACHE_DATA_DIR": str(settings.data_dir),
        "ATTACHE_DATABASE_URL": settings.effective_database_url,
        "ATTACHE_PUBLIC_URL": origin,
        "ATTACHE_PORT": port,
    }
    command = [sys.executable, "-m", "uvicorn", "server.app:create_app", "--factory"]
    return subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", port, "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_until_up(origin: str, process: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        assert process.poll() is None, "the server process stopped"
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{origin}/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError("the server process did not start")


@contextlib.contextmanager
def attache_server_run(
    env: Mapping[str, str], origin: str, log_path: Path, *, timeout: float = 30.0
) -> Iterator[subprocess.Popen[bytes]]:
    """``attache-server run`` as ``make run`` starts it, with ``env`` (its settings), serving
    ``origin``, its output in ``log_path``: up (answering ``/healthz``) when this yields,
    stopped after. A server that stops or does not answer in ``timeout`` seconds fails with
    its output."""
    binary = Path(sys.executable).parent / "attache-server"
    with log_path.open("w+") as log:
        process = subprocess.Popen(
            [str(binary), "run"], env=dict(env), stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + timeout
            with httpx.Client(timeout=1) as http:
                while True:
                    with contextlib.suppress(httpx.TransportError):
                        if http.get(f"{origin}/healthz").status_code == 200:
                            break
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"the server did not start:\n{log_path.read_text()}")
                    time.sleep(0.1)
            yield process
        finally:
            process.terminate()
            process.wait(timeout=10)
