"""attache-server: first run, then nations, groups, offices and users from the console."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from protocol import keys
from server.cli import main


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> dict[str, str]:
    return {"ATTACHE_DATA_DIR": str(tmp_path / "var"), "ATTACHE_DATABASE_URL": database_url}


def _run(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _fails(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 1, result.output
    return result.output


def test_operator_console(env: dict[str, str], clean_database: None) -> None:
    first = _run(env, "init")
    assert "enrolment code:" in first
    assert "audit-ed25519.pem" in first
    key_file = Path(env["ATTACHE_DATA_DIR"]) / "keys" / "audit-ed25519.pem"
    assert key_file.stat().st_mode & 0o077 == 0
    again = _run(env, "init")
    assert "enrolment code" not in again  # shown once

    authority = keys.AuthorityKey.generate()
    public = keys.b64u_encode(authority.public_bytes())
    out = _run(env, "nation", "add", "usa", "--name", "United States", "--authority-key", public)
    assert f"authority key id {authority.key_id}" in out
    assert "USA" in _run(env, "nation", "list")
    assert "already registered" in _fails(
        env, "nation", "add", "USA", "--name", "x", "--authority-key", public
    )
    assert "not valid base64url" in _fails(
        env, "nation", "add", "GBR", "--name", "x", "--authority-key", "!!"
    )

    assert "group FIVE added" in _run(env, "group", "add", "FIVE", "--members", "USA,GBR")
    assert "'ZZZ'" in _fails(env, "group", "add", "SIX", "--members", "USA,ZZZ")
    listed = _run(env, "group", "list")
    assert "FIVE" in listed
    assert "NATO" in listed

    assert "created" in _run(env, "office", "add", "US Liaison", "--nation", "USA", "--host", "HQ")
    out = _run(
        env,
        "user",
        "add",
        "sam",
        "--nation",
        "USA",
        "--office",
        "US Liaison",
        "--clearance",
        "NATO SECRET",
        "--role",
        "officer",
        "--role",
        "security_officer",
    )
    assert "user sam created" in out
    assert "SEKRET" in _fails(
        env, "user", "add", "bob", "--nation", "USA", "--clearance", "NATO SEKRET"
    )
    users = _run(env, "user", "list")
    assert "sam" in users
    assert "NATO SECRET" in users
    assert "bob" not in users
    code = _run(env, "user", "code", "sam")
    assert "attache enroll" in code
