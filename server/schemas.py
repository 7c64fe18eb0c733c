"""Shared pieces of the wire schemas: strict models and bounded, validated field types."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints

from protocol import keys


class StrictModel(BaseModel):
    """Request models refuse unknown fields, so a typo is an error rather than ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class ReadModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


def _b64u(value: str) -> str:
    keys.b64u_decode(value)  # raises ValueError with a clear message
    return value


NationCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
GroupName = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_-]{1,31}$")]
Username = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{1,63}$")]
ShortText = Annotated[str, StringConstraints(max_length=120)]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=64)]
B64u = Annotated[str, StringConstraints(min_length=1, max_length=4096), AfterValidator(_b64u)]
LabelText = Annotated[str, StringConstraints(min_length=1, max_length=512)]
