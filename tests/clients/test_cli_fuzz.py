"""Every command of the `attache` CLI, given odd arguments, answers with a plain sentence:
never a traceback, never an exception out of the command, exit status 0, 1 (refused) or 2
(usage). The user is a signed-in officer, member of a channel, so that the arguments get past
"not enrolled" into each command's own checks; every argument and required option is given
each odd value in turn, then every option that takes a value too. Commands that wait for ever
(`listen`, `audit witness run`) are left out; those that end the session go last. On SQLite
only: the server's side of bad input is tests/server/test_api_fuzz.py's, on both databases.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from clients.cli import main
from clients.sdk import ApiError, KeystoreError
from tests.factories import PASSPHRASE, Member, World

ODD = (
    "",
    " ",
    "-1",
    "99999999999999999999999",
    "ü" * 300,
    "NATO SECRET//REL TO ZZZ",
    "../../../../etc/passwd",
    "2026-02-30T25:61:00",
    "\u202eevil\u200b",
)
_LEFT_OUT = {("listen",), ("audit", "witness", "run")}
_LAST = {("logout",), ("device", "revoke")}


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        elif (*path, name) not in _LEFT_OUT:
            yield (*path, name)


def _command(path: tuple[str, ...]) -> click.Command:
    command: click.Command = main
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


def _argv(path: tuple[str, ...], value: str, *, every_option: bool = False) -> list[str]:
    """The command with ``value`` for every argument and required option (and, with
    ``every_option``, every option that takes a value), and --yes where it asks for a
    confirmation (there is no terminal to confirm on)."""
    command = _command(path)
    argv = list(path)
    arguments: list[str] = []
    for param in command.params:
        if isinstance(param, click.Option):
            if param.required or (every_option and not param.is_flag):
                argv += [param.opts[0], value]
            elif param.name == "yes":
                argv.append(param.opts[0])
        elif isinstance(param, click.Argument):
            arguments.append(value)
    return [*argv, "--", *arguments] if arguments else argv


async def test_no_odd_argument_makes_a_command_fail_badly(
    world: World, live: str, database_url: str, tmp_path: Path
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("the CLI's handling of its input does not depend on the database")
    await world.nation("USA")
    alice: Member = await world.member("alice", "USA", roles=("officer", "security_officer"))
    await alice.client.create_channel("liaison", "NATO SECRET")
    env = {
        "ATTACHE_HOME": str(alice.keystore.home),
        "ATTACHE_PASSPHRASE": PASSPHRASE,
        "ATTACHE_AUTHORITY_PASSPHRASE": "authority passphrase for tests",
        "COLUMNS": "120",
        "NO_COLOR": "1",
    }
    runner = CliRunner()
    login = await asyncio.to_thread(runner.invoke, main, ["login"], env=env)
    assert login.exit_code == 0, login.output

    paths = sorted(_commands(main), key=lambda path: path in _LAST)
    assert len(paths) > 50
    failures: list[str] = []
    for path in paths:
        for value, every_option in [(v, False) for v in ODD] + [(v, True) for v in ODD]:
            argv = _argv(path, value, every_option=every_option)
            result = await asyncio.to_thread(
                runner.invoke, main, argv, env=env, input="", catch_exceptions=True
            )
            out = result.output
            if (
                result.exit_code not in (0, 1, 2)
                or "Traceback" in out
                or (result.exception is not None and not isinstance(result.exception, SystemExit))
            ):
                failures.append(
                    f"attache {[a[:40] for a in argv]}: exit {result.exit_code}, "
                    f"{result.exception!r}: {out[-300:]!r}"
                )
            elif result.exit_code == 1 and not out.strip():
                failures.append(f"attache {' '.join(argv)!r}: refused without a word")
    assert not failures, "\n".join(failures)


async def test_what_the_fuzzing_found_is_said_plainly(
    world: World, live: str, database_url: str, tmp_path: Path
) -> None:
    """Each was a Python exception out of the command: an empty name (which named the
    collection, answered by a redirect taken for an empty answer), a nation code that made
    the keystore's file name, and a file name the system refuses."""
    if not database_url.startswith("sqlite"):
        pytest.skip("the CLI's handling of its input does not depend on the database")
    await world.nation("USA")
    alice = await world.member("alice", "USA", roles=("officer", "security_officer"))
    env = {"ATTACHE_HOME": str(alice.keystore.home), "ATTACHE_PASSPHRASE": PASSPHRASE}
    env |= {"ATTACHE_AUTHORITY_PASSPHRASE": "x", "NO_COLOR": "1", "COLUMNS": "200"}
    runner = CliRunner()
    assert (await asyncio.to_thread(runner.invoke, main, ["login"], env=env)).exit_code == 0
    for argv in (["channel", "members", "--", ""], ["device", "revoke", "--", ""]):
        result = await asyncio.to_thread(runner.invoke, main, argv, env=env)
        assert result.exit_code == 1, result.output
        assert result.output == "Error: an empty name or id names nothing: give one\n"
    result = await asyncio.to_thread(
        runner.invoke,
        main,
        ["user", "clear", "alice", "NATO SECRET", "--nation", "../../x"],
        env=env,
    )
    assert result.exit_code == 1, result.output
    assert "'../../X' is not a nation code: three capital letters, as USA" in result.output
    with pytest.raises(KeystoreError, match="is not a nation code"):
        alice.keystore.save_authority("../USA", world.authorities["USA"], "x")
    assert not (tmp_path / "homes" / "authority-USA.key").exists()

    result = await asyncio.to_thread(
        runner.invoke, main, ["policy", "show", "--file", "ü" * 300], env=env
    )
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ")
    assert "File name too long" in result.output

    # A redirect is said, not taken for an answer (the API never redirects).
    with pytest.raises(ApiError, match="a redirect to"):
        await alice.client.request("GET", "/v1/channels/")
