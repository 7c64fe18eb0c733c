"""Prints, with the CLI's own code, what `attache audit log --format csv` and `--format json`
write for the entries given as JSON on standard input (``[{"id", "leaf_index", "event",
"actor_username", "object_username"}, ...]``), as ``{"csv": text, "json": text}``: the web
client's audit test holds its exports to them. Run by test/audit.test.ts with the project's
virtual environment; not a pytest module."""

from __future__ import annotations

import json
import sys

from clients.cli.audit import FIELDS
from clients.cli.terminal import csv_text


def main() -> None:
    entries = json.load(sys.stdin)
    # As clients/cli/terminal.py's Terminal.csv and Terminal.json write them.
    text = csv_text(
        [heading for heading, _ in FIELDS],
        [[cell(entry) for _, cell in FIELDS] for entry in entries],
    )
    exported = json.dumps(entries, indent=2, ensure_ascii=True) + "\n"
    json.dump({"csv": text, "json": exported}, sys.stdout)


if __name__ == "__main__":
    main()
