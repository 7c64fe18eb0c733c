"""Seed a three-nation demo into the embedded server that `make run` started (`make demo`).

The server is the one ``--server`` names, else ``ATTACHE_SERVER``, else 127.0.0.1 on
``ATTACHE_PORT`` (as ``make run`` serves), else http://127.0.0.1:8600.

What it makes, so that the README's "Try it" steps work at once:

- an enrolment authority key each for USA, GBR and FRA, kept in the demo homes
  ``var/demo/alice``, ``var/demo/bob`` and ``var/demo/chloe`` (each person stands in for their
  nation's security officer too), sealed under the demo passphrase;
- the three nations, registered with those keys, directly in the server's database (as
  ``attache-server nation add`` does, reading ``ATTACHE_DATA_DIR`` / ``ATTACHE_DATABASE_URL``);
- the founding coalition policy ``demo`` (version 1: the three nations with their authority
  keys, the server's catalog, a threshold of 2), made and signed as the nations' security
  officers do it offline, with the commands they type (``attache policy found`` writes
  ``var/demo/founding-policy.json``, ``attache policy sign --file`` once per nation with its
  own key), then published from that file (as ``attache-server policy publish FILE`` does), so
  that every device pins it at enrolment;
- users alice (USA), bob (GBR) and chloe (FRA), cleared NATO SECRET and security officers of
  their nations, each with a device enrolled over the API and certified by their nation's key;
- the channel ``liaison``, ceiling NATO SECRET, with all three as members.

The demo passphrase, for device and authority keys alike, is ``demo passphrase``: this is a
demonstration, never a deployment. The keys use the real key-derivation cost.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import shlex
from contextlib import redirect_stderr, redirect_stdout
from importlib import resources
from pathlib import Path

import click
import httpx
from sqlalchemy import select

from clients.cli import main as attache
from clients.cli._common import server_address
from clients.sdk import ApiError, ConnectionFailed, Keystore, KeystoreError, connect, enroll
from protocol import keys
from protocol.coalition import SignedPolicy
from server.auth.principal import CONSOLE
from server.coalition.service import do_publish_policy, parse_signed_policy
from server.db.engine import create_engine, create_sessionmaker
from server.devices.service import do_issue_enrolment_code
from server.directory import service as directory
from server.directory.models import Nation, User
from server.errors import ServiceError
from server.settings import Settings, get_settings

DEMO_PASSPHRASE = "demo passphrase"
CHANNEL = "liaison"
CEILING = "NATO SECRET"
COALITION = "demo"
THRESHOLD = 2  # of the three nations sign each later version
PEOPLE = (
    ("alice", "USA", "United States"),
    ("bob", "GBR", "United Kingdom"),
    ("chloe", "FRA", "France"),
)


async def _check_fresh(settings: Settings, homes: Path) -> None:
    if homes.exists():
        raise click.ClickException(
            f"{homes} exists: the demo is already seeded. To seed afresh, stop the server, "
            f"remove {homes} and the server's data directory ({settings.data_dir}), then run "
            "'make run' and 'make demo' again."
        )
    engine = create_engine(settings.effective_database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            codes = [code for _, code, _ in PEOPLE]
            names = [name for name, _, _ in PEOPLE]
            nations = await session.execute(select(Nation.code).where(Nation.code.in_(codes)))
            users = await session.execute(select(User.username).where(User.username.in_(names)))
            taken = [*nations.scalars(), *users.scalars()]
    finally:
        await engine.dispose()
    if taken:
        raise click.ClickException(
            f"this server already has {', '.join(taken)}: the demo needs a fresh server (stop "
            f"it, remove its data directory {settings.data_dir}, then 'make run' and "
            "'make demo')"
        )


def _attache(*args: str) -> str:
    """``attache ARGS`` run in this process (no process launch per command), as a security
    officer types it; its output. A refusal stops the seeding with the command's sentence."""
    output = io.StringIO()
    saved = os.environ.get("ATTACHE_AUTHORITY_PASSPHRASE")
    os.environ["ATTACHE_AUTHORITY_PASSPHRASE"] = DEMO_PASSPHRASE
    try:
        with redirect_stdout(output), redirect_stderr(output):
            attache.main(list(args), prog_name="attache", standalone_mode=False)
    except SystemExit as exc:
        if exc.code:
            raise click.ClickException(
                f"'attache {shlex.join(args)}' failed: {output.getvalue().strip()}"
            ) from exc
    finally:
        if saved is None:
            del os.environ["ATTACHE_AUTHORITY_PASSPHRASE"]
        else:
            os.environ["ATTACHE_AUTHORITY_PASSPHRASE"] = saved
    return output.getvalue()


def _catalog_file(settings: Settings) -> Path:
    """The server's catalog as a file, for ``attache policy found --catalog``."""
    if settings.catalog_path is not None:
        return settings.catalog_path
    return Path(str(resources.files("protocol") / "catalogs" / "default.toml"))


def _found(settings: Settings, homes: Path) -> SignedPolicy:
    """Version 1 of the demo's coalition policy, made with ``attache policy found`` and signed
    by each nation's security officer with ``attache policy sign --file``, in their homes."""
    founding = str(homes / "founding-policy.json")
    found = ["policy", "found", "--coalition", COALITION, "--threshold", str(THRESHOLD)]
    found += ["--catalog", str(_catalog_file(settings))]
    for username, nation, name in PEOPLE:
        found.append(f"--nation={nation}={name}={homes / username / f'authority-{nation}.pub'}")
    commands = [[*found, "-o", founding]]
    for username, nation, _ in PEOPLE:
        home = str(homes / username)
        commands.append(["policy", "sign", "--file", founding, "--nation", nation, "--yes"])
        commands[-1] += ["--home", home]
    for command in commands:
        _attache(*command)
        click.echo(f"  attache {' '.join(_quote(arg) for arg in command)}")
    signed = parse_signed_policy(Path(founding).read_bytes())
    click.echo(f"  digest {signed.policy.digest_b64u}, signed by USA, GBR and FRA")
    return signed


async def _register(
    settings: Settings, authorities: dict[str, keys.AuthorityKey], founding: SignedPolicy
) -> dict[str, str]:
    """Nations and users in one transaction; returns each user's one-time enrolment code."""
    engine = create_engine(settings.effective_database_url)
    codes: dict[str, str] = {}
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            catalog = await directory.load_catalog(session, settings.load_catalog())
            for _, nation, name in PEOPLE:
                await directory.do_create_nation(
                    session,
                    CONSOLE,
                    catalog,
                    code=nation,
                    name=name,
                    authority_key=authorities[nation].public_bytes(),
                )
            await do_publish_policy(session, CONSOLE, founding)
            catalog = await directory.load_catalog(session, settings.load_catalog())
            for username, nation, _ in PEOPLE:
                user = await directory.do_create_user(
                    session,
                    CONSOLE,
                    catalog,
                    username=username,
                    nationality=nation,
                    clearance=CEILING,
                    roles=["officer", "security_officer"],
                )
                issued = await do_issue_enrolment_code(session, CONSOLE, settings, user)
                codes[username] = issued.code
    finally:
        await engine.dispose()
    return codes


async def _seed(server: str, homes: Path) -> None:
    settings = get_settings()
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            (await http.get(f"{server}/healthz")).raise_for_status()
    except httpx.HTTPError as exc:
        raise click.ClickException(
            f"no Attaché server answers at {server} ({exc}); start it with 'make run' first "
            "(on another port, give both the same ATTACHE_PORT, or --server here)"
        ) from exc
    await _check_fresh(settings, homes)

    stores = {username: Keystore(homes / username) for username, _, _ in PEOPLE}
    authorities: dict[str, keys.AuthorityKey] = {}
    for username, nation, _ in PEOPLE:
        click.echo(f"creating the {nation} enrolment authority key in {homes / username}")
        authorities[nation] = keys.AuthorityKey.generate()
        stores[username].save_authority(nation, authorities[nation], DEMO_PASSPHRASE)

    click.echo(
        f"the founding coalition policy (version 1, threshold {THRESHOLD}), made and signed by "
        "each nation's security officer as they would offline (passphrase from "
        "ATTACHE_AUTHORITY_PASSPHRASE):"
    )
    founding = _found(settings, homes)
    click.echo(
        "registering USA, GBR, FRA, publishing the founding policy (as 'attache-server "
        f"policy publish {homes / 'founding-policy.json'}' does) and alice, bob, chloe "
        "(cleared NATO SECRET)"
    )
    codes = await _register(settings, authorities, founding)

    for username, nation, _ in PEOPLE:
        result = await enroll(
            server,
            username=username,
            code=codes[username],
            device_name=f"{username}-demo",
            passphrase=DEMO_PASSPHRASE,
            keystore=stores[username],
            authority=(nation, authorities[nation]),
        )
        click.echo(
            f"enrolled {username}'s device {result.device['id']} ({result.device['status']}), "
            f"certified by {nation}"
        )

    client = await connect(stores["alice"], passphrase=DEMO_PASSPHRASE)
    async with client:
        await client.create_channel(CHANNEL, CEILING)
        for username, _, _ in PEOPLE[1:]:
            await client.add_member(CHANNEL, username)
    click.echo(f"channel {CHANNEL} created, ceiling {CEILING}, members alice, bob, chloe")


def _quote(arg: str) -> str:
    """Double quotes where the shell needs them (the demo's words hold no $, ` or ")."""
    return arg if re.fullmatch(r"[A-Za-z0-9_./-]+", arg) else f'"{arg}"'


def _instructions(homes: Path) -> str:
    def as_user(username: str, *args: str) -> str:
        env = f"ATTACHE_HOME={_quote(str(homes / username))} ATTACHE_PASSPHRASE="
        words = " ".join(_quote(a) for a in args)
        return f"  {env}{_quote(DEMO_PASSPHRASE)} .venv/bin/attache {words}"

    label = "NATO SECRET//REL TO USA, GBR"
    send = as_user("alice", "send", "--channel", CHANNEL, "--label", label) + ' "hello"'
    return "\n".join(
        [
            "",
            f"The demo is ready (every passphrase is {DEMO_PASSPHRASE!r}). Try:",
            "",
            "Alice (USA) sends a message released to the USA and the United Kingdom only:",
            send,
            "Bob (GBR) reads it:",
            as_user("bob", "read", "--channel", CHANNEL),
            "Chloe (FRA) gets nothing, though she is in the channel:",
            as_user("chloe", "read", "--channel", CHANNEL),
            "Watch messages arrive live (in another terminal; Ctrl-C to stop):",
            as_user("bob", "listen"),
            "The coalition policy every device pinned, signed by the three nations:",
            as_user("chloe", "policy", "show"),
            "The founding file the three security officers signed, and its digest:",
            f"  .venv/bin/attache policy show --file {_quote(str(homes / 'founding-policy.json'))}",
            "(README: a fourth nation joins through propose, the others' signatures, publish)",
        ]
    )


@click.command()
@click.option(
    "--server",
    default=None,
    help="the address of the server started by 'make run' (default: $ATTACHE_SERVER, else "
    "127.0.0.1 on $ATTACHE_PORT, else http://127.0.0.1:8600)",
)
@click.option(
    "--homes",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("var/demo"),
    show_default=True,
    help="where the demo users' key stores go",
)
def main(server: str | None, homes: Path) -> None:
    """Seed the three-nation demo: USA, GBR, FRA; alice, bob, chloe; channel liaison."""
    server = server_address(server)
    try:
        asyncio.run(_seed(server, homes))
    except (ApiError, ConnectionFailed, KeystoreError, ServiceError) as exc:
        detail = exc.detail if isinstance(exc, ApiError | ServiceError) else str(exc)
        raise click.ClickException(f"seeding stopped: {detail}") from exc
    click.echo(_instructions(homes))


if __name__ == "__main__":
    main()
