"""The server's logs: uvicorn's plain text by default, one JSON object per line when
``ATTACHE_LOG_FORMAT=json`` (applied by ``attache-server run``).

No line holds a secret, a token, a key or plaintext. The server never logs a request's body,
headers or query string: in JSON, uvicorn's access log (which prints the query string) is
replaced by the server's own (``server.metrics.RequestMetrics``: route template, path,
status, duration); database errors leave out their statements' parameters
(``hide_parameters``, server/db/engine.py), and SQLAlchemy logs no statements; the
websockets library, whose debug lines print frames (the first frame of a stream holds its
session token), logs warnings only. As a last guard, anything shaped like a bearer
credential is masked before a line is written (tests/server/test_operations.py signs in,
streams and logs out, and looks for the token in every line).
"""

from __future__ import annotations

import copy
import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

# What a record may carry into its JSON line besides its message (``extra=``): names chosen
# here, so that nothing a caller attaches by accident is written.
FIELDS = ("method", "route", "path", "status", "duration_ms", "client")

_CREDENTIAL = re.compile(
    r"""(?ix)
    ( \b bearer \s+
    | \b (?: token | secret | password ) ["']? \s* [:=] \s* ["']?
    )
    [A-Za-z0-9._~+/=-]{6,}
    """
)


def redact(text: str) -> str:
    return _CREDENTIAL.sub(r"\1[redacted]", text)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC), level, logger, message, the known fields,
    and the exception's traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def uvicorn_log_config(log_format: str) -> dict[str, Any]:
    """The ``log_config`` for ``uvicorn.run``: uvicorn's own for text; for JSON, every logger
    (uvicorn's, the server's, the libraries') through ``JsonFormatter`` on standard error."""
    from uvicorn.config import LOGGING_CONFIG

    if log_format != "json":
        return copy.deepcopy(LOGGING_CONFIG)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.access": {"handlers": ["default"], "level": "INFO", "propagate": False},
            # Its debug lines print frames, and a stream's first frame holds its token.
            "websockets": {"level": "WARNING"},
            # At INFO SQLAlchemy logs every statement (echo); the drivers chatter at DEBUG.
            "sqlalchemy": {"level": "WARNING"},
            "aiosqlite": {"level": "WARNING"},
            "asyncpg": {"level": "WARNING"},
            # The start-up's schema check would say which dialect it found, every start.
            "alembic": {"level": "WARNING"},
        },
        "root": {"handlers": ["default"], "level": "INFO"},
    }
