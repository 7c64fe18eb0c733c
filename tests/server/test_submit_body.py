"""The submit's body read by orjson (``read_message_create``) against pydantic's
``MessageCreate``: the same value for every body, or the same 422.

The fast path may only take a body pydantic would take, as pydantic would give it; anything
it does not take plainly goes through pydantic. Property-tested with JSON values of the form
and near it (extra or missing fields, wrong types, NUL, floats, huge integers, bad base64url),
as text, and with raw bytes that are not JSON at all.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.exceptions import RequestValidationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.channels.schemas import MAX_HEADER_FIELDS, MessageCreate, read_message_create
from server.schemas import parse_body

_SIGNATURE = "A" * 85 + "w"  # 64 bytes, canonical unpadded base64url

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.sampled_from(["\x00", "a\x00b", "\ud7ff", "é"]),
)
_json = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.text(max_size=4) | st.just("k\x00"), inner, max_size=3),
    ),
    max_leaves=8,
)
_headers = st.dictionaries(st.text(max_size=12), _json, max_size=MAX_HEADER_FIELDS + 2)
_bodies = st.one_of(st.text(min_size=0, max_size=16), _json)
_signatures = st.one_of(
    st.just(_SIGNATURE),
    st.sampled_from(["", "A", "AB", "AB==", "A+/b", "AAB", "AAE", "x" * 4097, "x" * 4096]),
    st.text(alphabet="ABCDEFabcdef0123456789-_", max_size=12),
    _json,
)


@st.composite
def _submits(draw: st.DrawFn) -> Any:
    """A well-formed submit (about half the time taken as it is), then perhaps one change."""
    value: dict[str, Any] = {
        "header": draw(_headers),
        "body": draw(st.text(alphabet="ABCDabcd0123-_", min_size=1, max_size=16)),
        "signature": _SIGNATURE,
    }
    change = draw(st.sampled_from(["none", "none", "header", "body", "signature", "drop", "add"]))
    if change in ("header", "body", "signature"):
        value[change] = draw({"header": _json, "body": _bodies, "signature": _signatures}[change])
    elif change == "drop":
        del value[draw(st.sampled_from(["header", "body", "signature"]))]
    elif change == "add":
        value[draw(st.sampled_from(["extra", "Header", "body\x00"]))] = draw(_json)
    return value


def _errors(exc: RequestValidationError) -> str:
    # An error's context holds the exception raised, which compares by identity.
    return json.dumps(exc.errors(), default=repr, sort_keys=True)


def _pydantic(raw: bytes) -> tuple[str, Any]:
    try:
        return "value", parse_body(MessageCreate, raw).model_dump()
    except RequestValidationError as exc:
        return "422", _errors(exc)


def _fast(raw: bytes) -> tuple[str, Any]:
    try:
        return "value", read_message_create(raw)
    except RequestValidationError as exc:
        return "422", _errors(exc)


def _same(raw: bytes) -> None:
    fast, slow = _fast(raw), _pydantic(raw)
    assert fast == slow
    if fast[0] == "value":
        # Not only equal: of the same types (an integer read as a float would compare equal).
        assert json.dumps(fast[1], sort_keys=True) == json.dumps(slow[1], sort_keys=True)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(_submits())
def test_a_json_body_reads_as_pydantic_reads_it(value: Any) -> None:
    _same(json.dumps(value).encode())


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=40) | st.text(max_size=40).map(str.encode))
def test_bytes_that_are_not_a_body_read_as_pydantic_reads_them(raw: bytes) -> None:
    _same(raw)


@pytest.mark.parametrize(
    "raw",
    [
        # A well-formed submit: the fast path takes it.
        b'{"header":{"a":1,"label":{"x":["y"]}},"body":"AAAA","signature":"%s"}',
        # Read differently by orjson (a float) and pydantic (an integer): left to pydantic.
        b'{"header":{"n":123456789012345678901234567890},"body":"A","signature":"%s"}',
        b'{"header":{"n":18446744073709551616},"body":"A","signature":"%s"}',
        # A lone surrogate orjson refuses and pydantic reads.
        b'{"header":{"s":"\\ud800"},"body":"A","signature":"%s"}',
        # Duplicate keys: the last wins, in both.
        b'{"header":{},"header":{"a":1},"body":"A","signature":"%s"}',
        # NUL, in a value and in a key.
        b'{"header":{"a":"\\u0000"},"body":"A","signature":"%s"}',
        b'{"header":{"\\u0000":1},"body":"A","signature":"%s"}',
        # Not canonical base64url.
        b'{"header":{},"body":"A","signature":"AAE"}',
        b"[1]",
        b"",
    ],
)
def test_edge_cases_read_as_pydantic_reads_them(raw: bytes) -> None:
    _same(raw.replace(b"%s", _SIGNATURE.encode()))


def test_the_fast_path_takes_a_plain_submit_without_pydantic(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*_: Any) -> None:
        raise AssertionError("pydantic was asked")

    monkeypatch.setattr("server.channels.schemas.parse_body", refuse)
    raw = b'{"header":{"a":[1,"b",null,true]},"body":"AAAA","signature":"%s"}'
    assert read_message_create(raw.replace(b"%s", _SIGNATURE.encode())) == {
        "header": {"a": [1, "b", None, True]},
        "body": "AAAA",
        "signature": _SIGNATURE,
    }
