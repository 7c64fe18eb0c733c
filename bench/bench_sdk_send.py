"""The SDK's CPU per ``Messenger.send`` with the audience unchanged, in multiples of V.

Run: ``.venv/bin/python bench/bench_sdk_send.py [--runs 7] [--sends 200] [--nations 10]
[--per-nation 5] [--py-spy RAW] [--cprofile]``; about half a minute. Not part of the test
suite, and never a timed test.

A fresh SQLite database in a temporary directory, ``--nations`` NATO nations with real authority
keys and ``--per-nation`` users each, cleared NATO SECRET, each with an enrolled and certified
device, all in one channel (seeded in this process through the API over
``httpx.ASGITransport``); then uvicorn serves it in a process of its own, as
``attache-server run`` does, and the client, a second process (this script with ``--role
client``, which imports what a client program imports and nothing of the server's), opens a
``Messenger`` for the first member and sends. Its first sends fetch the channel, its roster
(every certificate verified) and make the audience; after them every send is the steady path:
one AEAD encryption, one Ed25519 signature and the submit.

Each run is ``--sends`` sends, each timed by ``time.process_time()`` in the client process
(the server's CPU is its own process's); the sends that made a new audience (one in
``MAX_AUDIENCE_MESSAGES``) are left out of the figure, which is the steady path's. V, the CPU
time of one Ed25519 verification with pyca/cryptography (bench/_common.py), is taken in the
client just before and just after each run, and a run's cost is stated in the mean of the
two. The report gives the median with the minimum and maximum over the runs, in ms and in V,
and the share of the client's CPU spent in the kernel. ``--py-spy RAW`` samples the client
with py-spy (1,000 a second, raw collapsed stacks into RAW), which counts the time the
client waits on a busy core as well; ``--cprofile`` prints the client's cProfile (timed by
``time.process_time``) of one more run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from _common import (
    CHANNEL,
    LABEL,
    NATIONS,
    PASSPHRASE,
    seed_room,
    served,
    spread,
    unbind_rate_limits,
    verification_seconds,
)

from clients.sdk import Keystore, Messenger
from protocol import keys

if TYPE_CHECKING:
    from server.settings import Settings

WARM_UP = 20  # sends before the first run: the audience made, the code paths warm
TEXT = "the committee meets at 14:00 in room 2. " * 2


async def seed(settings: Settings, homes: Path, nations: int, per_nation: int) -> dict[str, Any]:
    """Nations, users with certified devices, and the channel holding them all."""
    chosen = NATIONS[:nations]
    people = [(f"{n.lower()}{i}", n) for i in range(per_nation) for n in chosen]
    seeded = await seed_room(settings, homes, people)
    return {"home": seeded["members"][0]["home"], "members": len(seeded["members"])}


async def client_main(spec: dict[str, Any]) -> None:
    """The sending client: warm up, then ``runs`` runs of ``sends`` sends; one JSON line."""
    store = Keystore(Path(spec["home"]), kdf=keys.KdfParams.for_tests())
    async with await Messenger.open(store, passphrase=PASSPHRASE) as messenger:
        count = 0

        async def batch(n: int) -> tuple[float, int]:
            """CPU seconds of the sends of ``n`` that kept their audience, and their number:
            every MAX_AUDIENCE_MESSAGES a send makes a new one (its seals), not the steady
            path."""
            nonlocal count
            total, kept = 0.0, 0
            for _ in range(n):
                count += 1
                audience = next(iter(messenger._audiences.values()), None)
                start = time.process_time()
                sent = await messenger.send(CHANNEL, f"{count}: {TEXT}", label=LABEL)
                cpu = time.process_time() - start
                assert not sent.excluded
                if next(iter(messenger._audiences.values())) is audience:
                    total, kept = total + cpu, kept + 1
            return total, kept

        await batch(WARM_UP)
        runs = []
        for _ in range(spec["runs"]):
            before = verification_seconds()
            usage = resource.getrusage(resource.RUSAGE_SELF)
            cpu, kept = await batch(spec["sends"])
            system = resource.getrusage(resource.RUSAGE_SELF).ru_stime - usage.ru_stime
            after = verification_seconds()
            runs.append(
                {
                    "cpu_per_send_s": cpu / kept,
                    "sends": kept,
                    "v_s": (before + after) / 2,
                    "system_share": system / cpu,  # of every send's, the new audiences' too
                }
            )
        if spec["cprofile"]:
            import cProfile
            import pstats

            profile = cProfile.Profile(time.process_time)  # CPU, not the waits
            profile.enable()
            await batch(spec["sends"])
            profile.disable()
            pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(45)
    print(json.dumps({"runs": runs, "sends": count}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--sends", type=int, default=200, help="sends per run")
    parser.add_argument("--nations", type=int, default=10, choices=range(1, len(NATIONS) + 1))
    parser.add_argument("--per-nation", type=int, default=5)
    parser.add_argument("--py-spy", help="sample the client with py-spy into this raw file")
    parser.add_argument("--cprofile", action="store_true", help="cProfile one more run")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("spec", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "client":
        asyncio.run(client_main(json.loads(args.spec)))
        return
    from server.db import migrate
    from server.settings import Settings

    unbind_rate_limits()
    with tempfile.TemporaryDirectory() as tmp, socket.socket() as probe:
        base = Path(tmp)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        url = f"sqlite+aiosqlite:///{base / 'bench.db'}"
        migrate.upgrade(url)
        settings = Settings(
            data_dir=base / "var", database_url=url, public_url=f"http://127.0.0.1:{port}"
        )
        started = time.perf_counter()
        seeded = asyncio.run(seed(settings, base / "homes", args.nations, args.per_nation))
        print(f"seeded {seeded['members']} members in {time.perf_counter() - started:.1f} s")
        spec = {"home": seeded["home"], "runs": args.runs, "sends": args.sends}
        spec["cprofile"] = args.cprofile
        command = [sys.executable, str(Path(__file__).resolve()), "--role", "client"]
        command.append(json.dumps(spec))
        if args.py_spy:
            py_spy = str(Path(sys.executable).parent / "py-spy")
            command = [py_spy, "record", "-r", "1000", "-f", "raw", "-o", args.py_spy, "--"]
            command += [sys.executable, str(Path(__file__).resolve()), "--role", "client"]
            command.append(json.dumps(spec))
        with served(settings, port):
            done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    # py-spy says on stdout what it wrote: the client's answer is its JSON line.
    answer = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("{")))
    runs = answer["runs"]
    ms = spread([r["cpu_per_send_s"] * 1e3 for r in runs])
    v_us = spread([r["v_s"] * 1e6 for r in runs])
    in_v = spread([r["cpu_per_send_s"] / r["v_s"] for r in runs])
    steady = sum(r["sends"] for r in runs)
    print(
        f"{len(runs)} runs of {args.sends} sends to {seeded['members']} members; {steady} kept "
        "their audience and are counted (each MAX_AUDIENCE_MESSAGES-th makes a new one)"
    )
    print(f"  CPU per send: {ms['median']:.3f} ms ({ms['min']:.3f} to {ms['max']:.3f})")
    print(f"  V: {v_us['median']:.1f} µs ({v_us['min']:.1f} to {v_us['max']:.1f})")
    print(f"  = {in_v['median']:.2f} V ({in_v['min']:.2f} to {in_v['max']:.2f})")
    system = spread([r["system_share"] * 100 for r in runs])
    print(f"  in the kernel: {system['median']:.0f}% ({system['min']:.0f} to {system['max']:.0f})")
    each = ", ".join(f"{r['cpu_per_send_s'] / r['v_s']:.2f}" for r in runs)
    print(f"  per run, V: {each}")


if __name__ == "__main__":
    main()
