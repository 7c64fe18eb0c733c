"""Prints, with the Python protocol/ code, what the web client's labels test holds the
TypeScript to (JSON on standard input: ``{"banners": [[banner, originator], ...],
"decisions": [{"clearance", "nationality", "label": [banner, originator], "ceiling",
"member"}, ...]}``): each banner's canonical form, rendering and colour, and each decision's
reasons. Run by test/labels.test.ts with the project's virtual environment; not a pytest
module."""

from __future__ import annotations

import json
import sys

from protocol.catalog import load_default_catalog
from protocol.labels import parse_clearance, parse_label, render_label
from protocol.policy import Container, Subject, decide


def main() -> None:
    catalog = load_default_catalog()
    data = json.load(sys.stdin)
    labels = []
    for banner, originator in data["banners"]:
        label = parse_label(banner, catalog, originator=originator)
        level = catalog.policies[label.policy].level(label.level)
        assert level is not None
        labels.append(
            {
                "canonical": label.canonical(),
                "banner": render_label(label, catalog),
                "colour": level.colour,
            }
        )
    decisions = []
    for case in data["decisions"]:
        clearance = parse_clearance(case["clearance"], catalog)
        label = parse_label(case["label"][0], catalog, originator=case["label"][1])
        ceiling = parse_label(case["ceiling"], catalog)
        members = frozenset({"user"} if case["member"] else set())
        subject = Subject("user", case["nationality"], clearance)
        decision = decide(subject, label, Container("channel", ceiling, members), catalog)
        decisions.append(
            {
                "clearance": clearance.canonical(),
                "label": label.canonical(),
                "ceiling": ceiling.canonical(),
                "reasons": list(decision.reasons),
            }
        )
    json.dump({"labels": labels, "decisions": decisions}, sys.stdout)


if __name__ == "__main__":
    main()
