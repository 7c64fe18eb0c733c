"""Which server a command talks to (issue 10, item 3): a command with no enrolled home yet
takes ``--server``, then ATTACHE_SERVER, then ATTACHE_PORT on 127.0.0.1, then the default; a
home that enrolled keeps its server and says so when the environment names another. And the
operator's `attache-server audit key` (and the enrol command `user code` prints) name the
origin the running server recorded in its data directory, whatever the environment it is run
in says."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from clients.cli import main
from clients.cli._common import server_address
from clients.sdk import Keystore
from server import bootstrap
from server.cli import main as server_main
from server.settings import Settings
from tests.factories import PASSPHRASE, World


def _port(origin: str) -> str:
    return origin.rsplit(":", 1)[1]


async def _invoke(env: dict[str, str], *args: str) -> Result:
    runner = CliRunner()
    base: dict[str, str | None] = {"ATTACHE_PASSPHRASE": PASSPHRASE, "NO_COLOR": "1"}
    # Unset unless the test sets them: the developer's shell must not steer the test.
    base |= {"ATTACHE_SERVER": None, "ATTACHE_PORT": None, "COLUMNS": "80"}
    return await asyncio.to_thread(
        runner.invoke, main, list(args), env=base | env, catch_exceptions=False
    )


async def _enrol(world: World, username: str, home: Path, env: dict[str, str], *args: str) -> str:
    user = await world.user(username, "USA")
    code = await world.code(user)
    result = await _invoke(
        env, "enroll", "--user", username, "--code", code, "--home", str(home), *args
    )
    assert result.exit_code == 0, result.output
    return result.output


async def test_enroll_takes_the_server_in_order(world: World, live: str, tmp_path: Path) -> None:
    await world.nation("USA")
    port = _port(live)

    # ATTACHE_PORT alone: 127.0.0.1 on that port, as `make run` serves.
    out = await _enrol(world, "ann", tmp_path / "ann", {"ATTACHE_PORT": port})
    assert f"registered for ann (pending) with {live}" in out
    assert Keystore(tmp_path / "ann").profile().server == live

    # ATTACHE_SERVER before ATTACHE_PORT; --server before both.
    await _enrol(
        world, "ben", tmp_path / "ben", {"ATTACHE_SERVER": live + "/", "ATTACHE_PORT": "1"}
    )
    assert Keystore(tmp_path / "ben").profile().server == live
    await _enrol(
        world,
        "cal",
        tmp_path / "cal",
        {"ATTACHE_SERVER": "http://127.0.0.1:1", "ATTACHE_PORT": "1"},
        "--server",
        live,
    )
    assert Keystore(tmp_path / "cal").profile().server == live

    # Nothing named: the default.
    with pytest.MonkeyPatch.context() as env:
        env.delenv("ATTACHE_SERVER", raising=False)
        env.delenv("ATTACHE_PORT", raising=False)
        assert server_address(None) == "http://127.0.0.1:8600"
        env.setenv("ATTACHE_PORT", " ")
        assert server_address(None) == "http://127.0.0.1:8600"

    # Bad values are refused in a sentence before anything is asked or made.
    for env, said in (
        ({"ATTACHE_PORT": "86OO"}, "ATTACHE_PORT='86OO' is not a port number"),
        ({"ATTACHE_SERVER": "127.0.0.1:8600"}, "ATTACHE_SERVER '127.0.0.1:8600': give the"),
    ):
        bad = await _invoke(env, "enroll", "--user", "x", "--code", "y", "--home", str(tmp_path))
        assert bad.exit_code == 1
        assert said in bad.output
        assert "Traceback" not in bad.output


async def test_an_enrolled_home_keeps_its_server_and_says_so(world: World, live: str) -> None:
    await world.nation("USA")
    alice = await world.member("alice", "USA")
    home = {"ATTACHE_HOME": str(alice.keystore.home)}

    # The environment names another server: the device's own is used, and the note says so,
    # once, on standard error.
    result = await _invoke(home | {"ATTACHE_PORT": "8611"}, "login")
    assert result.exit_code == 0, result.output
    assert f"signed in to {live} as alice" in result.stdout
    note = (
        f"Note: this device is enrolled with {live} and uses it (login proofs are bound to "
        "that server); ATTACHE_PORT names http://127.0.0.1:8611, which is not used."
    )
    assert " ".join(result.stderr.split()) == note
    listed = await _invoke(home | {"ATTACHE_SERVER": "https://elsewhere.example"}, "user", "list")
    assert listed.exit_code == 0, listed.output
    assert listed.stderr.count("Note: this device is enrolled with") == 1
    assert "ATTACHE_SERVER names https://elsewhere.example" in " ".join(listed.stderr.split())

    # A value that is no address, where none is used: no note and no refusal.
    for env in ({"ATTACHE_PORT": "86OO"}, {"ATTACHE_SERVER": "127.0.0.1:8611"}):
        quiet = await _invoke(home | env, "whoami")
        assert quiet.exit_code == 0, quiet.output
        assert quiet.stderr == ""

    # The same server named, or none: no note.
    for env in ({"ATTACHE_PORT": _port(live)}, {"ATTACHE_SERVER": live}, {}):
        quiet = await _invoke(home | env, "whoami")
        assert quiet.exit_code == 0, quiet.output
        assert quiet.stderr == ""


def _key(env: dict[str, str]) -> Result:
    return CliRunner().invoke(server_main, ["audit", "key"], env=env, catch_exceptions=False)


async def test_audit_key_names_the_origin_the_server_runs_under(
    app: object, settings: Settings, live: str, database_url: str, tmp_path: Path
) -> None:
    # The app's start recorded its origins in its data directory.
    recorded = bootstrap.recorded_origins(settings)
    assert recorded is not None
    assert recorded.public_url == live
    host = live.split("://", 1)[1]
    assert recorded.audit_origin == f"{host}/attache-audit"
    env = {
        "ATTACHE_DATA_DIR": str(settings.data_dir),
        "ATTACHE_DATABASE_URL": database_url,
        "ATTACHE_PUBLIC_URL": "",
        "ATTACHE_AUDIT_ORIGIN": "",
    }

    # Run in an environment that says another port: the key is still named as the server
    # signs, and the difference is said beside it.
    result = await asyncio.to_thread(_key, env | {"ATTACHE_PORT": "8611"})
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{host}/attache-audit+")
    assert result.stdout.strip() == app.state.audit_signer.vkey()  # type: ignore[attr-defined]
    assert "signs as " + f"{host}/attache-audit" in " ".join(result.stderr.split())
    assert "127.0.0.1:8611/attache-audit" in result.stderr

    # In the server's own environment: the key alone.
    same = await asyncio.to_thread(_key, env | {"ATTACHE_PUBLIC_URL": live})
    assert same.exit_code == 0, same.output
    assert same.stdout == result.stdout
    assert same.stderr == ""

    # The enrolment command printed with a code names the server's address too.
    def operator(*args: str) -> Result:
        return CliRunner().invoke(
            server_main, list(args), env=env | {"ATTACHE_PORT": "8611"}, catch_exceptions=False
        )

    added = await asyncio.to_thread(operator, "user", "add", "zed", "--role", "auditor")
    assert added.exit_code == 0, added.output
    issued = await asyncio.to_thread(operator, "user", "code", "zed")
    assert issued.exit_code == 0, issued.output
    assert f"enrol with: attache enroll --server {live} --user zed --code " in issued.output

    # A data directory no server has started with: refused, rather than guessed.
    fresh = tmp_path / "fresh"
    bootstrap.ensure_server_keys(Settings(data_dir=fresh))
    refused = await asyncio.to_thread(_key, env | {"ATTACHE_DATA_DIR": str(fresh)})
    assert refused.exit_code == 1
    assert f"no server has started with the data directory {fresh} yet" in refused.output
