"""attache device: list, certify (security officers) and revoke devices."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from clients.cli._common import authority_passphrase, call, home_option, keystore, show, with_client
from clients.cli.terminal import abort, terminal
from clients.sdk import AttacheClient, certify_device, check_certifiable


@click.group()
def device() -> None:
    """Devices: yours, or your nation's if you are its security officer."""


@device.command("list")
@click.option("--pending", is_flag=True, help="only devices waiting for a certificate")
@home_option
def list_devices(pending: bool, home: Path | None) -> None:
    """List devices."""

    async def go(client: AttacheClient) -> list[dict[str, Any]]:
        return await client.devices(status="pending" if pending else None)

    rows = [
        (d["id"], d["username"], show(d["nationality"]), d["name"], d["status"], d["fingerprint"])
        for d in with_client(home, go)
    ]
    terminal.table("device", "user", "nation", "name", "status", "fingerprint", rows=rows)


@device.command("certify")
@click.argument("device_id")
@click.option("--nation", required=True, help="your nation, whose authority key is held here")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@home_option
def certify(device_id: str, nation: str, yes: bool, home: Path | None) -> None:
    """Certify DEVICE_ID with your nation's authority key, after checking its fingerprint."""
    code = nation.upper()

    async def fetch(client: AttacheClient) -> dict[str, Any]:
        return await client.device(device_id)

    found = with_client(home, fetch)
    call(lambda: check_certifiable(code, found))
    terminal.say(f"device {found['id']} '{found['name']}' of {found['username']} ({code})")
    terminal.say(f"  fingerprint: {found['fingerprint']}")
    terminal.say(f"  clearance to vouch for: {found['user_clearance']}")
    if not yes and not click.confirm("Does the user read you the same fingerprint?"):
        abort("not certified")
    store = keystore(home)
    secret = authority_passphrase(code)
    authority = call(lambda: store.authority(code, secret))

    async def submit(client: AttacheClient) -> dict[str, Any]:
        return await certify_device(client, code, authority, found)

    done = with_client(home, submit)
    terminal.say(f"device {done['id']} is {done['status']}")


@device.command("revoke")
@click.argument("device_id")
@click.option("--reason", default="", help="why, for the audit log")
@home_option
def revoke(device_id: str, reason: str, home: Path | None) -> None:
    """Revoke DEVICE_ID for good; its sessions end at once."""

    async def go(client: AttacheClient) -> dict[str, Any]:
        return await client.revoke_device(device_id, reason)

    done = with_client(home, go)
    terminal.say(f"device {done['id']} is {done['status']}")
