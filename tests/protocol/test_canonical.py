"""canonical_json: RFC 8785 bytes, by the fast path or by rfc8785, always the same."""

from __future__ import annotations

from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.canonical import (
    CanonicalizationError,
    Encoded,
    canonical_json,
    copy_json,
    digest,
    with_context,
)

texts = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=("Cs",)))
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | texts
    | st.floats(allow_nan=False, allow_infinity=False)
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(texts, children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=400)
@given(st.dictionaries(texts, values, max_size=6))
def test_same_bytes_as_rfc8785(value: dict[str, Any]) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


def _containers(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [value, *(c for item in value.values() for c in _containers(item))]
    if isinstance(value, list):
        return [value, *(c for item in value for c in _containers(item))]
    return []


@settings(max_examples=200)
@given(st.dictionaries(texts, values, max_size=6))
def test_copy_json_is_equal_and_shares_nothing_changeable(value: dict[str, Any]) -> None:
    copied = copy_json(value)
    assert copied == value
    assert canonical_json(copied) == canonical_json(value)
    originals = {id(c) for c in _containers(value)}
    assert not originals & {id(c) for c in _containers(copied)}
    copied["added"] = [1]
    assert "added" not in value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"b": 1, "a": [True, None, "x"]}, b'{"a":[true,null,"x"],"b":1}'),
        ({"s": '\x1f\x7f\u2028"\\\n'}, b'{"s":"\\u001f\x7f\xe2\x80\xa8\\"\\\\\\n"}'),
        # UTF-16 order: U+1F600 (D83D DE00) sorts before U+FB01 though its code point is higher.
        ({"\ufb01": 1, "\U0001f600": 2}, '{"\U0001f600":2,"\ufb01":1}'.encode()),
        ({"f": 1.5, "g": 1e21}, b'{"f":1.5,"g":1e+21}'),
    ],
)
def test_known_answers(value: dict[str, Any], expected: bytes) -> None:
    assert canonical_json(value) == expected


@pytest.mark.parametrize(
    "value",
    [{"n": 2**53}, {"n": float("nan")}, {1: "x"}, {"b": b"bytes"}, {"s": "\ud800"}],
)
def test_values_json_cannot_carry_exactly_are_refused(value: dict[Any, Any]) -> None:
    with pytest.raises(CanonicalizationError):
        canonical_json(value)


def test_context_strings_are_separated() -> None:
    assert with_context("a", b"b") == b"a\x00b"
    assert digest("a", b"bc") != digest("ab", b"c")
    with pytest.raises(ValueError, match="NUL"):
        with_context("a\x00", b"")


# --- parts encoded once (Encoded) ------------------------------------------------------------

placeholders = st.sampled_from(["\x000\x00", "\x001\x00", "\x002\x00"])  # what the splice writes


@settings(max_examples=300)
@given(
    st.dictionaries(texts | placeholders, values | placeholders, max_size=4),
    st.lists(values, min_size=1, max_size=3),
    st.data(),
)
def test_encoded_parts_give_the_bytes_of_their_values(
    value: dict[str, Any], parts: list[Any], data: st.DataObject
) -> None:
    """Wherever encoded parts sit (once or more, beside strings equal to the placeholders the
    splice uses, beside floats), the bytes are those of the document holding the values."""
    wrapped = [Encoded(part) for part in parts]
    with_parts, with_values = dict(value), dict(value)
    for n, part in enumerate(wrapped):
        key = data.draw(texts, label=f"key {n}")
        places = data.draw(st.integers(min_value=1, max_value=2), label=f"places {n}")
        with_parts[key] = part if places == 1 else [part, {"again": part}]
        with_values[key] = part.value if places == 1 else [part.value, {"again": part.value}]
    assert canonical_json(with_parts) == rfc8785.dumps(with_values)


def test_an_encoded_part_is_written_as_it_is_not_encoded_again() -> None:
    part = Encoded([{"device_id": "d1", "user_id": "u1", "nation": "USA"}])
    assert part.text == '[{"device_id":"d1","nation":"USA","user_id":"u1"}]'
    # A part's text is trusted: what it says is written, whatever its value holds since.
    part.value.append("changed afterwards")
    assert canonical_json({"released_to": part, "v": 1}) == (
        b'{"released_to":[{"device_id":"d1","nation":"USA","user_id":"u1"}],"v":1}'
    )
