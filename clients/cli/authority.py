"""attache authority: a nation's enrolment authority key, on its security officer's machine."""

from __future__ import annotations

from pathlib import Path

import click

from clients.cli._common import authority_passphrase, home_option, keystore, run
from clients.cli.terminal import abort, terminal
from protocol import keys


@click.group()
def authority() -> None:
    """Your nation's enrolment authority key (security officers only)."""


def _nation(value: str) -> str:
    code = value.strip().upper()
    if len(code) != 3 or not code.isalpha():
        abort(f"{value!r} is not an ISO 3166-1 alpha-3 nation code such as USA")
    return code


@authority.command("init")
@click.option("--nation", required=True, help="your nation, e.g. USA")
@home_option
def init(nation: str, home: Path | None) -> None:
    """Create the nation's authority key here, encrypted under a passphrase.

    Give the printed public key to the server's operator; the private key never leaves this
    machine.
    """
    code = _nation(nation)
    store = keystore(home)
    if store.authority_path(code).exists():
        abort(f"{store.authority_path(code)} already exists; refusing to overwrite it")
    secret = authority_passphrase(code, confirm=True)
    key = keys.AuthorityKey.generate()

    async def save() -> Path:
        return store.save_authority(code, key, secret)

    path = run(save())
    public = keys.b64u_encode(key.public_bytes())
    terminal.say(f"{code} enrolment authority key created: {path}")
    terminal.say(f"  key id:      {key.key_id}")
    terminal.say(f"  fingerprint: {key.fingerprint()}")
    terminal.say(f"  public key:  {public}")
    terminal.say("Ask the operator to register it:")
    terminal.say(f"  attache-server nation add {code} --name NAME --authority-key {public}")


@authority.command("show")
@click.option("--nation", required=True)
@home_option
def show(nation: str, home: Path | None) -> None:
    """Print the nation's authority public key (no passphrase needed)."""
    code = _nation(nation)
    path = keystore(home).home / f"authority-{code}.pub"
    if not path.exists():
        abort(f"no {code} authority key in {path.parent}")
    public = path.read_text(encoding="utf-8").strip()
    key = keys.b64u_decode(public)
    terminal.say(f"{code} authority key id {keys.authority_key_id(key)}")
    terminal.say(f"  fingerprint: {keys.fingerprint(key)}")
    terminal.say(f"  public key:  {public}")
