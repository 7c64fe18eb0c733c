"""What the benchmarks share: figures with their spread, and the server in its own process.

Imported by the bench scripts as a sibling module (``python bench/bench_x.py`` puts this
folder first on the path).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from server.settings import Settings


def spread(values: list[float]) -> dict[str, float]:
    """The median of ``values`` with the minimum and maximum."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


@contextlib.contextmanager
def served(settings: Settings, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """The database and keys served by a real uvicorn, one process, on ``port``."""
    env = {
        **os.environ,
        "ATTACHE_DATA_DIR": str(settings.data_dir),
        "ATTACHE_DATABASE_URL": settings.effective_database_url,
        "ATTACHE_PUBLIC_URL": settings.effective_public_url,
    }
    command = [sys.executable, "-m", "uvicorn", "--factory", "server.app:create_app"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    # As `attache-server run` serves it: no per-message deflate (ciphertext does not compress).
    command += ["--ws-per-message-deflate", "false"]
    process = subprocess.Popen([*command, "--log-level", "warning"], env=env)
    try:
        for _ in range(300):
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{settings.effective_public_url}/healthz").status_code == 200:
                    break
            if process.poll() is not None:
                raise RuntimeError("the server stopped before it started")
            time.sleep(0.1)
        else:
            raise RuntimeError("the server did not start")
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)
