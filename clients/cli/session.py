"""attache enroll / login / logout / whoami."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import click

from clients.cli._common import (
    authority_passphrase,
    call,
    device_passphrase,
    home_option,
    keystore,
    run,
    server_address,
    show,
    with_client,
)
from clients.cli.terminal import terminal
from clients.cli.witnesses import describe, requirement
from clients.sdk import AttacheClient, Enrolment, connect, enroll
from clients.sdk.coalition import NO_POLICY


@click.command("enroll")
@click.option(
    "--server",
    default=None,
    help="the server's address (default: $ATTACHE_SERVER, else 127.0.0.1 on $ATTACHE_PORT, "
    "else http://127.0.0.1:8600); this device keeps using it",
)
@click.option("--user", "username", required=True, help="your username")
@click.option("--code", required=True, help="the one-time code from your security officer")
@click.option("--name", "device_name", default=None, help="a name for this device")
@click.option(
    "--certify-as",
    "certify_as",
    default=None,
    metavar="NATION",
    help="security officers: certify this device at once with the NATION authority key held here",
)
@click.option(
    "--policy",
    "policy_digest",
    default=None,
    metavar="DIGEST",
    help="the founding coalition policy's digest, from your security officer: the server's "
    "policy must descend from it",
)
@click.option(
    "--witness",
    "witness_keys",
    multiple=True,
    metavar="VKEY",
    help="a witness whose cosignature the key directory's checkpoints must carry before this "
    "device seals to anyone (name+key id+base64, from its nation); repeatable",
)
@click.option(
    "--min-witnesses",
    type=click.IntRange(min=1),
    default=None,
    help="how many of the --witness keys must have cosigned (default: all)",
)
@click.option(
    "--witness-max-age",
    type=click.IntRange(min=1),
    default=None,
    metavar="SECONDS",
    help="a witness's cosignature older than this does not count",
)
@home_option
def enroll_command(
    server: str | None,
    username: str,
    code: str,
    device_name: str | None,
    certify_as: str | None,
    policy_digest: str | None,
    witness_keys: tuple[str, ...],
    min_witnesses: int | None,
    witness_max_age: int | None,
    home: Path | None,
) -> None:
    """Create this device's keys and register them with a one-time enrolment code."""
    # Checked before anything is registered.
    witnesses = requirement(witness_keys, min_witnesses, witness_max_age, flag="--min-witnesses")
    address = server_address(server)
    store = keystore(home)
    name = device_name or socket.gethostname()[:64] or "device"
    authority = None
    if certify_as:
        nation = certify_as.upper()
        secret_a = authority_passphrase(nation)
        authority = (nation, call(lambda: store.authority(nation, secret_a)))
    secret = device_passphrase(confirm=True)
    result: Enrolment = run(
        enroll(
            address,
            username=username,
            code=code,
            device_name=name,
            passphrase=secret,
            keystore=store,
            authority=authority,
            policy_digest=policy_digest,
            witnesses=witnesses,
        )
    )
    device = result.device
    terminal.say(
        f"device {device['id']} registered for {username} ({device['status']}) with "
        f"{result.profile.server}"
    )
    terminal.say(f"  fingerprint: {device['fingerprint']}")
    if result.policy is not None:
        held = result.policy.policy
        terminal.say(
            f"  pinned coalition policy {held.coalition} version {held.policy_version}, "
            f"founding digest {result.policy.founding_b64u}"
        )
    for nation, key_id in sorted(result.pinned.items()):
        terminal.say(f"  pinned {nation} authority key {key_id}")
    if result.audit_key is not None:
        terminal.say(f"  pinned the server's audit key {result.audit_key}")
    if result.witnesses is not None:
        for line in describe(result.witnesses):
            terminal.say(f"  {line}")
    if result.policy is None:
        terminal.say(NO_POLICY)
    if device["status"] == "pending":
        terminal.say(
            "Read the fingerprint to your security officer; once they certify this device, "
            "run 'attache login'."
        )
    else:
        terminal.say("The device is active: run 'attache login'.")


@click.command("login")
@home_option
def login_command(home: Path | None) -> None:
    """Sign in with this device's key (challenge-response) and keep the session token."""
    store = keystore(home)
    profile = call(store.profile)
    secret = device_passphrase()

    async def go() -> dict[str, Any]:
        client = await connect(store, passphrase=secret)
        async with client:
            return await client.me()

    me = run(go())
    terminal.say(
        f"signed in to {profile.server} as {me['username']} ({show(me['nationality'])}, "
        f"{show(me['clearance'])}) on device {profile.device_id}"
    )


@click.command("logout")
@home_option
def logout_command(home: Path | None) -> None:
    """End this device's session on the server and forget the token."""
    store = keystore(home)

    async def go(client: AttacheClient) -> None:
        await client.logout()

    with_client(home, go)
    store.clear_session()
    terminal.say("signed out")


@click.command("whoami")
@home_option
def whoami_command(home: Path | None) -> None:
    """Show who this device is signed in as."""

    async def go(client: AttacheClient) -> dict[str, Any]:
        return await client.me()

    me = with_client(home, go)
    terminal.say(f"{me['username']}  nation {show(me['nationality'])}")
    terminal.say(f"  clearance {show(me['clearance'])}")
    terminal.say(f"  roles     {show(', '.join(me['roles']))}")
