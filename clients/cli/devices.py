"""attache device: list, certify (security officers) and revoke devices."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from clients.cli._common import (
    authority_passphrase,
    call,
    format_option,
    home_option,
    keystore,
    show,
    with_client,
)
from clients.cli.terminal import Column, abort, terminal
from clients.sdk import AttacheClient, certify_device, check_certifiable
from protocol.catalog import Catalog, CatalogError
from protocol.labels import Clearance, LabelError, render_clearance


@click.group()
def device() -> None:
    """Devices: yours, or your nation's if you are its security officer."""


COLUMNS: tuple[Column, ...] = (
    ("device", lambda d: d["id"]),
    ("user", lambda d: d["username"]),
    ("nation", lambda d: show(d["nationality"])),
    ("name", lambda d: d["name"]),
    ("status", lambda d: d["status"]),
    ("fingerprint", lambda d: d["fingerprint"]),
)


@device.command("list")
@click.option("--pending", is_flag=True, help="only devices waiting for a certificate")
@format_option
@home_option
def list_devices(pending: bool, fmt: str, home: Path | None) -> None:
    """List devices."""

    async def go(client: AttacheClient) -> list[dict[str, Any]]:
        return await client.devices(status="pending" if pending else None)

    terminal.listing(fmt, with_client(home, go), COLUMNS)


@device.command("certify")
@click.argument("device_id")
@click.option("--nation", required=True, help="your nation, whose authority key is held here")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@home_option
def certify(device_id: str, nation: str, yes: bool, home: Path | None) -> None:
    """Certify DEVICE_ID with your nation's authority key, after checking its fingerprint."""
    code = nation.upper()

    async def fetch(client: AttacheClient) -> tuple[dict[str, Any], str | None]:
        found = await client.device(device_id)
        return found, await _banner(client, found.get("user_clearance"))

    found, clearance = with_client(home, fetch)
    call(lambda: check_certifiable(code, found))
    if clearance is None:
        abort(
            f"{found['username']}'s clearance is not one the label catalog defines; "
            "set it again (attache user clear) before certifying"
        )
    terminal.say(f"device {found['id']} '{found['name']}' of {found['username']} ({code})")
    terminal.say(f"  fingerprint: {found['fingerprint']}")
    terminal.say(f"  clearance to vouch for: {clearance}")
    if not yes and not click.confirm("Does the user read you the same fingerprint?"):
        abort("not certified")
    store = keystore(home)
    secret = authority_passphrase(code)
    authority = call(lambda: store.authority(code, secret))

    async def submit(client: AttacheClient) -> dict[str, Any]:
        return await certify_device(client, code, authority, found)

    done = with_client(home, submit)
    terminal.say(f"device {done['id']} is {done['status']}")


async def _banner(client: AttacheClient, canonical: dict[str, Any] | None) -> str | None:
    """The banner of the clearance a certificate would carry (``canonical``, as signed), or
    None when the catalog in force does not define it."""
    if canonical is None:
        return "-"  # check_certifiable refuses it with the reason
    info = await client.catalog()
    try:
        catalog = Catalog.from_toml(info["toml"]).with_directory(info["nations"], info["groups"])
        return render_clearance(Clearance.from_canonical(canonical, catalog), catalog)
    except (CatalogError, LabelError, KeyError, TypeError, ValueError):
        return None


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
