"""The server's own keys (issue 11, item 4): processes starting together in one new data
directory end up with one key, and `attache-server keys export` / `import` carry the keys to
another machine's data directory without ever showing them."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from server import bootstrap
from server.audit.integrator import load_signer
from server.cli import main
from server.settings import Settings

RACERS = 4
ROUNDS = 5
# Each racer imports the server once, says it is ready, then in each round waits for the
# starting gun (a file), makes the keys in that round's new data directory and says what it got.
RACER = """
import sys, time
from pathlib import Path
from server import bootstrap
from server.audit.integrator import load_signer
from server.settings import Settings

root, rounds = Path(sys.argv[1]), int(sys.argv[2])
(root / f"ready-{sys.argv[3]}").touch()
for round in range(rounds):
    while not (root / f"go{round}").exists():
        time.sleep(0.0005)
    settings = Settings(data_dir=root / f"var{round}")
    created = bootstrap.ensure_server_keys(settings)
    key = bootstrap.keys_dir(settings) / bootstrap.AUDIT_KEY_FILE
    print(len(created), load_signer(key, "example/log").vkey(), flush=True)
"""


def _audit_key(data_dir: Path) -> Path:
    return data_dir / "keys" / bootstrap.AUDIT_KEY_FILE


def test_processes_racing_in_a_new_data_directory_make_one_key(tmp_path: Path) -> None:
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(tmp_path), str(ROUNDS), str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(RACERS)
    ]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready-*"))) < RACERS:
        assert time.monotonic() < deadline, "the racers did not start"
        assert all(racer.poll() is None for racer in racers)
        time.sleep(0.05)
    heard: list[list[str]] = [[] for _ in racers]
    for round in range(ROUNDS):
        (tmp_path / f"go{round}").touch()
        # The next round's gun only once every racer has said what it got in this one.
        for racer, lines_so_far in zip(racers, heard, strict=True):
            assert racer.stdout is not None
            lines_so_far.append(racer.stdout.readline())
    answers = [racer.communicate(timeout=60) for racer in racers]
    assert all(racer.returncode == 0 for racer in racers), [err for _, err in answers]
    lines = [[*before, *out.splitlines()] for before, (out, _) in zip(heard, answers, strict=True)]
    for round in range(ROUNDS):
        made, vkeys = zip(*(said[round].split() for said in lines), strict=True)
        # One racer placed its key; every one of them loaded that one.
        assert sorted(made) == ["0"] * (RACERS - 1) + ["1"]
        assert len(set(vkeys)) == 1
        # Nothing else left behind (no half-written or temporary files), and private.
        data = tmp_path / f"var{round}"
        assert os.listdir(data / "keys") == [bootstrap.AUDIT_KEY_FILE]
        assert stat.S_IMODE(_audit_key(data).stat().st_mode) == 0o600


def _cli(data_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(
        main, list(args), env={"ATTACHE_DATA_DIR": str(data_dir)}, catch_exceptions=False
    )


def _secret_lines(pem: bytes) -> list[str]:
    """The lines of a PEM file that hold the key itself."""
    return [line for line in pem.decode().splitlines() if not line.startswith("-----")]


def test_keys_are_exported_and_imported_without_showing_them(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    bootstrap.ensure_server_keys(Settings(data_dir=first))
    key = _audit_key(first).read_bytes()
    carried = tmp_path / "carried" / "attache-keys.json"
    carried.parent.mkdir()

    exported = _cli(first, "keys", "export", str(carried))
    assert exported.exit_code == 0, exported.output
    assert f"wrote {bootstrap.AUDIT_KEY_FILE}" in exported.output
    assert stat.S_IMODE(carried.stat().st_mode) == 0o600
    assert json.loads(carried.read_text())["keys"] == {bootstrap.AUDIT_KEY_FILE: key.decode()}

    imported = _cli(second, "keys", "import", str(carried))
    assert imported.exit_code == 0, imported.output
    assert f"{bootstrap.AUDIT_KEY_FILE}: imported in {second / 'keys'}" in imported.output
    assert _audit_key(second).read_bytes() == key
    assert stat.S_IMODE(_audit_key(second).stat().st_mode) == 0o600
    assert stat.S_IMODE((second / "keys").stat().st_mode) == 0o700
    assert stat.S_IMODE(second.stat().st_mode) == 0o700
    # A server started on the second machine keeps the imported key.
    assert bootstrap.ensure_server_keys(Settings(data_dir=second)) == []
    again = _cli(second, "keys", "import", str(carried))
    assert again.exit_code == 0
    assert "already held" in again.output

    for result in (exported, imported, again):
        assert not any(line in result.output for line in _secret_lines(key))


def test_an_export_never_overwrites_nor_exports_nothing(tmp_path: Path) -> None:
    data = tmp_path / "var"
    nothing = _cli(data, "keys", "export", str(tmp_path / "keys.json"))
    assert nothing.exit_code == 1
    assert "there are no server keys" in nothing.output
    assert not (tmp_path / "keys.json").exists()

    bootstrap.ensure_server_keys(Settings(data_dir=data))
    there = tmp_path / "there.json"
    there.write_text("keep me")
    refused = _cli(data, "keys", "export", str(there))
    assert refused.exit_code == 1
    assert "exists already" in refused.output
    assert there.read_text() == "keep me"
    # Nor through a link to a file elsewhere.
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "elsewhere.json")
    assert _cli(data, "keys", "export", str(link)).exit_code == 1
    assert not (tmp_path / "elsewhere.json").exists()


def test_an_import_refuses_a_data_directory_with_another_key(tmp_path: Path) -> None:
    first, other = tmp_path / "first", tmp_path / "other"
    bootstrap.ensure_server_keys(Settings(data_dir=first))
    bootstrap.ensure_server_keys(Settings(data_dir=other))
    theirs = _audit_key(other).read_bytes()
    carried = tmp_path / "keys.json"
    assert _cli(first, "keys", "export", str(carried)).exit_code == 0

    refused = _cli(other, "keys", "import", str(carried))
    assert refused.exit_code == 1
    assert "holds another key already" in refused.output
    assert _audit_key(other).read_bytes() == theirs
    assert not any(line in refused.output for line in _secret_lines(theirs))


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("not json", "is not a file written by 'attache-server keys export'"),
        ('{"format": "something else", "keys": {}}', "is not a file written by"),
        ('{"format": "attache-server-keys/1", "keys": {}}', "holds no keys"),
        (
            '{"format": "attache-server-keys/1", "keys": {"../../escape.pem": "x"}}',
            "a key this version of Attaché does not know",
        ),
        (
            '{"format": "attache-server-keys/1", "keys": {"audit-ed25519.pem": "-----BEGIN"}}',
            "damaged audit-ed25519.pem",
        ),
    ],
)
def test_an_import_refuses_what_is_not_an_export(tmp_path: Path, content: str, said: str) -> None:
    source = tmp_path / "keys.json"
    source.write_text(content)
    source.chmod(0o600)
    data = tmp_path / "var"
    refused = _cli(data, "keys", "import", str(source))
    assert refused.exit_code == 1
    assert said in refused.output
    assert not (data / "keys").exists() or not os.listdir(data / "keys")
    assert not (tmp_path / "escape.pem").exists()


def test_an_import_notes_a_file_others_can_read(tmp_path: Path) -> None:
    first = tmp_path / "first"
    bootstrap.ensure_server_keys(Settings(data_dir=first))
    carried = tmp_path / "keys.json"
    assert _cli(first, "keys", "export", str(carried)).exit_code == 0
    carried.chmod(0o644)
    result = _cli(tmp_path / "second", "keys", "import", str(carried))
    assert result.exit_code == 0
    assert "is readable by other accounts; delete it once imported" in result.output
    signer = load_signer(_audit_key(tmp_path / "second"), "example/log")
    assert signer.vkey() == load_signer(_audit_key(first), "example/log").vkey()
