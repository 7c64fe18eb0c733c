"""The releasability gate reads each label once per catalog (server.channels.service.known_label):
what it remembers must never let a label through that the catalog in force refuses."""

from __future__ import annotations

import pytest

from protocol.catalog import load_default_catalog
from protocol.labels import LabelError, parse_label, render_label
from server.channels.service import known_label

CATALOG = load_default_catalog()


def _form(banner: str, originator: str = "USA") -> dict:
    catalog = CATALOG.with_directory(["ZZZ"], {})
    return parse_label(banner, catalog, originator=originator).canonical()


def test_a_label_is_read_once_per_catalog_and_form() -> None:
    form = parse_label("NATO SECRET//REL TO USA, GBR", CATALOG, originator="USA").canonical()
    first = known_label(form, CATALOG)
    assert first.label == parse_label("NATO SECRET//REL TO USA, GBR", CATALOG, originator="USA")
    assert first.banner == render_label(first.label, CATALOG)
    assert known_label(dict(form), CATALOG) is first


def test_what_one_catalog_accepts_is_decided_again_under_another() -> None:
    form = _form("NATO SECRET//REL TO USA, ZZZ")
    wider = CATALOG.with_directory(["ZZZ"], {})
    assert known_label(form, wider).label.releasable_to == ("USA", "ZZZ")
    for _ in range(2):  # refused each time, not remembered as accepted
        with pytest.raises(LabelError, match="ZZZ"):
            known_label(form, CATALOG)


def test_a_form_that_is_not_the_canonical_one_is_refused_every_time() -> None:
    form = parse_label("NATO SECRET//REL TO USA, GBR", CATALOG, originator="USA").canonical()
    for odd in ({**form, "note": "x"}, {**form, "level": "secret"}):
        for _ in range(2):
            with pytest.raises(LabelError):
                known_label(odd, CATALOG)
    assert known_label(form, CATALOG).label.level == "SECRET"
