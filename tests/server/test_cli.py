"""attache-server: first run, then nations, groups, offices and users from the console."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from protocol import keys
from server.audit.models import AuditEvent
from server.cli import main
from server.db.engine import create_engine, create_sessionmaker


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


async def _events(database_url: str) -> list[AuditEvent]:
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            stmt = select(AuditEvent).order_by(AuditEvent.id)
            return list((await session.execute(stmt)).scalars().all())
    finally:
        await engine.dispose()


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
    assert "SEKRET" in _fails(
        env, "user", "add", "bob", "--nation", "USA", "--clearance", "NATO SEKRET"
    )
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
    # USA has a security officer now: its clearances are USA's to set, not the operator's
    # (issue 9, item 12). A plain sentence, and the refusal is audited.
    refused = _fails(env, "user", "add", "carol", "--nation", "USA", "--clearance", "NATO SECRET")
    assert refused.startswith("Error: USA has a security officer (sam), so only USA's security")
    assert "Traceback" not in refused
    events = asyncio.run(_events(env["ATTACHE_DATABASE_URL"]))
    assert [(e.action, e.decision, e.object_id) for e in events[-2:]] == [
        ("user.create", "allow", events[-2].object_id),
        ("user.create", "deny", "carol"),
    ]
    assert events[-2].details["bootstrap"] is True  # sam: the operator bootstrapping USA
    assert "USA has a security officer (sam)" in events[-1].reasons[0]
    # The operator still opens the account; sam sets the clearance.
    assert "user carol created" in _run(env, "user", "add", "carol", "--nation", "USA")
    users = _run(env, "user", "list")
    assert "sam" in users
    assert "NATO SECRET" in users
    assert "bob" not in users
    code = _run(env, "user", "code", "sam")
    assert "attache enroll" in code
