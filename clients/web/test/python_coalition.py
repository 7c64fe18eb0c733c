"""Prints, with the Python protocol/coalition.py, what the web client's coalition test holds
the TypeScript to (JSON on standard input: ``[{"chain": [signed policy, ...]}, ...]``): for
each chain, verified from its founding version, the digest of its last version or the
PolicyError's message. Run by test/coalition.test.ts with the project's virtual environment;
not a pytest module."""

from __future__ import annotations

import json
import sys

from protocol.coalition import PolicyError, SignedPolicy, verify_chain


def main() -> None:
    results = []
    for case in json.load(sys.stdin):
        try:
            chain = [SignedPolicy.from_json(signed) for signed in case["chain"]]
            results.append({"digest": verify_chain(chain).digest_b64u})
        except PolicyError as exc:
            results.append({"error": str(exc)})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
