"""Run Alembic migrations programmatically (used by the CLI, first run and tests), and say
whether a database's schema is the one this code was written for.

On SQLite, ``attache-server run`` migrates at start (one process, the zero-set-up path). On
PostgreSQL, where several processes may start at once, only ``attache-server migrate`` does;
a server started against a database whose schema is not this code's stops and says so
(``schema_problem``), so that processes never race to migrate.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


class SchemaMismatch(RuntimeError):
    """The database's schema is not the one this code was written for (``schema_problem``)."""


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


@cache
def _scripts() -> tuple[str, frozenset[str]]:
    """This code's head revision and every revision it knows (read once per process)."""
    scripts = ScriptDirectory.from_config(alembic_config("sqlite://"))
    known = frozenset(script.revision for script in scripts.walk_revisions())
    return scripts.get_current_head() or "", known


def head_revision() -> str:
    return _scripts()[0]


def known_revisions() -> frozenset[str]:
    return _scripts()[1]


async def current_revisions(connection: AsyncConnection) -> tuple[str, ...]:
    """The revisions the database's schema is at: none for a database never migrated."""

    def read(sync: Connection) -> tuple[str, ...]:
        return tuple(MigrationContext.configure(sync).get_current_heads())

    return await connection.run_sync(read)


def schema_problem(current: tuple[str, ...]) -> str | None:
    """What stands between a database at ``current`` and this code, in one sentence; None
    when its schema is this code's."""
    head, known = _scripts()
    if current == (head,):
        return None
    if not current:
        return (
            "the database has no Attaché schema yet; run 'attache-server migrate' first, "
            "then start the server"
        )
    at = ", ".join(current)
    if not set(current) <= known:
        return (
            f"the database's schema ({at}) is newer than this version of Attaché knows "
            f"(up to {head}); run the Attaché version that migrated it, or a later one"
        )
    return (
        f"the database's schema ({at}) is older than this version of Attaché's ({head}); "
        "run 'attache-server migrate' first, then start the server"
    )
