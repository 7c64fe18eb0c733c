"""The founding version of a coalition policy, made and signed offline (issue 13, item 2):
`attache policy found` writes version 1 to a file, each founding nation's security officer
checks its digest (`attache policy show --file`) and signs it with their own authority key
(`attache policy sign --file`), and the operator publishes it (`attache-server policy publish
FILE`) once every founder has signed; a device enrolling then pins it.

The officers' machines here hold nothing but their nation's authority key: no device, no
server. Publication and pinning run on SQLite and PostgreSQL; the refusals are offline.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from clients.cli import main
from clients.sdk import Keystore
from protocol import keys
from protocol.coalition import SignedPolicy, build_policy, sign_policy
from server.cli import main as server_main
from tests.factories import FAST_KDF, PASSPHRASE, World

CATALOG = Path(__file__).resolve().parents[2] / "protocol" / "catalogs" / "default.toml"
FOUNDERS = (("USA", "United States"), ("GBR", "United Kingdom"), ("FRA", "France"))


def _attache(*args: str, home: Path | None = None, code: int = 0, stdin: str | None = None) -> str:
    env = {"ATTACHE_AUTHORITY_PASSPHRASE": PASSPHRASE, "NO_COLOR": "1", "COLUMNS": "200"}
    if home is not None:
        env["ATTACHE_HOME"] = str(home)
    result: Result = CliRunner().invoke(
        main, list(args), env=env, input=stdin, catch_exceptions=False
    )
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.output


def _officers(tmp_path: Path, authorities: dict[str, keys.AuthorityKey]) -> dict[str, Path]:
    """Each founding nation's security officer's machine: its authority key, nothing else."""
    homes = {}
    for code, _ in FOUNDERS:
        home = tmp_path / "officers" / code
        Keystore(home, kdf=FAST_KDF).save_authority(code, authorities[code], PASSPHRASE)
        homes[code] = home
    return homes


def _found(homes: dict[str, Path], out: Path, *more: str) -> str:
    nations = [
        f"--nation={code}={name}={homes[code] / f'authority-{code}.pub'}" for code, name in FOUNDERS
    ]
    return _attache(
        "policy", "found", "--coalition", "test", "--threshold", "2",
        "--catalog", str(CATALOG), *nations, "-o", str(out), *more,
    )  # fmt: skip


def _sign(file: Path, code: str, home: Path, *, exit_code: int = 0) -> str:
    return _attache(
        "policy", "sign", "--file", str(file), "--nation", code, "--yes", home=home,
        code=exit_code,
    )  # fmt: skip


def _digest(output: str) -> str:
    found = re.search(r"digest: ([A-Za-z0-9_-]{43})", output)
    assert found is not None, output
    return found.group(1)


async def _publish(database_url: str, tmp_path: Path, file: Path, code: int = 0) -> str:
    """The operator, on the server machine: attache-server policy publish FILE."""
    env = {"ATTACHE_DATA_DIR": str(tmp_path / "var"), "ATTACHE_DATABASE_URL": database_url}
    result: Result = await asyncio.to_thread(
        CliRunner().invoke,
        server_main,
        ["policy", "publish", str(file)],
        env=env,
        catch_exceptions=False,
    )
    assert result.exit_code == code, result.output
    return result.output


async def test_three_nations_found_sign_publish_and_a_device_pins_it(
    world: World, live: str, database_url: str, tmp_path: Path
) -> None:
    for code, name in FOUNDERS:
        await world.nation(code, name)
    homes = _officers(tmp_path, world.authorities)
    file = tmp_path / "policy.json"

    made = _found(homes, file, "--group", "DUO=USA,GBR")
    digest = _digest(made)
    assert "founding policy of test written to" in made
    assert "signed by no nation yet: 0 of the 3 founding nations; missing FRA, GBR, USA" in made
    assert f"attache policy sign --file {file} --nation NATION" in made
    for code, _ in FOUNDERS:
        key_id = world.authorities[code].key_id
        assert f"  {code}  {dict(FOUNDERS)[code]}  (authority keys {key_id})" in made
    assert "  DUO (policy): GBR, USA" in made

    # Each officer sees the same digest on their own machine before signing.
    out = _sign(file, "USA", homes["USA"])
    assert _digest(out) == digest
    assert "USA signed the founding version of test" in out
    assert "still to sign: FRA, GBR" in out
    _sign(file, "GBR", homes["GBR"])
    shown = _attache("policy", "show", "--file", str(file))
    assert _digest(shown) == digest
    assert "signed by GBR, USA: 2 of the 3 founding nations; missing FRA" in shown

    # FRA has not signed: the operator's publication is refused, naming it.
    refused = await _publish(database_url, tmp_path, file, code=1)
    assert "signed by every nation it lists; missing: FRA" in refused

    out = _sign(file, "FRA", homes["FRA"])
    assert "Every founding nation has signed: the operator publishes it with" in out
    assert f"attache-server policy publish {file}" in out
    published = await _publish(database_url, tmp_path, file)
    assert f"policy version 1 of test published, digest {digest}, signed by FRA, GBR, USA" in (
        published
    )

    # A device enrolling pins that founding version; its officer's digest matches.
    alice = await world.member("alice", "USA")
    pinned = alice.keystore.policy_pin()
    assert pinned is not None
    assert keys.b64u_encode(pinned[0]) == digest
    held = await asyncio.to_thread(_attache, "policy", "show", home=alice.keystore.home)
    assert f"founding digest: {digest}" in held
    assert "DUO (policy): GBR, USA" in held


def test_a_nation_signing_twice_or_with_a_key_not_listed(tmp_path: Path) -> None:
    authorities = {code: keys.AuthorityKey.generate() for code, _ in FOUNDERS}
    homes = _officers(tmp_path, authorities)
    file = tmp_path / "policy.json"
    _found(homes, file)
    _sign(file, "USA", homes["USA"])
    before = file.read_bytes()

    out = _sign(file, "USA", homes["USA"], exit_code=1)
    assert "USA has signed this founding version already" in out
    # GBR's officer holds another key than the one the founding version lists for GBR.
    other = tmp_path / "other"
    stray = keys.AuthorityKey.generate()
    Keystore(other, kdf=FAST_KDF).save_authority("GBR", stray, PASSPHRASE)
    out = _sign(file, "GBR", other, exit_code=1)
    assert "GBR cannot sign this founding version: signature for GBR made with key " in out
    assert f"{stray.key_id}, which version 1 does not list for GBR" in out
    # FRA's key cannot sign for GBR either.
    Keystore(homes["FRA"], kdf=FAST_KDF).save_authority("GBR", authorities["FRA"], PASSPHRASE)
    out = _sign(file, "GBR", homes["FRA"], exit_code=1)
    assert f"made with key {authorities['FRA'].key_id}, which version 1 lists for FRA" in out
    # A nation the founding version does not list.
    out = _sign(file, "DEU", homes["USA"], exit_code=1)
    assert "DEU is not a founding nation of" in out
    assert file.read_bytes() == before  # no refusal touched the file

    # A file that arrives carrying a signature by a key not listed for its nation: named by
    # show --file, and no officer adds a signature to it.
    signed = SignedPolicy.from_json(before)
    stray_signed = signed.with_signature(sign_policy(signed.policy, "GBR", stray))
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps(stray_signed.to_json()), encoding="utf-8")
    shown = _attache("policy", "show", "--file", str(odd))
    assert "signed by USA: 1 of the 3 founding nations; missing FRA, GBR" in shown
    assert f"not counted: signature for GBR made with key {stray.key_id}, which version 1 " in (
        shown
    )
    out = _sign(odd, "FRA", homes["FRA"], exit_code=1)
    assert "carries signatures that do not count" in out

    # Asked, and answered no: not signed.
    out = _attache(
        "policy", "sign", "--file", str(file), "--nation", "GBR", home=homes["GBR"],
        stdin="n\n", code=1,
    )  # fmt: skip
    assert "not signed" in out
    assert file.read_bytes() == before


async def test_a_file_changed_after_signing(
    world: World, database_url: str, tmp_path: Path
) -> None:
    authorities = {code: keys.AuthorityKey.generate() for code, _ in FOUNDERS}
    homes = _officers(tmp_path, authorities)
    file = tmp_path / "policy.json"
    digest = _digest(_found(homes, file))
    _sign(file, "USA", homes["USA"])
    _sign(file, "GBR", homes["GBR"])

    # Someone raises the threshold on the way to FRA: the digest changes, and the two
    # signatures made over the old one no longer count.
    document = json.loads(file.read_text(encoding="utf-8"))
    document["policy"]["threshold"] = 3
    file.write_text(json.dumps(document), encoding="utf-8")
    shown = _attache("policy", "show", "--file", str(file))
    changed = _digest(shown)
    assert changed != digest
    assert "signed by no nation yet: 0 of the 3 founding nations" in shown
    for code in ("GBR", "USA"):
        assert (
            f"not counted: {code}'s signature (key {authorities[code].key_id}) does not verify "
            f"over the digest {changed}: the file was changed after {code} signed it"
        ) in shown
    out = _sign(file, "FRA", homes["FRA"], exit_code=1)
    assert "carries signatures that do not count" in out
    assert "the file was changed after USA signed it" in out
    assert "refusing to add one" in out

    # The operator cannot publish it either; FRA's signature over the changed file would not
    # make it count.
    refused = await _publish(database_url, tmp_path, file, code=1)
    assert "does not verify" in refused
    signed = SignedPolicy.from_json(file.read_text(encoding="utf-8"))
    assert signed.policy.digest_b64u == changed


@pytest.mark.parametrize(
    ("nation", "expected"),
    [
        ("USA", "--nation 'USA': write CODE=NAME=KEY"),
        ("USA=United States", "--nation 'USA=United States': write CODE=NAME=KEY"),
        ("US=United States=KEYFILE", "'US' is not an ISO 3166-1 alpha-3 nation code"),
        ("USA=United States=missing/authority-USA.pub", "--nation USA: cannot read the "
         "authority key missing/authority-USA.pub: there is no such file"),
        ("USA=United States=nonsense", "--nation USA: 'nonsense' is neither an authority "
         "public key file"),
    ],
)  # fmt: skip
def test_bad_input_to_found(tmp_path: Path, nation: str, expected: str) -> None:
    file = tmp_path / "policy.json"
    out = _attache(
        "policy", "found", "--coalition", "test", "--threshold", "1",
        "--catalog", str(CATALOG), "--nation", nation, "-o", str(file), code=1,
    )  # fmt: skip
    assert expected in out
    assert not file.exists()


def test_bad_files(tmp_path: Path) -> None:
    authorities = {code: keys.AuthorityKey.generate() for code, _ in FOUNDERS}
    homes = _officers(tmp_path, authorities)
    file = tmp_path / "policy.json"
    usa = f"--nation=USA=United States={homes['USA'] / 'authority-USA.pub'}"
    found = ["policy", "found", "--coalition", "test", "--threshold", "1", usa]

    out = _attache(*found, "--catalog", str(tmp_path / "nope.toml"), "-o", str(file), code=1)
    assert f"cannot read the catalog {tmp_path / 'nope.toml'}: there is no such file" in out
    bad_catalog = tmp_path / "bad.toml"
    bad_catalog.write_text("this is = not [ a catalog\n", encoding="utf-8")
    out = _attache(*found, "--catalog", str(bad_catalog), "-o", str(file), code=1)
    assert "cannot make that founding version: catalog:" in out
    # An unreadable key file: a directory where the file should be, and bytes not UTF-8.
    (tmp_path / "dir.pub").mkdir()
    out = _attache(*found[:-1], f"--nation=USA=U={tmp_path / 'dir.pub'}", "--catalog",
                   str(CATALOG), "-o", str(file), code=1)  # fmt: skip
    assert f"cannot read the authority key {tmp_path / 'dir.pub'}: it is not a file" in out
    (tmp_path / "latin1.pub").write_bytes(b"\xff\xfe")
    out = _attache(*found[:-1], f"--nation=USA=U={tmp_path / 'latin1.pub'}", "--catalog",
                   str(CATALOG), "-o", str(file), code=1)  # fmt: skip
    assert f"--nation USA: cannot read the authority key {tmp_path / 'latin1.pub'}" in out
    out = _attache(*found, usa, "--catalog", str(CATALOG), "-o", str(file), code=1)
    assert "--nation USA is given twice" in out
    out = _attache(*found, "--group", "duo=USA,GBR", "--catalog", str(CATALOG), "-o", str(file),
                   code=1)  # fmt: skip
    assert "cannot make that founding version: group name 'duo' is not one capitalised" in out
    out = _attache(*found, "--group", "DUO=", "--catalog", str(CATALOG), "-o", str(file), code=1)
    assert "a founding group needs its members" in out
    assert not file.exists()

    _attache(*found, "--catalog", str(CATALOG), "-o", str(file))
    out = _attache(*found, "--catalog", str(CATALOG), "-o", str(file), code=1)
    assert f"{file} already exists; refusing to overwrite it" in out

    out = _sign(tmp_path / "absent.json", "USA", homes["USA"], exit_code=1)
    assert f"cannot read {tmp_path / 'absent.json'}: there is no such file" in out
    (tmp_path / "junk.json").write_text("{not json", encoding="utf-8")
    out = _sign(tmp_path / "junk.json", "USA", homes["USA"], exit_code=1)
    assert "as a JSON policy document" in out
    out = _attache("policy", "sign", "--nation", "USA", home=homes["USA"], code=1)
    assert "give either DIGEST (a proposal on the server) or --file FILE" in out
    # A later version is a proposal, signed through the server, not from a file.
    v1 = SignedPolicy.from_json(file.read_text(encoding="utf-8")).policy
    v2 = build_policy(coalition="test", nations=v1.nations.values(), groups={"DUO": ["USA"]},
                      catalog_toml=v1.catalog_toml, threshold=1, previous=v1)  # fmt: skip
    later = tmp_path / "v2.json"
    later.write_text(json.dumps(SignedPolicy(v2, ()).to_json()), encoding="utf-8")
    shown = _attache("policy", "show", "--file", str(later))
    assert f"not a founding version: it follows {v1.digest_b64u}" in shown
    out = _sign(later, "USA", homes["USA"], exit_code=1)
    assert "holds policy version 2: only a founding version is signed from a file" in out
    # The officer's machine holds no key for the nation asked.
    out = _sign(file, "USA", homes["GBR"], exit_code=1)
    assert "no authority key for USA" in out
