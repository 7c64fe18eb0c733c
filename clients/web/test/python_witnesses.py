"""Prints, with the Python clients/sdk/keystore.py, what the web client's witness test holds
the TypeScript to (JSON on standard input: ``[{"vkeys", "min", "max_age"}, ...]``, or
``{"current": {...}, "next": {...} | null}`` for a change): for each case, the requirement
``WitnessRequirement.of`` makes (``{"keys", "min", "max_age"}``, as transparency.json keeps
it) or the KeystoreError's message; for a change, ``loosened_by``'s sentences. Run by
test/witnesses.test.ts with the project's virtual environment; not a pytest module."""

from __future__ import annotations

import json
import sys
from typing import Any

from clients.sdk.keystore import KeystoreError, WitnessRequirement


def main() -> None:
    results: list[dict[str, Any]] = []
    for case in json.load(sys.stdin):
        if "current" in case:
            current, new = case["current"], case["next"]
            made = WitnessRequirement.of(current["vkeys"], current["min"], current["max_age"])
            changed = (
                None
                if new is None
                else WitnessRequirement.of(new["vkeys"], new["min"], new["max_age"])
            )
            results.append({"loosened": made.loosened_by(changed)})
            continue
        try:
            made = WitnessRequirement.of(case["vkeys"], case["min"], case["max_age"])
            results.append(made.to_json())
        except KeystoreError as exc:
            results.append({"error": str(exc)})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
