"""Benchmark of protocol/merkle.py: what a full audit and the proof endpoints cost.

Run: ``.venv/bin/python bench/bench_merkle.py [--runs N] [--leaves N]``. Writes
``bench/results/merkle.json`` and prints a Markdown table. Every figure is the median of
``--runs`` runs with its spread (minimum and maximum); the inputs come from a fixed seed, so
two runs on one machine measure the same work. Not part of the test suite.

Measured:
  * SHA-256 of one 64-byte leaf entry with the 0x00 prefix (``leaf_hash``), the floor of any
    verifier that must read every entry;
  * ``RootBuilder`` over ``--leaves`` leaf hashes already computed, and end to end from the
    entries (leaf hashing included), as leaves per second: an auditor's full recomputation;
  * inclusion and consistency proof generation from an in-memory node dict (a ``MerkleTree``
    of ``--leaves`` leaves) and their verification, per proof, at random indices and sizes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import ssl
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from protocol.merkle import (
    MerkleTree,
    RootBuilder,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)

RESULTS = Path(__file__).resolve().parent / "results" / "merkle.json"
ENTRY_SIZE = 64
PROOFS_PER_RUN = 2000


def _runs(function: Callable[[], float], runs: int) -> dict[str, float]:
    """Median, minimum and maximum of ``runs`` calls of ``function`` (each returns a value)."""
    values = [function() for _ in range(runs)]
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": runs,
    }


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--leaves", type=int, default=1_000_000)
    args = parser.parse_args()
    runs: int = args.runs
    count: int = args.leaves

    rng = random.Random(20261124)
    entries = [rng.randbytes(ENTRY_SIZE) for _ in range(count)]
    hashes = [leaf_hash(entry) for entry in entries]
    sha256 = hashlib.sha256

    def raw_sha256_us() -> float:
        elapsed = _timed(lambda: [sha256(b"\x00" + entry).digest() for entry in entries])
        return elapsed / count * 1e6

    def builder_leaves_per_s() -> float:
        def build() -> bytes:
            builder = RootBuilder()
            builder.add_many(hashes)
            return builder.root()

        return count / _timed(build)

    def end_to_end_leaves_per_s() -> float:
        def build() -> bytes:
            builder = RootBuilder()
            builder.add_many(leaf_hash(entry) for entry in entries)
            return builder.root()

        return count / _timed(build)

    results: dict[str, Any] = {}
    results["sha256_leaf_us"] = _runs(raw_sha256_us, runs)
    results["root_builder_leaves_per_s"] = _runs(builder_leaves_per_s, runs)
    results["root_builder_end_to_end_leaves_per_s"] = _runs(end_to_end_leaves_per_s, runs)
    full_audit_s = count / results["root_builder_end_to_end_leaves_per_s"]["median"]

    build_start = time.perf_counter()
    tree = MerkleTree(hashes)
    build_s = time.perf_counter() - build_start
    size = tree.size
    tree_root = tree.root()
    roots: dict[int, bytes] = {}

    def inclusion_cases() -> list[tuple[int, list[bytes]]]:
        indices = [rng.randrange(size) for _ in range(PROOFS_PER_RUN)]
        return [(index, tree.inclusion_proof(index)) for index in indices]

    def consistency_cases() -> list[tuple[int, list[bytes]]]:
        olds = [rng.randrange(1, size) for _ in range(PROOFS_PER_RUN)]
        return [(old, tree.consistency_proof(old)) for old in olds]

    def inclusion_us() -> float:
        indices = [rng.randrange(size) for _ in range(PROOFS_PER_RUN)]
        elapsed = _timed(lambda: [tree.inclusion_proof(index) for index in indices])
        return elapsed / PROOFS_PER_RUN * 1e6

    def consistency_us() -> float:
        olds = [rng.randrange(1, size) for _ in range(PROOFS_PER_RUN)]
        elapsed = _timed(lambda: [tree.consistency_proof(old) for old in olds])
        return elapsed / PROOFS_PER_RUN * 1e6

    def verify_inclusion_us() -> float:
        cases = inclusion_cases()

        def check() -> None:
            for index, proof in cases:
                assert verify_inclusion(hashes[index], index, size, proof, tree_root)

        return _timed(check) / PROOFS_PER_RUN * 1e6

    def verify_consistency_us() -> float:
        cases = consistency_cases()
        for old, _ in cases:
            if old not in roots:
                roots[old] = tree.root(old)

        def check() -> None:
            for old, proof in cases:
                assert verify_consistency(old, size, roots[old], tree_root, proof)

        return _timed(check) / PROOFS_PER_RUN * 1e6

    results["inclusion_proof_us"] = _runs(inclusion_us, runs)
    results["consistency_proof_us"] = _runs(consistency_us, runs)
    results["verify_inclusion_us"] = _runs(verify_inclusion_us, runs)
    results["verify_consistency_us"] = _runs(verify_consistency_us, runs)

    report = {
        "benchmark": "merkle",
        "parameters": {
            "leaves": count,
            "entry_bytes": ENTRY_SIZE,
            "runs": runs,
            "proofs_per_run": PROOFS_PER_RUN,
            "seed": 20261124,
        },
        "environment": {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "machine": platform.machine(),
            "processor": platform.processor() or "unknown",
            "cpu_count": os.cpu_count(),
            "openssl": ssl.OPENSSL_VERSION,
        },
        "results": results,
        "derived": {
            "full_audit_seconds": full_audit_s,
            "tree_build_seconds": build_s,
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(_markdown(report))


def _markdown(report: dict[str, Any]) -> str:
    rows = [
        ("SHA-256 of one 64-byte leaf", "sha256_leaf_us", "µs", 3),
        ("RootBuilder, leaf hashes given", "root_builder_leaves_per_s", "leaves/s", 0),
        ("RootBuilder, from entries", "root_builder_end_to_end_leaves_per_s", "leaves/s", 0),
        ("inclusion proof generation", "inclusion_proof_us", "µs", 1),
        ("consistency proof generation", "consistency_proof_us", "µs", 1),
        ("inclusion proof verification", "verify_inclusion_us", "µs", 1),
        ("consistency proof verification", "verify_consistency_us", "µs", 1),
    ]
    parameters = report["parameters"]
    lines = [
        f"Merkle benchmark: {parameters['leaves']:,} leaves, {parameters['runs']} runs "
        f"(Python {report['environment']['python']}, {report['environment']['openssl']})",
        "",
        "| measure | median | min | max | unit |",
        "|---|---:|---:|---:|---|",
    ]
    for label, key, unit, digits in rows:
        figure = report["results"][key]
        cells = [f"{figure[name]:,.{digits}f}" for name in ("median", "min", "max")]
        lines.append(f"| {label} | {' | '.join(cells)} | {unit} |")
    derived = report["derived"]
    lines += [
        "",
        f"Full audit of {parameters['leaves']:,} entries (hash and root): "
        f"{derived['full_audit_seconds']:.2f} s; building the node dict: "
        f"{derived['tree_build_seconds']:.2f} s.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
