"""Shared pieces of the wire schemas: strict models and bounded, validated field types."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    StringConstraints,
    ValidationError,
    model_validator,
)

from protocol import keys


class StrictModel(BaseModel):
    """Request models refuse unknown fields, so a typo is an error rather than ignored, and
    text holding the NUL character anywhere (``holds_nul``)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        if holds_nul(data):
            raise ValueError(NUL_REFUSED)
        return data


NUL_REFUSED = "text may not hold the NUL character (U+0000)"


def holds_nul(value: Any) -> bool:
    """Whether a JSON value holds U+0000 in any string or key. PostgreSQL cannot store it in
    text or JSON (the driver fails: a server error) while SQLite can, so it is refused on
    input, on both, before anything reads or stores it. Nothing Attaché carries needs it:
    binary travels as base64url."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(holds_nul(k) or holds_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(holds_nul(v) for v in value)
    return False


class ReadModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


M = TypeVar("M", bound=BaseModel)


def parse_body(model: type[M], raw: bytes) -> M:
    """A JSON request body as ``model``, refused as FastAPI refuses a body parameter (422,
    each error located under ``body``), for a route that reads its body itself."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        ) from None


# The largest value a database integer column (SQLite INTEGER, PostgreSQL BIGINT) holds: any
# integer from a client that is compared with one must be bounded by it, or the driver fails.
MAX_INT64 = 2**63 - 1
# The largest value of a 32-bit integer column (PostgreSQL INTEGER: policy versions).
MAX_INT32 = 2**31 - 1
# The largest integer every JSON reader holds exactly (RFC 8785 refuses larger ones): the bound
# for integers that are echoed into signed, canonical JSON such as an audit event.
MAX_JSON_INT = 2**53 - 1


def _as_utc(value: datetime) -> datetime:
    """A time in UTC. One written without a zone is taken to be UTC already, as people type
    dates at a command line; one that leaves the calendar once in UTC is refused."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("this time is outside the years 1 to 9999 in UTC") from exc


# A time in UTC: without a zone it is read as UTC.
UTCTime = Annotated[datetime, AfterValidator(_as_utc)]


def _b64u(value: str) -> str:
    keys.b64u_decode(value)  # raises ValueError with a clear message
    return value


NationCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
GroupName = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_-]{1,31}$")]
Username = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{1,63}$")]
ShortText = Annotated[str, StringConstraints(max_length=120)]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=64)]
MAX_B64U_TEXT = 4096
B64u = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_B64U_TEXT), AfterValidator(_b64u)
]
LabelText = Annotated[str, StringConstraints(min_length=1, max_length=512)]
