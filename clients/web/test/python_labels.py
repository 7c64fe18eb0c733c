"""Prints, with the Python protocol/ code, the canonical form, banner and colour of each label
the web client's labels test names (JSON on standard input: [[banner, originator], ...]), so
that the test holds the TypeScript rendering to Python's. Not a pytest module."""

from __future__ import annotations

import json
import sys

from protocol.catalog import load_default_catalog
from protocol.labels import parse_label, render_label


def main() -> None:
    catalog = load_default_catalog()
    out = []
    for banner, originator in json.load(sys.stdin):
        label = parse_label(banner, catalog, originator=originator)
        level = catalog.policies[label.policy].level(label.level)
        assert level is not None
        out.append(
            {
                "canonical": label.canonical(),
                "banner": render_label(label, catalog),
                "colour": level.colour,
            }
        )
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
