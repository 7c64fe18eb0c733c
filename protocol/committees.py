"""Committee content: the content types and JSON bodies of the encrypted messages that carry a
meeting's title and place, its agenda items, minutes and action items.

The server sees only the content type (a cleartext header field) and checks it when a message
is linked into a committee's structure; the bodies are end-to-end encrypted and read by clients
alone. Each body is a UTF-8 JSON object; unknown fields are ignored, so later versions may add
some.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

MEETING: Final = "application/vnd.attache.meeting+json"
AGENDA_ITEM: Final = "application/vnd.attache.agenda-item+json"
MINUTES: Final = "application/vnd.attache.minutes+json"
ACTION_ITEM: Final = "application/vnd.attache.action-item+json"
ACTION_ITEM_UPDATE: Final = "application/vnd.attache.action-item-update+json"

CONTENT_TYPES: Final = frozenset({MEETING, AGENDA_ITEM, MINUTES, ACTION_ITEM, ACTION_ITEM_UPDATE})

# What an action item's status may be; the latest update's status wins.
STATUSES: Final = ("open", "in-progress", "done", "cancelled")

# The string fields each body must carry (others are optional strings).
_REQUIRED: Final[Mapping[str, tuple[str, ...]]] = {
    MEETING: ("title",),
    AGENDA_ITEM: ("title",),
    MINUTES: ("text",),
    ACTION_ITEM: ("description", "owner", "status"),
    ACTION_ITEM_UPDATE: ("status",),
}
_OPTIONAL: Final[Mapping[str, tuple[str, ...]]] = {
    MEETING: ("place",),
    AGENDA_ITEM: ("presenter", "notes"),
    MINUTES: (),
    ACTION_ITEM: ("due",),
    ACTION_ITEM_UPDATE: ("note",),
}


class ContentError(ValueError):
    """A committee body that does not have the shape its content type promises."""


def media_type(content_type: str) -> str:
    """``content_type`` without parameters, lower case: what the server and clients compare."""
    return content_type.split(";", 1)[0].strip().lower()


def encode(content_type: str, fields: Mapping[str, str | None]) -> bytes:
    """The body of a committee message of ``content_type``; ``None`` fields are left out."""
    body = {k: v for k, v in fields.items() if v is not None}
    check(content_type, body)
    return json.dumps(body, ensure_ascii=False, sort_keys=True).encode("utf-8")


def decode(content_type: str, plaintext: bytes) -> dict[str, str]:
    """The fields of a committee body, checked against its content type."""
    try:
        body = json.loads(plaintext.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ContentError(f"the body is not UTF-8 JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ContentError("the body is not a JSON object")
    check(content_type, body)
    known = _REQUIRED[media_type(content_type)] + _OPTIONAL[media_type(content_type)]
    return {k: body[k] for k in known if k in body}


def check(content_type: str, body: Mapping[str, Any]) -> None:
    kind = media_type(content_type)
    if kind not in CONTENT_TYPES:
        raise ContentError(f"{content_type} is not a committee content type")
    for name in _REQUIRED[kind]:
        if not isinstance(body.get(name), str) or not body[name].strip():
            raise ContentError(f"{kind} needs a non-empty string {name!r}")
    for name in _OPTIONAL[kind]:
        if name in body and not isinstance(body[name], str):
            raise ContentError(f"{kind} field {name!r} must be a string")
    status = body.get("status")
    if kind in (ACTION_ITEM, ACTION_ITEM_UPDATE) and status not in STATUSES:
        raise ContentError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
