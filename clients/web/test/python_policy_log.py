"""Prints, with the Python protocol/policy_log.py, what the web client's policy log test holds
the TypeScript to (JSON on standard input: ``[{"answer", "vkey", "policy", "held"}, ...]``,
``policy`` a policy document, ``held`` null or ``{"size", "root"}``): for each case, what
``verify_publication`` returns (``{"size", "root", "index", "digest"}``) or the refusal's
class and message. Run by test/policy_log.test.ts with the project's virtual environment;
not a pytest module."""

from __future__ import annotations

import json
import sys

from protocol import checkpoint as notes
from protocol.coalition import parse_policy
from protocol.policy_log import verify_publication
from protocol.transparency import TransparencyError, _b64u, _b64u_decode


def main() -> None:
    results = []
    for case in json.load(sys.stdin):
        held = case["held"]
        try:
            verified = verify_publication(
                case["answer"],
                log_key=notes.NoteVerifier.from_vkey(case["vkey"]),
                policy=parse_policy(case["policy"]),
                held=None if held is None else (held["size"], _b64u_decode(held["root"], "root")),
            )
            results.append(
                {
                    "size": verified.size,
                    "root": _b64u(verified.root),
                    "index": verified.index,
                    "digest": verified.publication.digest,
                }
            )
        except TransparencyError as exc:
            results.append({"refused": type(exc).__name__, "error": str(exc)})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
