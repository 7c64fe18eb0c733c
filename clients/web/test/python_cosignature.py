"""Prints, with the Python protocol/cosignature.py, what the web client's cosignature test
holds the TypeScript to (JSON on standard input: ``{"checks": [{"note", "vkeys", "now",
"max_age", "minimum"}, ...], "vkeys": [...]}``): for each check, what ``check_witnesses``
finds (``{"valid", "forged", "missing", "stale", "problems"}``) or the CheckpointError's
message; for each vkey, the witness's name or the refusal's message. Run by
test/cosignature.test.ts with the project's virtual environment; not a pytest module."""

from __future__ import annotations

import json
import sys

from protocol.checkpoint import CheckpointError
from protocol.cosignature import CosignatureVerifier, check_witnesses


def main() -> None:
    data = json.load(sys.stdin)
    checks = []
    for case in data["checks"]:
        try:
            found = check_witnesses(
                case["note"],
                [CosignatureVerifier.from_vkey(v) for v in case["vkeys"]],
                now=case["now"],
                max_age=case["max_age"],
            )
            checks.append(
                {
                    "valid": found.valid,
                    "forged": list(found.forged),
                    "missing": list(found.missing),
                    "stale": found.stale,
                    "problems": found.problems(case["minimum"]),
                }
            )
        except CheckpointError as exc:
            checks.append({"error": str(exc)})
    vkeys = []
    for vkey in data["vkeys"]:
        try:
            vkeys.append({"name": CosignatureVerifier.from_vkey(vkey).name})
        except CheckpointError as exc:
            vkeys.append({"error": str(exc)})
    json.dump({"checks": checks, "vkeys": vkeys}, sys.stdout)


if __name__ == "__main__":
    main()
