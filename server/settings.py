"""One Settings object for the whole server, read from ``ATTACHE_*`` environment variables."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from protocol.catalog import Catalog, load_default_catalog


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ATTACHE_", extra="ignore")

    # Where the embedded server keeps its database and keys; created on first run.
    data_dir: Path = Path("var")
    # Where document ciphertext goes; empty means data_dir/blobs. Every server process must
    # reach the same directory: across machines, a shared filesystem (docs/deployment.md).
    blob_dir: Path | None = None
    # Empty means the embedded SQLite database inside data_dir; else sqlite+aiosqlite:///PATH
    # or postgresql+asyncpg://USER[:PASSWORD]@HOST[:PORT]/DATABASE (the drivers are implied:
    # sqlite:/// and postgresql:// are read so).
    database_url: str = ""
    # Redis, which carries pushes and changes between server processes (the bus,
    # server/realtime/redis_bus.py). Unset: the in-process bus, for one process.
    redis_url: SecretStr | None = None
    # Server processes on this machine sharing the port (attache-server run). One on SQLite;
    # several need PostgreSQL and the Redis bus (``several_processes_refusal``).
    workers: int = Field(default=1, ge=1, le=256)
    # "json": one JSON object per log line, for a log collector (server/logs.py); applied by
    # attache-server run.
    log_format: Literal["text", "json"] = "text"
    # The bearer token Prometheus presents to scrape /metrics; unset, /metrics is off
    # (docs/operations.md says why).
    metrics_token: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8600, ge=1, le=65535)
    # The origin clients sign into their login proofs, so a proof made for one server cannot
    # be replayed against another. Empty means http://{host}:{port}.
    public_url: str = ""

    session_ttl_seconds: int = Field(default=8 * 3600, ge=60, le=7 * 24 * 3600)
    challenge_ttl_seconds: int = Field(default=120, ge=10, le=3600)
    enrolment_code_ttl_seconds: int = Field(default=72 * 3600, ge=300, le=30 * 24 * 3600)
    # Rate limits (server/ratelimit.py): for each kind of request, a burst that may come at
    # once, refilled at so many per minute; beyond it, 429 with Retry-After. Per process until
    # issue 11 shares them. Sign-in (a login is two requests) and enrolment count per source
    # address, generously: one office behind one NAT address signs in together in the morning.
    # Messages and new document versions count per device: 30 messages at once and then one
    # a second is faster than anyone types, and a whole burst costs other devices little
    # (tests/server/test_rate_limits.py); a script must pace itself.
    rate_limit_login_per_minute: int = Field(default=60, ge=1)
    rate_limit_login_burst: int = Field(default=60, ge=1)
    rate_limit_enrol_per_minute: int = Field(default=30, ge=1)
    rate_limit_enrol_burst: int = Field(default=30, ge=1)
    rate_limit_submit_per_minute: int = Field(default=60, ge=1)
    rate_limit_submit_burst: int = Field(default=30, ge=1)
    rate_limit_upload_per_minute: int = Field(default=30, ge=1)
    rate_limit_upload_burst: int = Field(default=20, ge=1)
    # Websocket stream: time to authenticate, and longest silence from a client before closing.
    ws_auth_seconds: float = Field(default=10.0, gt=0, le=120)
    ws_idle_seconds: float = Field(default=60.0, gt=0, le=3600)
    # Audit log: how often the integrator appends events and signs a checkpoint, and the log's
    # origin line (empty: derived from the public URL).
    audit_integrate_seconds: float = Field(default=1.0, gt=0, le=3600)
    audit_origin: str = ""
    # A label catalog TOML file; empty means the catalog that ships with Attaché.
    catalog_path: Path | None = None
    # Largest request body the API accepts: an audience for several hundred devices fits
    # (documents stream elsewhere, in a later issue).
    max_request_bytes: int = Field(default=4 << 20, ge=1024)
    # Freeze what start-up allocated out of the garbage collector's reach, and collect the
    # youngest generation less often (server/app.py).
    # `attache-server run` turns it on (unless ATTACHE_GC_FREEZE says otherwise); off for an
    # app made in a process that makes many (tests): frozen objects are never collected.
    gc_freeze: bool = False
    # A directory for memory snapshots, to find what holds memory in a running server: when
    # the process traces its allocations (python -X tracemalloc, or PYTHONTRACEMALLOC=1),
    # SIGUSR1 collects garbage and writes a tracemalloc snapshot there (memory-N.snap, N from
    # 1), readable with tracemalloc.Snapshot.load. Empty: no handler. Tracing slows the
    # server several times: a diagnosis, not a way to run (bench/bench_channel.py uses it).
    memory_snapshot_dir: Path | None = None
    # Most request headers, by count and by total size of names and values, beyond which a
    # request is refused with 431 (uvicorn has parsed them by then; a proxy in front bounds
    # what it reads).
    max_headers: int = Field(default=100, ge=16, le=10_000)
    max_header_bytes: int = Field(default=32 << 10, ge=4096, le=1 << 24)
    # Longest wait for the next piece of a request body before it is cut off with 408: a
    # client that stalls mid-body holds nothing for longer than this.
    body_read_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    # Document uploads streaming at once, in all and per device; beyond either, 429.
    upload_max_concurrent: int = Field(default=64, ge=1, le=100_000)
    upload_max_per_device: int = Field(default=4, ge=1, le=1000)
    # An unfinished upload with no progress for this long is abandoned: its version and its
    # stored ciphertext are removed, and the removal audited.
    upload_expiry_seconds: float = Field(default=24 * 3600, gt=0, le=30 * 24 * 3600)

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value:
            return value
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError("is not a database URL") from None
        backend, _, driver = url.drivername.partition("+")
        if backend == "sqlite" and driver in ("", "aiosqlite"):
            url = url.set(drivername="sqlite+aiosqlite")
        elif backend in ("postgresql", "postgres") and driver in ("", "asyncpg"):
            url = url.set(drivername="postgresql+asyncpg")
        else:
            raise ValueError(
                "must be sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST/DATABASE"
            )
        return url.render_as_string(hide_password=False)

    @field_validator("blob_dir", "redis_url", "memory_snapshot_dir", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # ATTACHE_REDIS_URL= (empty), as a shell or an env file writes "not set".
        return None if value == "" else value

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("redis://", "rediss://")):
            raise ValueError("must be redis://[:PASSWORD@]HOST[:PORT][/DB] (or rediss:// for TLS)")
        return value

    @field_validator("metrics_token")
    @classmethod
    def _strong_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 24:
            raise ValueError("must be at least 24 characters (e.g. openssl rand -hex 16)")
        return value

    @property
    def database_backend(self) -> Literal["sqlite", "postgresql"]:
        return "sqlite" if self.effective_database_url.startswith("sqlite") else "postgresql"

    def several_processes_refusal(self) -> str | None:
        """Why ``workers`` processes cannot serve this configuration, or None if they can.

        One process's in-memory view (the change log, the delivery decisions kept from it)
        and its open streams see only what that process commits and publishes, unless the
        Redis bus carries both between processes: without it a second process would push
        nothing to the first one's streams and keep admitting a device removed through the
        other. And a SQLite database is written by one process.
        """
        if self.workers == 1:
            return None
        if self.database_backend == "sqlite":
            return (
                f"ATTACHE_WORKERS is {self.workers}, but a SQLite database is served by one "
                "process; set ATTACHE_WORKERS=1, or move to PostgreSQL (ATTACHE_DATABASE_URL)"
            )
        if self.redis_url is None:
            return (
                f"ATTACHE_WORKERS is {self.workers}, but several processes need the Redis bus "
                "to share pushes and changes; set ATTACHE_REDIS_URL (redis://HOST:PORT/DB), "
                "or ATTACHE_WORKERS=1"
            )
        return None

    @property
    def effective_blob_dir(self) -> Path:
        return self.blob_dir if self.blob_dir is not None else self.data_dir / "blobs"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'attache.db').resolve()}"

    def catalog_toml(self) -> str:
        """The label catalog's TOML text, as clients fetch it."""
        if self.catalog_path is None:
            source = resources.files("protocol") / "catalogs" / "default.toml"
            return source.read_text(encoding="utf-8")
        return self.catalog_path.read_text(encoding="utf-8")

    def load_catalog(self) -> Catalog:
        if self.catalog_path is None:
            return load_default_catalog()
        return Catalog.from_toml(self.catalog_toml())

    @property
    def effective_audit_origin(self) -> str:
        if self.audit_origin:
            return self.audit_origin
        host = self.effective_public_url.split("://", 1)[-1]
        return f"{host}/attache-audit"

    @property
    def effective_public_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")


def get_settings() -> Settings:
    """Read afresh each time: the CLI and tests change the environment between calls."""
    return Settings()
