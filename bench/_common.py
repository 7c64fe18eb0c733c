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
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from server.settings import Settings


# What the reports say of the rate limits (server/ratelimit.py), which they raise out of reach.
RATE_LIMITS_NOTE = (
    "Rate limits: raised out of reach (10^9 a minute and bursts of 10^9, every kind), so they "
    "never bind; this measures the server's work, not its limiter (tests/server/"
    "test_rate_limits.py measures a flood under the shipped limits)."
)


def unbind_rate_limits() -> str:
    """Raise every rate limit out of reach in this process's environment, which the seeding
    app (in this process) and the served server (a child) both read; returns the report's
    sentence saying so. A benchmark seeds hundreds of devices from one address and sends as
    fast as it can: the shipped limits would refuse it, and measure themselves."""
    for kind in ("LOGIN", "ENROL", "SUBMIT", "UPLOAD"):
        for what in ("PER_MINUTE", "BURST"):
            os.environ[f"ATTACHE_RATE_LIMIT_{kind}_{what}"] = str(10**9)
    return RATE_LIMITS_NOTE


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn's workers, and what they start)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rpartition(")")[2].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def verification_seconds(count: int = 1000) -> float:
    """V now: the CPU time of one Ed25519 verification (pyca/cryptography), over ``count`` of
    them (a fifth of a second). Taken just before and after each one-room run
    (docs/operations.md): these machines' speed moves within minutes."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    signer = ed25519.Ed25519PrivateKey.generate()
    data = b"attache bench V" * 4
    public, signature = signer.public_key(), signer.sign(data)
    start = time.process_time()
    for _ in range(count):
        public.verify(signature, data)
    return (time.process_time() - start) / count


def pin(pid: int, cpus: Collection[int]) -> None:
    """Run process ``pid`` on ``cpus`` only. Called just after the process is started, before
    it starts threads of its own: the threads it starts later take its cores."""
    os.sched_setaffinity(pid, set(cpus))


def spread(values: list[float]) -> dict[str, float]:
    """The median of ``values`` with the minimum and maximum."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


@contextlib.contextmanager
def served(
    settings: Settings,
    port: int,
    extra_env: Mapping[str, str] | None = None,
    cpus: Collection[int] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """The database and keys served by a real uvicorn on ``port``: ``settings.workers``
    processes sharing it (as `attache-server run` with ATTACHE_WORKERS), joined by the Redis
    bus when ``settings.redis_url`` is set. With several, the process returned is uvicorn's
    supervisor and the servers are its children (``process_tree``). With ``cpus``, the
    server runs on those cores only (``pin``)."""
    env = {
        **os.environ,
        "ATTACHE_DATA_DIR": str(settings.data_dir),
        "ATTACHE_DATABASE_URL": settings.effective_database_url,
        "ATTACHE_PUBLIC_URL": settings.effective_public_url,
        "ATTACHE_GC_FREEZE": "true",  # as `attache-server run` serves it
        **(extra_env or {}),
    }
    if settings.redis_url is not None:
        env["ATTACHE_REDIS_URL"] = settings.redis_url.get_secret_value()
    command = [sys.executable, "-m", "uvicorn", "--factory", "server.app:create_app"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(settings.workers)]
    # As `attache-server run` serves it: no per-message deflate (ciphertext does not compress)
    # and no protocol-level pings (the stream pings at its own level).
    command += ["--ws-per-message-deflate", "false", "--ws-ping-interval", "0"]
    process = subprocess.Popen([*command, "--log-level", "warning"], env=env)
    if cpus is not None:
        pin(process.pid, cpus)
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
        if settings.workers > 1:
            # The first worker answers before the others have started: wait for them all,
            # subscribed to the bus (each answers /readyz once it is).
            for _ in range(300):
                if len(process_tree(process.pid)) > settings.workers:
                    break
                time.sleep(0.1)
            for _ in range(10 * settings.workers):
                httpx.get(f"{settings.effective_public_url}/readyz").raise_for_status()
            time.sleep(1.0)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


# --- the benchmarks' room --------------------------------------------------------------------

NATIONS = ("USA", "GBR", "FRA", "DEU", "ITA", "ESP", "NLD", "CAN", "POL", "NOR")  # all NATO
CHANNEL = "room"
CEILING = "NATO SECRET"
LABEL = "NATO SECRET//REL TO NATO"
PASSPHRASE = "bench passphrase"


async def seed_room(
    settings: Settings,
    homes: Path,
    people: Sequence[tuple[str, str]],
    idle: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """The benchmarks' room, made through the API: the nations of ``people`` and ``idle``
    (username, nation), each user cleared for ``CEILING`` with one certified device signed in
    (a key store under ``homes``, cheap KDF parameters), and ``CHANNEL`` holding ``people``,
    made by the first; ``idle`` enrolled but members of nothing. Returns the origin,
    ``members`` and ``crowd`` (the idle), each a username, nation, device_id, token and home,
    and the authorities."""
    from clients.sdk import AttacheClient, Keystore, certify_device, enroll
    from protocol import keys
    from server.app import create_app
    from server.auth.principal import CONSOLE
    from server.devices.service import do_issue_enrolment_code
    from server.directory import service as directory

    app = create_app(settings)
    origin = settings.effective_public_url
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        nations = dict.fromkeys(nation for _, nation in [*people, *idle])
        authorities = {n: keys.AuthorityKey.generate() for n in nations}
        codes: dict[str, str] = {}
        async with app.state.sessionmaker() as session, session.begin():
            catalog = await directory.load_catalog(session, app.state.catalog)
            for nation, authority in authorities.items():
                await directory.do_create_nation(
                    session,
                    CONSOLE,
                    catalog,
                    code=nation,
                    name=nation,
                    authority_key=authority.public_bytes(),
                )
            catalog = await directory.load_catalog(session, app.state.catalog)
            for username, nation in [*people, *idle]:
                user = await directory.do_create_user(
                    session,
                    CONSOLE,
                    catalog,
                    username=username,
                    nationality=nation,
                    clearance=CEILING,
                    roles=["officer"],
                )
                codes[username] = (
                    await do_issue_enrolment_code(session, CONSOLE, settings, user)
                ).code

        async def enrol(username: str, nation: str) -> dict[str, str]:
            store = Keystore(homes / username, kdf=keys.KdfParams.for_tests())
            enrolled = await enroll(
                origin,
                username=username,
                code=codes[username],
                device_name=f"{username}-bench",
                passphrase=PASSPHRASE,
                keystore=store,
                transport=transport,
            )
            async with AttacheClient(origin, transport=transport) as client:
                device = await certify_device(client, nation, authorities[nation], enrolled.device)
                assert device["status"] == "active", device
                session = await client.login(device["id"], store.device_keys(PASSPHRASE))
            return {
                "username": username,
                "nation": nation,
                "device_id": device["id"],
                "token": session["token"],
                "home": str(homes / username),
            }

        members = [await enrol(u, n) for u, n in people]
        crowd = [await enrol(u, n) for u, n in idle]
        async with AttacheClient(origin, token=members[0]["token"], transport=transport) as owner:
            await owner.create_channel(CHANNEL, CEILING)
            for member in members[1:]:
                await owner.add_member(CHANNEL, member["username"])
            assert len(await owner.roster(CHANNEL)) == len(members)
    return {"origin": origin, "members": members, "crowd": crowd, "authorities": authorities}
