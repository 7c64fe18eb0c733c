"""Shared CLI plumbing: the keystore option, passphrases, running SDK calls with plain errors."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from clients.cli.terminal import abort
from clients.sdk import (
    ApiError,
    AttacheClient,
    ConnectionFailed,
    Keystore,
    KeystoreError,
    MessagingError,
    Messenger,
    RateLimited,
    connect,
)
from clients.sdk.audit import AuditStateError
from protocol import keys

T = TypeVar("T")

home_option = click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="where this device's keys live (default: $ATTACHE_HOME or ~/.attache)",
)


def keystore(home: Path | None) -> Keystore:
    return Keystore(home)


def passphrase(prompt: str, *, env: str, confirm: bool = False) -> str:
    """From the environment variable ``env`` (for scripts), else asked without echo."""
    value = os.environ.get(env)
    if value:
        return value
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
    except ConnectionFailed as exc:
        abort(str(exc))
    except (KeystoreError, MessagingError) as exc:
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
