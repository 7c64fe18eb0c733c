"""Shared CLI plumbing: the keystore option, the server to enrol with, passphrases, list
formats, running SDK calls with plain errors."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click

from clients.cli.terminal import FORMATS, abort, terminal
from clients.sdk import (
    ApiError,
    AttacheClient,
    ConnectionFailed,
    InvalidArgument,
    Keystore,
    KeystoreError,
    MessagingError,
    Messenger,
    RateLimited,
    connect,
)
from clients.sdk.audit import AuditStateError
from clients.sdk.coalition import PolicyRefused
from protocol import keys

T = TypeVar("T")

home_option = click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="where this device's keys live (default: $ATTACHE_HOME or ~/.attache)",
)


format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="json: every field and id, for scripts; csv: the table's columns",
)

DEFAULT_SERVER = "http://127.0.0.1:8600"


def _named_server(given: str | None, *, strict: bool = True) -> tuple[str, str] | None:
    """The server named by ``--server``, ATTACHE_SERVER or ATTACHE_PORT (on 127.0.0.1), in
    that order, with where it was named; None when nothing names one. A value that is not an
    address is refused, or with ``strict=False`` (where it would not be used) taken as none."""
    if given:
        where, address = "--server", given.strip()
    elif os.environ.get("ATTACHE_SERVER", "").strip():
        where, address = "ATTACHE_SERVER", os.environ["ATTACHE_SERVER"].strip()
    elif os.environ.get("ATTACHE_PORT", "").strip():
        port = os.environ["ATTACHE_PORT"].strip()
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            if not strict:
                return None
            abort(f"ATTACHE_PORT={port!r} is not a port number (1 to 65535)")
        return f"http://127.0.0.1:{int(port)}", "ATTACHE_PORT"
    else:
        return None
    if not address.startswith(("http://", "https://")):
        if not strict:
            return None
        abort(f"{where} {address!r}: give the server's address, such as {DEFAULT_SERVER}")
    return address.rstrip("/"), where


def server_address(given: str | None) -> str:
    """The server for a command with no enrolled home yet (enroll, the demo): ``--server``,
    else ATTACHE_SERVER, else ATTACHE_PORT on 127.0.0.1, else the default."""
    named = _named_server(given)
    return named[0] if named else DEFAULT_SERVER


def keystore(home: Path | None) -> Keystore:
    store = Keystore(home)
    _note_enrolled_server(store)
    return store


def _note_enrolled_server(store: Keystore) -> None:
    """A device keeps using the server it enrolled with (its login proofs are bound to that
    origin); when the environment names another, say so once per command."""
    named = _named_server(None, strict=False)
    if named is None or not store.has_device():
        return
    try:
        enrolled = store.profile().server.rstrip("/")
    except KeystoreError:
        return  # the command itself reports an unreadable home
    context = click.get_current_context(silent=True)
    said = context.meta.setdefault("attache.server-noted", set()) if context else set()
    if named[0] == enrolled or enrolled in said:
        return
    said.add(enrolled)
    terminal.note(
        f"Note: this device is enrolled with {enrolled} and uses it (login proofs are bound "
        f"to that server); {named[1]} names {named[0]}, which is not used."
    )


def passphrase(prompt: str, *, env: str, confirm: bool = False) -> str:
    """From the environment variable ``env`` (for scripts), else asked without echo on the
    terminal; with no terminal, a plain refusal naming ``env``."""
    value = os.environ.get(env)
    if value:
        return value
    if sys.stdin is None or not sys.stdin.isatty():
        # getpass would warn and then read the passphrase from the input, which a script
        # means for something else (a message body), or find nothing and abort unexplained.
        abort(f"no passphrase: set {env} (there is no terminal to ask for it on)")
    entered: str = click.prompt(prompt, hide_input=True, confirmation_prompt=confirm)
    if not entered:
        abort("an empty passphrase protects nothing")
    return entered


def device_passphrase(*, confirm: bool = False) -> str:
    return passphrase("Device passphrase", env="ATTACHE_PASSPHRASE", confirm=confirm)


def authority_passphrase(nation: str, *, confirm: bool = False) -> str:
    return passphrase(
        f"{nation} authority key passphrase", env="ATTACHE_AUTHORITY_PASSPHRASE", confirm=confirm
    )


def run(work: Awaitable[T]) -> T:
    """Run an SDK coroutine; every failure becomes one plain sentence and exit status 1."""
    return call(lambda: asyncio.run(_guard(work)))


def call(work: Callable[[], T]) -> T:
    """Run ``work``; every failure becomes one plain sentence and exit status 1."""
    try:
        return work()
    except RateLimited as exc:
        # A rate limit refused it before anything was done: the same command is safe to rerun.
        abort(f"{exc.detail} (a rate limit; nothing was done, so run the same command then)")
    except ApiError as exc:
        hint = " (run 'attache login')" if exc.status == 401 else ""
        abort(f"{exc.detail}{hint}")
    except (ConnectionFailed, InvalidArgument) as exc:
        abort(str(exc))
    except (KeystoreError, MessagingError, PolicyRefused) as exc:
        abort(str(exc))
    except keys.CertificateError as exc:
        abort(f"certificate: {exc}")
    except AuditStateError as exc:
        abort(str(exc))


async def _guard(work: Awaitable[T]) -> T:
    return await work


def with_client(home: Path | None, action: Callable[[AttacheClient], Awaitable[T]]) -> T:
    """Run ``action`` with a client using this device's saved session."""

    async def go() -> T:
        store = keystore(home)
        if store.session_token() is None:
            raise KeystoreError("not signed in; run 'attache login'")
        client = await connect(store)
        async with client:
            return await action(client)

    return run(go())


def with_messenger(home: Path | None, action: Callable[[Messenger], Awaitable[T]]) -> T:
    """Run ``action`` with a Messenger: the device's keys unlocked (passphrase from
    ATTACHE_PASSPHRASE, or asked) and signed in with them."""
    store = keystore(home)
    call(store.profile)  # no device here: say so before asking for a passphrase
    secret = device_passphrase()

    async def go() -> T:
        async with await Messenger.open(store, passphrase=secret) as messenger:
            return await action(messenger)

    return run(go())


def show(value: Any) -> str:
    return "-" if value in (None, "", []) else str(value)


# People are named by username on the command line and on screen; the server's answers and the
# audit log carry user ids. Every option that names a user takes either (the server accepts
# both, PROTOCOL.md §17.1), and an unknown one is the server's 404, "unknown user 'x'".


async def usernames(client: AttacheClient) -> dict[str, str]:
    """Every user's username by id, from one read of the directory (any signed-in user may
    read it): to show the people that an answer names by id."""
    return {u["id"]: u["username"] for u in await client.users()}


def name_of(names: Mapping[str, str], user_id: str | None) -> str | None:
    """The username of ``user_id``; None for none, or one the directory does not know."""
    return None if user_id is None else names.get(user_id)


async def username(client: AttacheClient, user: str) -> str:
    """The username of ``user``, given by username or id; ApiError 404 if there is none."""
    return str((await client.user(user))["username"])
