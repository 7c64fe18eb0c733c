"""The README's commands on a port other than 8600 (issue 10, item 3), as a new user runs them:
real server processes, `make run` and `make demo` from the Makefile, the two CLIs.

The demo runs as the README has it (`make run`, the embedded SQLite database in ./var); the
first directory, channels, committees and auditing run against `attache-server run` on SQLite,
the README's database. In both, only ATTACHE_PORT says where the server is: no command is
given --server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from clients.cli import main as attache_main
from tests.test_end_to_end import _field

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEMO_PASSPHRASE = "demo passphrase"
REL_USA_GBR = "NATO SECRET//REL TO USA, GBR"


def _port() -> int:
    import socket

    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port != 8600:
            return port


def _environment(port: int, **more: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("ATTACHE_") and key != "MAKEFLAGS"
    }
    return env | {
        "ATTACHE_PORT": str(port),
        "NO_COLOR": "1",
        "COLUMNS": "200",
        "PYTHONUNBUFFERED": "1",
        **more,
    }


class Shell:
    """Runs commands as the README writes them, in ``cwd``, with ``env`` and extra variables."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd = cwd
        self.env = env

    def run(self, *args: str, ok: bool = True, stdin: str | None = None, **env: str) -> str:
        program = args[0] if args[0] == "make" else str(BIN / args[0])
        result = subprocess.run(
            [program, *args[1:]],
            cwd=self.cwd,
            env=self.env | env,
            capture_output=True,
            text=True,
            timeout=120,
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
        )
        output = result.stdout + result.stderr
        assert (result.returncode == 0) == ok, f"{args}: exit {result.returncode}\n{output}"
        assert "Traceback" not in output, output
        return output

    def make(self, target: str) -> list[str]:
        # The repository's Makefile, run here; its virtual environment is the one running the
        # tests, already installed (STAMP empty: no reinstall).
        return ["make", "-f", str(ROOT / "Makefile"), target, "STAMP=", f"BIN={BIN}"]


@contextmanager
def _serving(command: list[str], cwd: Path, env: dict[str, str], port: int) -> Iterator[Path]:
    """``command`` serving on ``port`` until the block ends; yields its log."""
    log_path = cwd / f"server-{port}.log"
    with log_path.open("w+") as log:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
            yield log_path
        finally:
            # make and the server it started: the whole group.
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)


def _listen(sh: Shell, home: str) -> subprocess.Popen[str]:
    """`attache listen --count 1`, returned once it is listening."""
    process = subprocess.Popen(
        [str(BIN / "attache"), "listen", "--count", "1"],
        cwd=sh.cwd,
        env=sh.env | {"ATTACHE_HOME": home, "ATTACHE_PASSPHRASE": DEMO_PASSPHRASE},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    assert first.startswith("listening as "), first
    return process


def test_the_demo_on_another_port(tmp_path: Path) -> None:
    port = _port()
    (tmp_path / "scripts").symlink_to(ROOT / "scripts")
    sh = Shell(tmp_path, _environment(port))

    with _serving(sh.make("run"), tmp_path, sh.env, port) as log:
        assert f"Attaché listening on http://127.0.0.1:{port}" in log.read_text()
        out = sh.run(*sh.make("demo"))
        assert "The demo is ready" in out
        # The founding version made and signed with the officers' commands, in one process.
        assert "attache policy found --coalition demo --threshold 2" in out
        assert "attache policy sign --file var/demo/founding-policy.json --nation FRA" in out
        assert f'ATTACHE_PORT="{port}"' in out  # the Makefile passed it on

        def attache(user: str, *args: str, stdin: str | None = None) -> str:
            return sh.run(
                "attache",
                *args,
                stdin=stdin,
                ATTACHE_HOME=f"var/demo/{user}",
                ATTACHE_PASSPHRASE=DEMO_PASSPHRASE,
            )

        listening = _listen(sh, "var/demo/bob")
        try:
            attache("alice", "send", "--channel", "liaison", "--label", REL_USA_GBR, "hello")
            heard, _ = listening.communicate(timeout=60)
        finally:
            listening.kill()
        assert "hello" in heard
        assert listening.returncode == 0, heard
        read = attache("bob", "read", "--channel", "liaison")
        assert "hello" in read
        assert REL_USA_GBR in read
        assert "hello" not in attache("chloe", "read", "--channel", "liaison")

        # A fourth nation joins (the README's walk-through): DEU's key, proposed by USA,
        # refused at publication with one signature, signed by GBR, published, followed.
        held = attache("chloe", "policy", "show")
        assert "coalition demo, policy version 1" in held
        # The founding file the demo left: its digest is the one every device pinned. (In this
        # process: the command is tested on its own in tests/clients/test_coalition_founding.)
        shown = ["policy", "show", "--file", str(tmp_path / "var/demo/founding-policy.json")]
        founding = CliRunner().invoke(attache_main, shown).output
        assert "signed by FRA, GBR, USA: 3 of the 3 founding nations" in founding
        assert _field(r"founding digest:\s+(\S+)", held) == _field(r"digest:\s+(\S+)", founding)
        dieter = sh.run(
            "attache", "authority", "init", "--nation", "DEU", "--home", "var/demo/dieter",
            ATTACHE_AUTHORITY_PASSPHRASE=DEMO_PASSPHRASE,
        )  # fmt: skip
        deu_key = _field(r"key id:\s+(\S+)", dieter)
        proposed = sh.run(
            "attache", "policy", "propose", "--add-nation", "DEU", "--name", "Germany",
            "--authority-key", "var/demo/dieter/authority-DEU.pub", "--sign-as", "USA",
            ATTACHE_HOME="var/demo/alice", ATTACHE_PASSPHRASE=DEMO_PASSPHRASE,
            ATTACHE_AUTHORITY_PASSPHRASE=DEMO_PASSPHRASE,
        )  # fmt: skip
        digest = _field(r"proposed policy version 2 of demo, digest (\S+)", proposed)
        assert "signed by USA: 1 of the 2 signatures" in proposed
        publish = ("attache-server", "policy", "publish", "--proposal", digest)
        refused = sh.run(*publish, ok=False)
        assert "signed by 1 nation(s) of version 1 (USA); its threshold is 2" in refused
        signed = sh.run(
            "attache", "policy", "sign", "--nation", "GBR", "--", digest, stdin="y\n",
            ATTACHE_HOME="var/demo/bob", ATTACHE_PASSPHRASE=DEMO_PASSPHRASE,
            ATTACHE_AUTHORITY_PASSPHRASE=DEMO_PASSPHRASE,
        )  # fmt: skip
        assert f"+ nation DEU (Germany), keys {deu_key}" in signed
        assert "GBR signed policy version 2" in signed
        assert "signed by GBR, USA" in sh.run(*publish)
        diff = sh.run("attache", "policy", "diff", "1", "2", ATTACHE_HOME="var/demo/chloe")
        assert f"  + nation DEU (Germany), keys {deu_key}" in diff.splitlines()


# On SQLite alone: what this story adds is the README's commands in real processes finding the
# server by ATTACHE_PORT, which no database changes. The same commands on PostgreSQL run in
# tests/clients (the CLI in process, on both databases: test_cli_committee_story, test_cli_names,
# test_cli_lists, test_cli_audit) and, as real processes, in test_end_to_end on both databases.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_first_directory_on_another_port(
    tmp_path: Path, database_url: str, clean_database: None
) -> None:
    port = _port()
    env = _environment(
        port,
        ATTACHE_DATA_DIR=str(tmp_path / "var"),
        ATTACHE_DATABASE_URL=database_url,
        ATTACHE_PASSPHRASE="device passphrase for tests",
        ATTACHE_AUTHORITY_PASSPHRASE="authority passphrase for tests",
    )
    sh = Shell(tmp_path, env)
    homes = tmp_path / "homes"
    sam, gwen, alice, bob, audrey = (str(homes / n) for n in ("sam", "gwen", "alice", "bob", "a"))

    with _serving([str(BIN / "attache-server"), "run"], tmp_path, env, port) as log:
        operator_code = _field(r"enrolment code:\s+(\S+)", log.read_text())
        assert f"attache enroll --server http://127.0.0.1:{port} --user operator" in (
            log.read_text()
        )
        # 1. Each security officer's authority key; 2. the operator registers.
        usa = _field(r"public key:\s+(\S+)", sh.run("attache", "authority", "init", "--nation",
                                                     "USA", "--home", sam))  # fmt: skip
        gbr = _field(r"public key:\s+(\S+)", sh.run("attache", "authority", "init", "--nation",
                                                     "GBR", "--home", gwen))  # fmt: skip
        sh.run("attache-server", "nation", "add", "USA", "--name", "United States",
               "--authority-key", usa)  # fmt: skip
        sh.run("attache-server", "nation", "add", "GBR", "--name", "United Kingdom",
               "--authority-key", gbr)  # fmt: skip
        sh.run("attache-server", "group", "add", "AUKUS", "--members", "USA,GBR,AUS")
        sh.run("attache-server", "office", "add", "US Liaison Office", "--nation", "USA",
               "--host", "NATO HQ")  # fmt: skip
        for name, nation in (("sam", "USA"), ("gwen", "GBR")):
            sh.run("attache-server", "user", "add", name, "--nation", nation,
                   "--clearance", "NATO SECRET", "--role", "officer",
                   "--role", "security_officer")  # fmt: skip

        # 3. Each security officer enrols and certifies their own device: no --server.
        for name, nation, home in (("sam", "USA", sam), ("gwen", "GBR", gwen)):
            code = _field(r"enrolment code for \w+: (\S+)",
                          sh.run("attache-server", "user", "code", name))  # fmt: skip
            out = sh.run("attache", "enroll", "--user", name, "--code", code,
                         "--certify-as", nation, "--home", home)  # fmt: skip
            assert f"(active) with http://127.0.0.1:{port}" in out
            assert "signed in" in sh.run("attache", "login", "--home", home)

        # 4. A user of each nation, enrolled and certified.
        for officer, name, nation, home in (
            (sam, "alice", "USA", alice),
            (gwen, "bob", "GBR", bob),
        ):
            sh.run("attache", "user", "add", name, "--nation", nation,
                   "--clearance", "NATO SECRET", "--home", officer)  # fmt: skip
            code = _field(rf"enrolment code for {name}: (\S+)",
                          sh.run("attache", "user", "code", name, "--home", officer))  # fmt: skip
            out = sh.run("attache", "enroll", "--user", name, "--code", code, "--home", home)
            device = _field(rf"device (\S+) registered for {name} \(pending\)", out)
            assert device in sh.run("attache", "device", "list", "--pending", "--home", officer)
            sh.run("attache", "device", "certify", device, "--nation", nation, "--yes",
                   "--home", officer)  # fmt: skip
            sh.run("attache", "login", "--home", home)
        assert "NATO SECRET" in sh.run("attache", "whoami", "--home", alice)
        assert "alice" in sh.run("attache", "user", "list", "--home", sam)

        # 5. Channels and messages.
        sh.run("attache", "channel", "create", "liaison", "--ceiling", "NATO SECRET",
               "--home", alice)  # fmt: skip
        sh.run("attache", "channel", "add", "liaison", "bob", "--home", alice)
        assert "liaison" in sh.run("attache", "channel", "list", "--home", bob)
        assert "bob" in sh.run("attache", "channel", "members", "liaison", "--home", alice)
        sh.run("attache", "send", "--channel", "liaison", "--label", REL_USA_GBR,
               "Meeting moved to 14:00", "--home", alice)  # fmt: skip
        sh.run("attache", "send", "--channel", "liaison", "--home", alice, stdin="from a script\n")
        read = sh.run("attache", "read", "--channel", "liaison", "--home", bob)
        assert "Meeting moved to 14:00" in read
        assert "from a script" in read

        # Committees and documents.
        sh.run("attache", "committee", "create", "cell", "--ceiling", "NATO SECRET",
               "--chair", "alice", "--secretary", "bob", "--home", alice)  # fmt: skip
        sh.run("attache", "committee", "add", "cell", "sam", "--home", bob)
        assert "secretary" in sh.run("attache", "committee", "members", "cell", "--home", sam)
        out = sh.run("attache", "meeting", "schedule", "cell", "--at", "2026-12-01T10:00Z",
                     "--title", "Planning", "--place", "Room 4", "--home", bob)  # fmt: skip
        meeting = _field(r"meeting (\S+) scheduled", out)
        out = sh.run("attache", "meeting", "item-add", meeting, "--title", "Logistics",
                     "--home", bob)  # fmt: skip
        item = _field(r"agenda item (\S+) added", out)
        brief = tmp_path / "brief.pdf"
        brief.write_bytes(b"%PDF the brief")
        out = sh.run("attache", "doc", "put", "--channel", "cell", "--label", REL_USA_GBR,
                     str(brief), "--home", alice)  # fmt: skip
        version = _field(r"version id (\S+)", out)
        sh.run("attache", "meeting", "attach", meeting, item, version, "--home", bob)
        agenda = sh.run("attache", "meeting", "agenda", meeting, "--home", alice)
        assert f"document brief.pdf, version 1, {REL_USA_GBR}" in agenda
        out = sh.run("attache", "doc", "get", version, "--out", str(tmp_path / "got.pdf"),
                     "--home", bob)  # fmt: skip
        assert (tmp_path / "got.pdf").read_bytes() == brief.read_bytes()
        assert version in sh.run("attache", "doc", "list", "--channel", "cell", "--home", bob)
        sh.run("attache", "release", "request", "--document", version, "--add", "FRA",
               "--reason", "FRA leads the cell", "--home", alice)  # fmt: skip
        listed = sh.run("attache", "release", "list", "--home", alice)
        assert version in listed
        assert " alice " in listed  # the requester by name (issue 10, item 6)

        # Auditing: the key the operator prints is named by the server's own origin.
        sh.run("attache-server", "user", "add", "audrey", "--role", "auditor")
        code = _field(r"enrolment code for audrey: (\S+)",
                      sh.run("attache-server", "user", "code", "audrey"))  # fmt: skip
        sh.run("attache", "enroll", "--user", "audrey", "--code", code, "--home", audrey)
        sh.run("attache", "login", "--home", audrey)
        vkey = sh.run("attache-server", "audit", "key").strip()
        assert vkey.startswith(f"127.0.0.1:{port}/attache-audit+")
        sh.run("attache-server", "audit", "integrate")
        out = sh.run("attache", "audit", "verify", "--vkey", vkey, "--home", audrey)
        assert "audit log verified" in out
        assert "channel.create" in sh.run("attache", "audit", "log", "--home", audrey)
        by_alice = sh.run("attache", "audit", "log", "--actor", "alice", "--home", audrey)
        assert "channel.create" in by_alice
        assert " alice " in by_alice
        sh.run("attache", "audit", "log", "--decision", "deny", "--home", audrey)
        csv = sh.run("attache", "audit", "log", "--format", "csv", "--home", audrey)
        first = _field(r"\n(\d+),", csv)
        assert "inclusion proof verified" in sh.run(
            "attache", "audit", "prove", first, "--home", audrey
        )

        # The operator's own account, enrolled as the README says.
        out = sh.run("attache", "enroll", "--user", "operator", "--code", operator_code,
                     "--home", str(homes / "operator"))  # fmt: skip
        assert f"with http://127.0.0.1:{port}" in out
