"""Revisions of the server, one room on SQLite, run in turn: an A/B (or A/B/C...) of the
server's CPU per message and its latencies, so that a change is judged against the same
machine's mood.

Run: ``.venv/bin/python bench/ab.py REV_A REV_B [REV_C ...] [--runs N] [--seconds S]
[--database KIND]`` (``make bench-ab A=REV B=REV``). Each revision is checked out into a clone
of its own with a
virtual environment of its own (the project is installed editable, so one environment serves
one checkout), then ``bench/bench_channel.py`` of that revision runs the one-room shape alone
(``--runs 1 --shape-runs 0 --rooms 0``), A, B, A, B, ... ``--runs`` times each, each run on a
fresh database and server. A revision's own bench measures what its server does, so the two
revisions must share the one-room shape (issue 8's bench, from 2026-11 on).

Prints and writes (``bench/results/ab.json`` and ``.md``) per revision the median, minimum and
maximum over its runs of: server CPU per accepted message in V (each run's V, one Ed25519
verification, measured here just before and after that run) and in ms, messages accepted per
second, submit-to-delivered p50 and p99; and each median against A's. Machines change speed
from run to run: taking turns spreads that over every revision, it does not remove it; compare
the spreads too.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import spread, verification_seconds

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "ab.json"
NAMES = "ABCDEFGH"

MEASURES = (
    ("server CPU per message, V", "cpu_v"),
    ("server CPU per message, ms", "cpu_ms"),
    ("messages accepted/s", "accepted_per_s"),
    ("submit-to-delivered p50, ms", "delivered_p50_ms"),
    ("submit-to-delivered p99, ms", "delivered_p99_ms"),
)


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def checkout(revision: str, into: Path) -> str:
    """``revision`` of this repository, cloned into ``into`` with its own environment."""
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", f"{revision}^{{commit}}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(ROOT), str(into)], check=True)
    subprocess.run(["git", "-C", str(into), "checkout", "-q", commit], check=True)
    installed = subprocess.run(
        ["make", "-C", str(into), "-s", ".venv/.installed"], capture_output=True, text=True
    )
    if installed.returncode != 0:  # pip's output only when it failed
        raise RuntimeError(f"installing {revision} failed:\n{installed.stdout}{installed.stderr}")
    return commit


def one_room(clone: Path, args: argparse.Namespace, output: Path) -> dict[str, float]:
    command = [
        str(clone / ".venv" / "bin" / "python"),
        "bench/bench_channel.py",
        "--runs",
        "1",
        "--shape-runs",
        "0",
        "--rooms",
        "0",
        "--seconds",
        str(args.seconds),
        "--database",
        args.database,
        "--output",
        str(output),
    ]
    # V measured here, just before and after the run, the same way for every revision: the
    # machine's speed moves within minutes, and the V a revision's bench measures at its
    # start and end (or, from 2026-11-27, around its window) differs between revisions.
    v0 = verification_seconds()
    subprocess.run(command, cwd=clone, check=True, stdout=subprocess.DEVNULL)
    v = (v0 + verification_seconds()) / 2
    report = json.loads(output.read_text())
    summary = report["databases"][args.database]["one_room"]["summary"]
    cpu = summary["server_cpu_per_message_s"]["median"]
    return {
        "V_us": v * 1e6,
        "cpu_v": cpu / v,
        "cpu_ms": cpu * 1e3,
        "accepted_per_s": summary["accepted_per_s"]["median"],
        "delivered_p50_ms": summary["delivered_ms_p50"]["median"],
        "delivered_p99_ms": summary["delivered_ms_p99"]["median"],
    }


def markdown(result: dict[str, Any]) -> str:
    revisions = result["revisions"]
    names = [r["name"] for r in revisions]
    lines = [
        "# A/B: one room on " + result["database"],
        "",
        ", ".join(f"{r['name']} = `{r['revision']}` ({r['commit'][:10]})" for r in revisions)
        + f"; {result['runs']} runs of each, in turn ({', '.join(names)}, ...);"
        f" {result['seconds']:g} s each (bench/bench_channel.py of each revision, the one-room"
        " shape alone). Figures: median (min to max).",
        "",
        "| measure | "
        + " | ".join(names)
        + " | "
        + " | ".join(f"{n} / A" for n in names[1:])
        + " |",
        "|---" * (1 + 2 * len(names) - 1) + "|",
    ]
    for label, key in (("V (one Ed25519 verification), µs", "V_us"), *MEASURES):
        cells = [
            f"{r['summary'][key]['median']:.1f} ({r['summary'][key]['min']:.1f} to "
            f"{r['summary'][key]['max']:.1f})"
            for r in revisions
        ]
        base = revisions[0]["summary"][key]["median"]
        ratios = [f"{r['summary'][key]['median'] / base:.2f}" for r in revisions[1:]]
        lines.append(f"| {label} | " + " | ".join(cells + ratios) + " |")
    lines += ["", "Run by run, in the order run:", ""]
    lines += ["| run | revision | V, µs | CPU/msg, V | msg/s | p99, ms |", "|---" * 6 + "|"]
    for i, (name, run) in enumerate(result["order"], 1):
        lines.append(
            f"| {i} | {name} | {run['V_us']:.1f} | {run['cpu_v']:.1f} | "
            f"{run['accepted_per_s']:.1f} | {run['delivered_p99_ms']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("revisions", nargs="+", help="revisions, the first the baseline (A)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each revision")
    parser.add_argument("--seconds", type=float, default=30.0, help="each run's window")
    parser.add_argument("--database", default="sqlite", help="sqlite or postgresql")
    parser.add_argument("--output", default=str(RESULTS), help="JSON report (and .md beside)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="attache-ab-") as tmp:
        base = Path(tmp)
        revisions = []
        if len(args.revisions) < 2:
            parser.error("name at least two revisions")
        for name, revision in zip(NAMES, args.revisions, strict=False):
            clone = base / name
            started = time.perf_counter()
            commit = checkout(revision, clone)
            ready = time.perf_counter() - started
            note(f"{name} = {revision} ({commit[:10]}): ready in {ready:.0f} s")
            revisions.append(
                {"name": name, "revision": revision, "commit": commit, "clone": clone, "runs": []}
            )
        order = []
        for i in range(args.runs):
            for rev in revisions:
                name = rev["name"]
                run = one_room(rev["clone"], args, base / f"{name}-{i}.json")
                rev["runs"].append(run)
                order.append((name, run))
                note(
                    f"run {i + 1} {name}: {run['cpu_v']:.1f} V ({run['cpu_ms']:.2f} ms, "
                    f"V = {run['V_us']:.0f} µs), {run['accepted_per_s']:.1f} msg/s, "
                    f"p50/p99 {run['delivered_p50_ms']:.0f}/{run['delivered_p99_ms']:.0f} ms"
                )
    for rev in revisions:
        rev.pop("clone")
        rev["summary"] = {
            key: spread([run[key] for run in rev["runs"]])
            for key in ("V_us", *(key for _, key in MEASURES))
        }
    result = {
        "database": args.database,
        "runs": args.runs,
        "seconds": args.seconds,
        "revisions": revisions,
        "order": order,
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=1) + "\n")
    text = markdown(result)
    output.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
