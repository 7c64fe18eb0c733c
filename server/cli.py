"""attache-server: the operator's command line, run on the server machine against its database."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from protocol import keys
from protocol.catalog import Catalog, CatalogError
from protocol.checkpoint import NoteSigner
from protocol.coalition import SignedPolicy
from server import bootstrap
from server.audit.integrator import integrate, load_signer
from server.auth.principal import CONSOLE
from server.coalition import service as coalition
from server.db import migrate
from server.db.engine import create_engine, create_sessionmaker, serialise
from server.devices.service import do_issue_enrolment_code
from server.directory import repository as repo
from server.directory import service
from server.errors import ServiceError
from server.settings import Settings, get_settings

T = TypeVar("T")

# markup=False: names and descriptions typed by others must never be read as rich markup.
terminal = Console(markup=False, highlight=False, soft_wrap=True)
errors = Console(markup=False, highlight=False, soft_wrap=True, stderr=True)


def abort(message: str, code: int = 1) -> NoReturn:
    errors.print(f"Error: {message}")
    sys.exit(code)


def _run(settings: Settings, work: Callable[[AsyncSession, Catalog], Awaitable[T]]) -> T:
    """Run ``work`` in one transaction: committed if it returns, rolled back if it raises,
    except for a refusal that keeps its changes (its audit event), as the API does."""

    async def runner() -> T:
        engine = create_engine(settings.effective_database_url)
        try:
            async with create_sessionmaker(engine)() as session:
                try:
                    catalog = await service.load_catalog(session, settings.load_catalog())
                    result = await work(session, catalog)
                except ServiceError as exc:
                    await (session.commit() if exc.keep_changes else session.rollback())
                    raise
                except BaseException:
                    await session.rollback()
                    raise
                await session.commit()
                return result
        finally:
            await engine.dispose()

    try:
        return asyncio.run(runner())
    except ServiceError as exc:
        abort(exc.detail)
    except CatalogError as exc:
        abort(f"label catalog: {exc}")


def _settings() -> Settings:
    try:
        settings = get_settings()
    except ValidationError as exc:
        # Named by variable, without the value given (a database URL may hold a password).
        first = exc.errors()[0]
        name = "ATTACHE_" + "_".join(str(part) for part in first["loc"]).upper()
        abort(f"{name}: {first['msg'].removeprefix('Value error, ')}")
    try:
        settings.load_catalog()
    except (OSError, CatalogError) as exc:
        abort(f"cannot load the label catalog {settings.catalog_path}: {exc}")
    return settings


@click.group()
def main() -> None:
    """Operate an Attaché server: database, keys, nations, groups, offices, users."""


@main.command()
def init() -> None:
    """Create or upgrade the database and create missing server keys (safe to repeat)."""
    settings = _settings()
    _initialise(settings)


def _initialise(settings: Settings, *, migrate_schema: bool = True) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if migrate_schema:
        _migrate(settings)
    for path in bootstrap.ensure_server_keys(settings):
        terminal.print(f"created server key {path}")

    async def bootstrap_operator(
        session: AsyncSession, _: Catalog
    ) -> bootstrap.BootstrapCredentials | None:
        # Once, whichever of the processes starting together gets here first.
        await serialise(session, "bootstrap", "operator")
        return await bootstrap.bootstrap_operator(session, settings)

    creds = _run(settings, bootstrap_operator)
    if creds is not None:
        terminal.print(
            "\nOperator bootstrap credentials (shown once, valid "
            f"{settings.enrolment_code_ttl_seconds // 3600} hours):\n"
            f"  user:            {creds.username}\n"
            f"  enrolment code:  {creds.code}\n"
            "Enrol the operator's device with:\n"
            f"  attache enroll --server {settings.effective_public_url} "
            f"--user {creds.username} --code {creds.code}\n"
        )


@main.command("migrate")
def migrate_command() -> None:
    """Bring the database's schema to this version of Attaché (safe to repeat).

    On PostgreSQL, run it once before starting the servers, and again after each upgrade of
    Attaché: servers never migrate PostgreSQL themselves. On SQLite, 'run' migrates at start.
    """
    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    before = _migrate(settings)
    head = migrate.head_revision()
    if before is None:
        terminal.print(f"the database's schema is already at {head}")
    else:
        was = ", ".join(before) if before else "empty"
        terminal.print(f"the database's schema is now at {head} (it was {was})")


def _migrate(settings: Settings) -> tuple[str, ...] | None:
    """Bring the database's schema to this version's; returns the revisions it was at, or
    None if it was there already. Aborts on a schema newer than this version knows."""
    before = _schema_revisions(settings)
    problem = migrate.schema_problem(before)
    if problem is None:
        return None
    if not set(before) <= migrate.known_revisions():
        abort(problem)
    try:
        migrate.upgrade(settings.effective_database_url)
    except Exception as exc:
        abort(f"migrating the database at {_shown(settings)} failed: {_reason(exc)}")
    return before


def _shown(settings: Settings) -> str:
    return make_url(settings.effective_database_url).render_as_string(hide_password=True)


def _reason(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {lines[0]}" if lines else exc.__class__.__name__


def _schema_revisions(settings: Settings) -> tuple[str, ...]:
    """The revisions the database's schema is at; aborts if it cannot be reached."""

    async def read() -> tuple[str, ...]:
        engine = create_engine(settings.effective_database_url)
        try:
            async with engine.connect() as connection:
                return await migrate.current_revisions(connection)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(read())
    except Exception as exc:
        abort(f"cannot reach the database at {_shown(settings)}: {_reason(exc)}")


# The lock a server on SQLite holds for as long as it runs (never closed: the process's end
# releases it).
_held: list[int] = []


def _serve_alone(settings: Settings) -> None:
    """Refuse to serve a SQLite database that another server process is serving: each would
    keep its own view of decisions and its own streams (``several_processes_refusal``)."""
    database = make_url(settings.effective_database_url).database
    if not database or database == ":memory:":
        return
    path = Path(f"{database}.serving")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        abort(
            f"another attache-server (pid {holder}) is serving the SQLite database {database}, "
            "and SQLite is served by one process; stop it first, or move to PostgreSQL"
        )
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _held.append(fd)


@main.command()
@click.option("--host", default=None, help="address to listen on (default 127.0.0.1)")
@click.option("--port", default=None, type=int, help="port to listen on (default 8600)")
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(1, 256),
    help="server processes sharing the port (default ATTACHE_WORKERS, 1)",
)
def run(host: str | None, port: int | None, workers: int | None) -> None:
    """Serve the API. On SQLite, first create or upgrade the database; on PostgreSQL, its
    schema must be this version's already (attache-server migrate). Creates missing server
    keys and, on first start, the operator's bootstrap credentials."""
    import uvicorn

    from server import logs
    from server.app import create_app

    settings = _settings()
    if host is not None:
        settings.host = host
    if port is not None:
        settings.port = port
    if workers is not None:
        settings.workers = workers
    if "ATTACHE_GC_FREEZE" not in os.environ:
        settings.gc_freeze = True  # one app for the life of this process
    refusal = settings.several_processes_refusal()
    if refusal is not None:
        abort(refusal)
    if settings.database_backend == "sqlite":
        _serve_alone(settings)
        _initialise(settings)
    else:
        problem = migrate.schema_problem(_schema_revisions(settings))
        if problem is not None:
            abort(problem)
        _initialise(settings, migrate_schema=False)
    terminal.print(f"Attaché listening on {settings.effective_public_url}")
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": "info",
        "log_config": logs.uvicorn_log_config(settings.log_format),
        # JSON logs have their own access log, by route and without query strings.
        "access_log": settings.log_format == "text",
        # Frames carry ciphertext, which does not compress: deflating each push for each
        # device cost a fifth of the server's time in the channel benchmark, for nothing.
        "ws_per_message_deflate": False,
        # No protocol-level pings from uvicorn: the stream pings at its own level every
        # ws_idle_seconds / 2 and closes a client silent for ws_idle_seconds (gateway.py), so
        # uvicorn's every 20 s only doubled each idle connection's keepalive work (a crowd of
        # 5,000 answered 250 more pings a second). A dead client is closed after at most
        # ws_idle_seconds instead of about 40 s.
        "ws_ping_interval": None,
    }
    if settings.workers == 1:
        uvicorn.run(create_app(settings), **options)
        return
    # Each worker process makes its own app from the environment: what the options above
    # changed goes there.
    os.environ.update(
        ATTACHE_HOST=settings.host,
        ATTACHE_PORT=str(settings.port),
        ATTACHE_GC_FREEZE=str(settings.gc_freeze).lower(),
        ATTACHE_WORKERS=str(settings.workers),
    )
    uvicorn.run("server.app:create_app", factory=True, workers=settings.workers, **options)


# --- nations ---------------------------------------------------------------------------------


@main.group()
def nation() -> None:
    """Nations and their enrolment authority keys."""


def _read_key(value: str) -> bytes:
    """An authority public key given inline (base64url) or as @FILE holding it."""
    text = Path(value[1:]).read_text(encoding="utf-8").strip() if value.startswith("@") else value
    try:
        return keys.b64u_decode(text.strip())
    except ValueError as exc:
        abort(f"the authority key is not valid base64url: {exc}")


@nation.command("add")
@click.argument("code")
@click.option("--name", required=True, help="the nation's name, e.g. 'United States'")
@click.option(
    "--authority-key",
    required=True,
    help="the public key printed by 'attache authority init' (base64url, or @FILE)",
)
def nation_add(code: str, name: str, authority_key: str) -> None:
    """Register nation CODE (ISO 3166-1 alpha-3) with its authority's public key."""
    settings = _settings()
    key = _read_key(authority_key)
    created = _run(
        settings,
        lambda s, c: service.do_create_nation(
            s, CONSOLE, c, code=code.upper(), name=name, authority_key=key
        ),
    )
    terminal.print(f"nation {created.code} registered, authority key id {created.authority_key_id}")


@nation.command("list")
def nation_list() -> None:
    """List registered nations."""
    nations = _run(_settings(), lambda s, _: repo.list_nations(s))
    table = Table("code", "name", "authority key id")
    for n in nations:
        table.add_row(n.code, n.name, n.authority_key_id)
    terminal.print(table)


# --- groups ----------------------------------------------------------------------------------


@main.group()
def group() -> None:
    """Partner groups usable in REL TO."""


@group.command("add")
@click.argument("name")
@click.option("--members", required=True, help="comma-separated nation codes, e.g. USA,GBR")
@click.option("--description", default="")
def group_add(name: str, members: str, description: str) -> None:
    """Add partner group NAME."""
    codes = [m.strip().upper() for m in members.split(",") if m.strip()]
    view = _run(
        _settings(),
        lambda s, c: service.do_create_group(
            s, CONSOLE, c, name=name, members=codes, description=description
        ),
    )
    terminal.print(f"group {view.name} added: {', '.join(view.members)}")


@group.command("list")
def group_list() -> None:
    """List partner groups, from the catalog and from this directory."""
    views = _run(_settings(), lambda s, c: service.list_groups(s, c))
    table = Table("name", "source", "members")
    for v in views:
        table.add_row(v.name, v.source, ", ".join(v.members))
    terminal.print(table)


# --- coalition policy ------------------------------------------------------------------------


@main.group()
def policy() -> None:
    """The coalition policy: nations, their authority keys, groups and catalog, signed."""


@policy.command("publish")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--proposal", metavar="DIGEST", help="publish this stored proposal instead")
def policy_publish(file: Path | None, proposal: str | None) -> None:
    """Publish the signed policy version in FILE (or a stored proposal), once its chain checks.

    The first version published must be a founding one, signed by every nation it lists; each
    later one must follow the latest and carry its threshold of that version's nations'
    signatures (docs/PROTOCOL.md §18).
    """
    settings = _settings()
    if (file is None) == (proposal is None):
        abort("give either FILE or --proposal DIGEST")
    if proposal is not None:
        published = _run(settings, lambda s, _: coalition.do_publish_proposal(s, CONSOLE, proposal))
    else:
        assert file is not None
        try:
            text = file.read_bytes()
        except OSError as exc:
            abort(f"cannot read {file}: {exc.strerror or exc}")
        signed = _parse_policy(text)
        published = _run(settings, lambda s, _: coalition.do_publish_policy(s, CONSOLE, signed))
    terminal.print(
        f"policy version {published.policy.policy_version} of {published.policy.coalition} "
        f"published, digest {published.policy.digest_b64u}, "
        f"signed by {', '.join(published.signers)}"
    )


def _parse_policy(text: bytes) -> SignedPolicy:
    try:
        return coalition.parse_signed_policy(text)
    except ServiceError as exc:
        abort(exc.detail)


@policy.command("show")
@click.argument("version", type=click.IntRange(1, 2**53 - 1), required=False)
def policy_show(version: int | None) -> None:
    """Show the latest published policy version, or VERSION."""
    document = _run(_settings(), lambda s, _: coalition.access_policy(s, version))
    shown = _parse_policy(document.encode("utf-8"))
    current = shown.policy
    terminal.print(
        f"coalition {current.coalition}, policy version {current.policy_version}, "
        f"digest {current.digest_b64u}\n"
        f"threshold {current.threshold} of {len(current.nations)} nations; catalog "
        f"{current.catalog().version}; signed by "
        + ", ".join(sorted({s.nation for s in shown.signatures}))
    )
    table = Table("nation", "name", "authority key ids")
    for code, entry in sorted(current.nations.items()):
        table.add_row(code, entry.name, ", ".join(sorted(entry.authority_keys)))
    terminal.print(table)
    for name, members in sorted(current.groups.items()):
        terminal.print(f"group {name}: {', '.join(members)}")


# --- offices ---------------------------------------------------------------------------------


@main.group()
def office() -> None:
    """Liaison offices."""


@office.command("add")
@click.argument("name")
@click.option("--nation", "nation_code", required=True, help="the sending nation")
@click.option("--host", default="", help="the host organisation, e.g. 'NATO HQ'")
def office_add(name: str, nation_code: str, host: str) -> None:
    """Open liaison office NAME of a nation."""
    created = _run(
        _settings(),
        lambda s, _: service.do_create_office(
            s, CONSOLE, nation=nation_code.upper(), name=name, host=host
        ),
    )
    terminal.print(f"office {created.name} ({created.nation_code}) created: id {created.id}")


@office.command("list")
def office_list() -> None:
    """List offices."""
    offices = _run(_settings(), lambda s, _: repo.list_offices(s))
    table = Table("id", "nation", "name", "host")
    for o in offices:
        table.add_row(o.id, o.nation_code, o.name, o.host)
    terminal.print(table)


# --- users -----------------------------------------------------------------------------------


@main.group()
def user() -> None:
    """Users: create, list, issue enrolment codes."""


@user.command("add")
@click.argument("username")
@click.option("--nation", "nation_code", default=None, help="nationality (none for operators)")
@click.option("--name", "display_name", default="", help="display name")
@click.option("--office", "office_name", default=None, help="office name or id")
@click.option("--clearance", default=None, help='e.g. "NATO SECRET"')
@click.option(
    "--role",
    "roles",
    multiple=True,
    help="officer, disclosure_officer, security_officer, auditor, operator (repeatable)",
)
def user_add(
    username: str,
    nation_code: str | None,
    display_name: str,
    office_name: str | None,
    clearance: str | None,
    roles: tuple[str, ...],
) -> None:
    """Create user USERNAME."""
    nationality = nation_code.upper() if nation_code else None

    async def work(session: AsyncSession, catalog: Catalog) -> str:
        office_id = None
        if office_name is not None:
            found = await repo.get_office(session, office_name)
            if found is None and nationality is not None:
                found = await repo.find_office(session, nationality, office_name)
            if found is None:
                abort(f"no office {office_name!r} of {nationality}")
            office_id = found.id
        created = await service.do_create_user(
            session,
            CONSOLE,
            catalog,
            username=username,
            display_name=display_name,
            nationality=nationality,
            office_id=office_id,
            clearance=clearance,
            roles=list(roles) or ["officer"],
        )
        return created.id

    user_id = _run(_settings(), work)
    terminal.print(f"user {username} created: id {user_id}")


@user.command("list")
@click.option("--nation", "nation_code", default=None)
def user_list(nation_code: str | None) -> None:
    """List users."""

    async def work(session: AsyncSession, catalog: Catalog) -> list[tuple[str, ...]]:
        users = await repo.list_users(session, nation_code.upper() if nation_code else None)
        return [
            (
                u.username,
                u.nationality or "-",
                service.clearance_banner(u, catalog) or "-",
                ", ".join(u.roles),
                "yes" if u.active else "no",
            )
            for u in users
        ]

    table = Table("username", "nation", "clearance", "roles", "active")
    for row in _run(_settings(), work):
        table.add_row(*row)
    terminal.print(table)


@user.command("code")
@click.argument("username")
def user_code(username: str) -> None:
    """Issue a one-time enrolment code for USERNAME (e.g. a nation's first security officer).

    The code only lets the user register a device's keys; the device becomes trusted only when
    the nation's authority certifies it.
    """
    settings = _settings()

    async def work(session: AsyncSession, _: Catalog) -> tuple[str, str]:
        target = await service.access_user(session, username)
        issued = await do_issue_enrolment_code(session, CONSOLE, settings, target)
        return issued.code, issued.row.expires_at.isoformat(timespec="seconds")

    code, expires = _run(settings, work)
    terminal.print(f"enrolment code for {username}: {code} (expires {expires})")
    # The address the server runs under, as it recorded at start, not this environment's guess.
    recorded = bootstrap.recorded_origins(settings)
    server = recorded.public_url if recorded else settings.effective_public_url
    terminal.print(f"enrol with: attache enroll --server {server} --user {username} --code {code}")


# --- audit -----------------------------------------------------------------------------------


@main.group("audit")
def audit_group() -> None:
    """The audit log's key and integration."""


def _signer(settings: Settings, origin: str | None = None) -> NoteSigner:
    """The audit key, signing as ``origin``: by default the origin the server last started
    with in this data directory, else the one this environment gives."""
    path = bootstrap.keys_dir(settings) / bootstrap.AUDIT_KEY_FILE
    if not path.exists():
        abort(f"no audit key at {path}; run 'attache-server init' first")
    if origin is None:
        recorded = bootstrap.recorded_origins(settings)
        origin = recorded.audit_origin if recorded else settings.effective_audit_origin
    return load_signer(path, origin)


@audit_group.command("key")
def audit_key() -> None:
    """Print the audit log's verifier key, for auditors to pin (attache audit verify --vkey),
    named by the origin the server signs under, as it recorded when it last started."""
    settings = _settings()
    recorded = bootstrap.recorded_origins(settings)
    if recorded is None:
        abort(
            f"no server has started with the data directory {settings.data_dir} yet, so the "
            "name its audit log signs under is not known; start it (attache-server run), "
            "then run this again"
        )
    if recorded.audit_origin != settings.effective_audit_origin:
        errors.print(
            f"Note: the server last started in {settings.data_dir} signs as "
            f"{recorded.audit_origin}; this key is named so. This environment would have said "
            f"{settings.effective_audit_origin} (its ATTACHE_PORT, ATTACHE_PUBLIC_URL or "
            "ATTACHE_AUDIT_ORIGIN differ from the server's)."
        )
    terminal.print(_signer(settings, recorded.audit_origin).vkey())


@audit_group.command("integrate")
def audit_integrate() -> None:
    """Append pending events to the log and sign a checkpoint now (the server does this on its
    own every few seconds)."""
    settings = _settings()
    signer = _signer(settings)
    checkpoint = _run(settings, lambda s, _: integrate(s, signer))
    if checkpoint is None:
        terminal.print("nothing to integrate")
    else:
        terminal.print(f"log integrated to {checkpoint.size} leaves")


# --- server keys -----------------------------------------------------------------------------


@main.group("keys")
def keys_group() -> None:
    """The server's own keys (the audit log's signing key): provisioned once, then carried to
    every machine that serves the same database (docs/deployment.md)."""


@keys_group.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def keys_export(file: Path) -> None:
    """Write this data directory's server keys into FILE, a new file readable by you alone.

    FILE holds private keys in clear: carry it as you would the keys (an encrypted channel,
    a medium kept under lock), import it on the other machines, then delete it.
    """
    settings = _settings()
    try:
        names = bootstrap.export_keys(settings, file)
    except bootstrap.KeysError as exc:
        abort(str(exc))
    terminal.print(
        f"wrote {', '.join(names)} from {bootstrap.keys_dir(settings)} to {file} (mode 0600); "
        "import it on each other machine with 'attache-server keys import', then delete it"
    )


@keys_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def keys_import(file: Path) -> None:
    """Put the server keys of FILE (from 'attache-server keys export') into this data
    directory, before its first start. Refuses a data directory that holds other keys."""
    settings = _settings()
    try:
        readable = file.stat().st_mode & 0o077
    except OSError as exc:
        abort(f"cannot read {file}: {exc.strerror}")
    if readable:
        errors.print(f"Note: {file} is readable by other accounts; delete it once imported.")
    try:
        placed = bootstrap.import_keys(settings, file)
    except bootstrap.KeysError as exc:
        abort(str(exc))
    directory = bootstrap.keys_dir(settings)
    for name, now in placed:
        done = "imported" if now else "already held"
        terminal.print(f"{name}: {done} in {directory}")
