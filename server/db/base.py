"""Declarative base, shared column types and constraint naming (so Alembic diffs are stable)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

from sqlalchemy import JSON, DateTime, MetaData, String, TypeDecorator, inspect
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, make_transient_to_detached

from protocol.canonical import copy_json

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    SQLite has no time zone type, so values are stored as naive UTC and made aware on the way
    out; a naive value on the way in is a programming error and is refused.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# JSON on SQLite, JSONB on PostgreSQL.
JSONType = JSON().with_variant(postgresql.JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSONType,
    }


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


ID = String(36)


T = TypeVar("T")


def column_values(instance: object) -> dict[str, Any]:
    """A mapped instance's column values, to keep beyond the session that read it."""
    return {a.key: getattr(instance, a.key) for a in inspect(type(instance)).column_attrs}


def detached(model: type[T], columns: dict[str, Any]) -> T:
    """A detached instance of ``model`` holding ``columns`` (from ``column_values``), as if
    read and let go by a session: a cache hands it out without any session's rollback
    expiring it. Only JSON values (dicts, lists) can be changed in place, so only they are
    copied; strings, bytes and datetimes are immutable and shared as they are."""
    instance = model(
        **{k: copy_json(v) if isinstance(v, dict | list) else v for k, v in columns.items()}
    )
    make_transient_to_detached(instance)
    return instance
