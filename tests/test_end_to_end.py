"""The foundation as a new user meets it: a real server process and the two CLIs.

An operator registers nations (with the public keys their security officers created), an
office and users; a security officer enrols their own device and then a user's; the user logs
in with `attache`; a security officer of another nation cannot touch that user.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clients.server_process import attache_server_run, free_port

BIN = Path(sys.executable).parent


class Shell:
    def __init__(self, base_env: dict[str, str]) -> None:
        self.base_env = base_env

    def run(self, *args: str, ok: bool = True, **env: str) -> str:
        result = subprocess.run(
            [str(BIN / args[0]), *args[1:]],
            env={**self.base_env, **env},
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        output = result.stdout + result.stderr
        assert (result.returncode == 0) == ok, f"{args}: exit {result.returncode}\n{output}"
        return output


@pytest.fixture
def server(
    tmp_path: Path, database_url: str, clean_database: None
) -> Iterator[tuple[str, Shell, str]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "ATTACHE_DATA_DIR": str(tmp_path / "var"),
        "ATTACHE_DATABASE_URL": database_url,
        "ATTACHE_PORT": str(port),
        "ATTACHE_PASSPHRASE": "device passphrase for tests",
        "ATTACHE_AUTHORITY_PASSPHRASE": "authority passphrase for tests",
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }
    log = tmp_path / "server.log"
    with attache_server_run(env, url, log):
        yield url, Shell(env), log.read_text()


def _field(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in:\n{text}"
    return match.group(1)


# On PostgreSQL alone, the database of a deployment: the same story's commands run as real
# processes on SQLite in test_readme_port (the README's first directory), and what it asserts
# of the server (the refusals, the re-certification, the auditor's scope) is tested on both
# databases in process (tests/server/test_cli.py, test_clearance_authority.py, test_devices.py,
# test_audit.py; tests/clients/test_cli_small_things.py). A second database would add ~45 s of
# process start-ups and no check that those do not make.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_operator_security_officers_and_a_user(
    tmp_path: Path, server: tuple[str, Shell, str]
) -> None:
    url, sh, startup = server
    assert "Operator bootstrap credentials" in startup
    homes = tmp_path / "homes"

    # Each nation's security officer creates the authority key on their own machine.
    usa_pub = _field(
        r"public key:\s+(\S+)",
        sh.run("attache", "authority", "init", "--nation", "USA", "--home", str(homes / "sam")),
    )
    gbr_pub = _field(
        r"public key:\s+(\S+)",
        sh.run("attache", "authority", "init", "--nation", "GBR", "--home", str(homes / "gwen")),
    )

    # The operator registers only the public keys, then an office and the people.
    sh.run(
        "attache-server",
        "nation",
        "add",
        "USA",
        "--name",
        "United States",
        "--authority-key",
        usa_pub,
    )
    sh.run(
        "attache-server",
        "nation",
        "add",
        "GBR",
        "--name",
        "United Kingdom",
        "--authority-key",
        gbr_pub,
    )
    sh.run("attache-server", "group", "add", "AUKUS", "--members", "USA,GBR,AUS")
    sh.run(
        "attache-server",
        "office",
        "add",
        "US Liaison Office",
        "--nation",
        "USA",
        "--host",
        "NATO HQ",
    )
    sh.run(
        "attache-server",
        "user",
        "add",
        "sam",
        "--nation",
        "USA",
        "--office",
        "US Liaison Office",
        "--clearance",
        "NATO SECRET",
        "--role",
        "officer",
        "--role",
        "security_officer",
    )
    sh.run(
        "attache-server",
        "user",
        "add",
        "gwen",
        "--nation",
        "GBR",
        "--clearance",
        "NATO SECRET",
        "--role",
        "security_officer",
    )

    # Each security officer enrols and self-certifies their own device, then logs in.
    for name, nation in (("sam", "USA"), ("gwen", "GBR")):
        code = _field(
            r"enrolment code for \w+: (\S+)", sh.run("attache-server", "user", "code", name)
        )
        out = sh.run(
            "attache",
            "enroll",
            "--server",
            url,
            "--user",
            name,
            "--code",
            code,
            "--certify-as",
            nation,
            "--home",
            str(homes / name),
        )
        assert "(active)" in out
        assert "signed in" in sh.run("attache", "login", "--home", str(homes / name))

    # USA has a security officer: its clearances are now Sam's to set, not the operator's.
    refused = sh.run(
        "attache-server",
        "user",
        "add",
        "alice",
        "--nation",
        "USA",
        "--clearance",
        "NATO SECRET",
        ok=False,
    )
    assert "only USA's security officers set the clearances of its users" in refused
    assert "Traceback" not in refused
    out = sh.run(
        "attache",
        "user",
        "add",
        "alice",
        "--nation",
        "USA",
        "--clearance",
        "NATO SECRET",
        "--home",
        str(homes / "sam"),
    )
    assert "user alice created" in out

    # Sam issues Alice a code; Alice enrols; her device waits for Sam's certificate.
    code = _field(
        r"enrolment code for alice: (\S+)",
        sh.run("attache", "user", "code", "alice", "--home", str(homes / "sam")),
    )
    out = sh.run(
        "attache",
        "enroll",
        "--server",
        url,
        "--user",
        "alice",
        "--code",
        code,
        "--home",
        str(homes / "alice"),
    )
    device_id = _field(r"device (\S+) registered for alice \(pending\)", out)
    fingerprint = _field(r"fingerprint: ([0-9a-f ]+)\n", out)
    assert "awaits certification by USA's security officer (sam)" in sh.run(
        "attache", "login", "--home", str(homes / "alice"), ok=False
    )
    pending = sh.run("attache", "device", "list", "--pending", "--home", str(homes / "sam"))
    assert device_id in pending
    out = sh.run(
        "attache",
        "device",
        "certify",
        device_id,
        "--nation",
        "USA",
        "--yes",
        "--home",
        str(homes / "sam"),
    )
    assert fingerprint.strip() in out
    assert "is active" in out

    # Alice logs in with her device key.
    out = sh.run("attache", "login", "--home", str(homes / "alice"))
    assert "as alice (USA, NATO SECRET)" in out
    assert "NATO SECRET" in sh.run("attache", "whoami", "--home", str(homes / "alice"))

    # Gwen (GBR) cannot touch a USA user, with or without the USA authority key.
    refused = sh.run("attache", "user", "code", "alice", "--home", str(homes / "gwen"), ok=False)
    assert "manages only users of GBR" in refused
    refused = sh.run(
        "attache",
        "device",
        "certify",
        device_id,
        "--nation",
        "GBR",
        "--yes",
        "--home",
        str(homes / "gwen"),
        ok=False,
    )
    assert "unknown device" in refused
    refused = sh.run(
        "attache",
        "user",
        "clear",
        "alice",
        "NATO CONFIDENTIAL",
        "--nation",
        "USA",
        "--home",
        str(homes / "gwen"),
        ok=False,
    )
    assert "no authority key for USA" in refused

    # Sam lowers Alice's clearance: her device is re-certified in the same step.
    out = sh.run(
        "attache",
        "user",
        "clear",
        "alice",
        "NATO CONFIDENTIAL",
        "--nation",
        "USA",
        "--home",
        str(homes / "sam"),
    )
    assert "now cleared NATO CONFIDENTIAL" in out
    assert "NATO CONFIDENTIAL" in sh.run("attache", "whoami", "--home", str(homes / "alice"))

    # Wrong passphrase: a plain sentence, no traceback.
    refused = sh.run(
        "attache", "login", "--home", str(homes / "alice"), ok=False, ATTACHE_PASSPHRASE="wrong"
    )
    assert "wrong passphrase" in refused
    assert "Traceback" not in refused

    # An auditor pins the operator's audit key, verifies the whole log, exports and proves.
    sh.run("attache-server", "user", "add", "audrey", "--role", "auditor")
    code = _field(
        r"enrolment code for audrey: (\S+)", sh.run("attache-server", "user", "code", "audrey")
    )
    audrey = str(homes / "audrey")
    out = sh.run(
        "attache", "enroll", "--server", url, "--user", "audrey", "--code", code, "--home", audrey
    )
    assert "(active)" in out
    sh.run("attache", "login", "--home", audrey)
    vkey = sh.run("attache-server", "audit", "key").strip()
    sh.run("attache-server", "audit", "integrate")
    out = sh.run("attache", "audit", "verify", "--vkey", vkey, "--home", audrey)
    assert "audit log verified" in out
    csv = sh.run("attache", "audit", "log", "--format", "csv", "--home", audrey)
    assert "device.certify" in csv
    assert "user.clearance" in csv
    table = sh.run("attache", "audit", "log", "--action", "nation.create", "--home", audrey)
    assert table.count("nation.create") == 2
    first = _field(r"\n(\d+),", csv)
    out = sh.run("attache", "audit", "prove", first, "--home", audrey)
    assert "inclusion proof verified" in out
    refused = sh.run("attache", "audit", "log", "--home", str(homes / "alice"), ok=False)
    assert "only auditors" in refused
