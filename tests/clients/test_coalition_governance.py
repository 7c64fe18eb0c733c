"""Security officers govern the coalition policy (issue 13, item 2): `attache policy propose`
and `attache policy sign` from their machines, `attache-server policy publish --proposal` by
the operator once enough nations have signed; every step audited. On SQLite and PostgreSQL.

The world: USA, GBR and FRA found the coalition "test" (threshold 2); alice (USA), bob (GBR)
and chloe (FRA) are their security officers, each holding their nation's authority key.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from click.testing import CliRunner, Result
from sqlalchemy import select

from clients.cli import main
from protocol import keys
from protocol.coalition import PolicyNation, SignedPolicy, build_policy, sign_policy
from server.audit.models import AuditEvent
from server.auth.principal import CONSOLE
from server.cli import main as server_main
from server.coalition import service as coalition
from tests.factories import PASSPHRASE, Member, World

TOML = (Path(__file__).resolve().parents[2] / "protocol" / "catalogs" / "default.toml").read_text(
    encoding="utf-8"
)
FOUNDERS = ("USA", "GBR", "FRA")
OFFICER = ("officer", "security_officer")


async def _founded(world: World) -> dict[str, Member]:
    for nation in FOUNDERS:
        await world.nation(nation)
    v1 = build_policy(
        coalition="test",
        nations=[
            PolicyNation.of(code, code.title(), [world.authorities[code].public_bytes()])
            for code in FOUNDERS
        ],
        groups={},
        catalog_toml=TOML,
        threshold=2,
    )
    signatures = tuple(sign_policy(v1, n, world.authorities[n]) for n in FOUNDERS)
    async with world.app.state.sessionmaker() as session, session.begin():
        await coalition.do_publish_policy(session, CONSOLE, SignedPolicy(v1, signatures))
    officers = {}
    for username, nation in (("alice", "USA"), ("bob", "GBR"), ("chloe", "FRA")):
        member = await world.member(username, nation, roles=OFFICER)
        member.keystore.save_authority(nation, world.authorities[nation], PASSPHRASE)
        officers[nation] = member
    return officers


async def _cli(member: Member, *args: str, code: int = 0) -> str:
    env = {
        "ATTACHE_HOME": str(member.keystore.home),
        "ATTACHE_PASSPHRASE": PASSPHRASE,
        "ATTACHE_AUTHORITY_PASSPHRASE": PASSPHRASE,
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }
    result: Result = await asyncio.to_thread(
        CliRunner().invoke, main, list(args), env=env, catch_exceptions=False
    )
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.output


async def _publish(database_url: str, tmp_path: Path, digest: str, code: int = 0) -> str:
    """The operator, on the server machine: attache-server policy publish --proposal."""
    env = {"ATTACHE_DATA_DIR": str(tmp_path / "var"), "ATTACHE_DATABASE_URL": database_url}
    result: Result = await asyncio.to_thread(
        CliRunner().invoke,
        server_main,
        ["policy", "publish", "--proposal", digest],
        env=env,
        catch_exceptions=False,
    )
    assert result.exit_code == code, result.output
    return result.output


def _digest(output: str) -> str:
    found = re.search(r"digest ([A-Za-z0-9_-]{43})", output)
    assert found is not None, output
    return found.group(1)


async def _events(world: World, action: str) -> list[AuditEvent]:
    async with world.app.state.sessionmaker() as session:
        stmt = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        return list((await session.execute(stmt)).scalars().all())


def _authority_file(tmp_path: Path, nation: str) -> tuple[keys.AuthorityKey, Path]:
    """A new authority key, its public half written as 'attache authority init' writes it."""
    key = keys.AuthorityKey.generate()
    path = tmp_path / f"authority-{nation}.pub"
    path.write_text(keys.b64u_encode(key.public_bytes()) + "\n", encoding="utf-8")
    return key, path


async def test_a_fourth_nation_added_by_proposal(
    world: World, live: str, database_url: str, tmp_path: Path
) -> None:
    o = await _founded(world)
    deu, deu_pub = _authority_file(tmp_path, "DEU")

    out = await _cli(
        o["USA"], "policy", "propose", "--add-nation", "DEU", "--name", "Germany",
        "--authority-key", str(deu_pub), "--sign-as", "USA",
    )  # fmt: skip
    digest = _digest(out)
    assert "proposed policy version 2 of test" in out
    assert f"+ nation DEU (Germany), keys {deu.key_id}" in out
    assert "signed by USA: 1 of the 2 signatures" in out
    assert f"attache policy sign --nation NATION -- {digest}" in out

    # Too few signatures: refused at publication, and audited.
    refused = await _publish(database_url, tmp_path, digest, code=1)
    assert "signed by 1 nation(s) of version 1 (USA); its threshold is 2" in refused
    assert (await _events(world, "policy.publish"))[-1].decision == "deny"

    listed = await _cli(o["FRA"], "policy", "proposals")
    assert f"{digest}  version 2  signed by USA (1 of 2, not ready)" in listed
    signed = await _cli(o["GBR"], "policy", "sign", "--nation", "GBR", "--yes", "--", digest)
    assert "signed so far by USA; changes:" in signed
    assert "+ nation DEU (Germany)" in signed
    assert "GBR signed policy version 2" in signed
    assert f"attache-server policy publish --proposal {digest}" in signed
    again = await _cli(o["GBR"], "policy", "sign", "--nation", "GBR", "--yes", "--", digest, code=1)
    assert "GBR has signed policy version 2 already" in again

    out = await _publish(database_url, tmp_path, digest)
    assert f"policy version 2 of test published, digest {digest}, signed by GBR, USA" in out
    shown = await _cli(o["FRA"], "policy", "show")
    assert "pinned here: version 1; the server's version 2 follows it" in shown
    assert f"DEU  Germany  (authority keys {deu.key_id})" in shown
    assert "threshold: 2 of 4 nations" in shown

    proposed, = await _events(world, "policy.propose")  # fmt: skip
    assert proposed.details["signed_by"] == ["USA"]
    sign_events = await _events(world, "policy.sign")
    assert [e.details["signed_by"] for e in sign_events] == [["GBR"]]
    assert (await _events(world, "policy.publish"))[-1].decision == "allow"


async def test_plain_refusals(world: World, live: str, tmp_path: Path) -> None:
    o = await _founded(world)
    dan = await world.member("dan", "USA")  # an officer, not a security officer
    _, deu_pub = _authority_file(tmp_path, "DEU")
    add_deu = ["policy", "propose", "--add-nation", "DEU", "--name", "Germany"]

    out = await _cli(dan, *add_deu, "--authority-key", str(deu_pub), code=1)
    assert "only a security officer or an operator may propose a policy" in out
    out = await _cli(o["USA"], *add_deu, code=1)
    assert "--add-nation needs --authority-key FILE" in out
    out = await _cli(o["USA"], *add_deu, "--authority-key", "nonsense", code=1)
    assert "is neither an authority public key file" in out
    usa_pub = keys.b64u_encode(world.authorities["USA"].public_bytes())
    out = await _cli(o["USA"], "policy", "propose", "--add-nation", "GBR", "--name", "X",
                     "--authority-key", usa_pub, code=1)  # fmt: skip
    assert "GBR is already a nation of policy version 1" in out
    out = await _cli(o["USA"], "policy", "propose", code=1)
    assert "give either FILE (the whole next version) or edits" in out
    out = await _cli(o["USA"], "policy", "propose", "--threshold", "2", code=1)
    assert "nothing to propose: the edits leave the policy as it is" in out
    out = await _cli(o["USA"], "policy", "propose", "--threshold", "4", code=1)
    assert "threshold 4 must be from 1 to the number of nations (3)" in out
    out = await _cli(o["USA"], "policy", "propose", "--group", "DUO=USA,GBR", "--sign-as", "GBR",
                     code=1)  # fmt: skip
    assert "no authority key for GBR" in out

    # A group, proposed by the operator's kind of edit; FRA's key cannot sign for GBR.
    out = await _cli(o["USA"], "policy", "propose", "--group", "DUO=USA,GBR")
    digest = _digest(out)
    assert "+ group DUO: GBR, USA" in out
    assert "signed by no nation yet: 0 of the 2" in out
    o["FRA"].keystore.save_authority("GBR", world.authorities["FRA"], PASSPHRASE)
    out = await _cli(o["FRA"], "policy", "sign", "--nation", "GBR", "--yes", "--", digest, code=1)
    assert "which version 1 lists for FRA" in out
    missing = keys.b64u_encode(b"\xf8" + b"\x02" * 31)  # begins with "-", as 1 in 64 do
    assert missing.startswith("-")
    out = await _cli(o["FRA"], "policy", "sign", "--nation", "FRA", "--yes", "--", missing, code=1)
    assert f"no proposal {missing}" in out


async def test_a_key_rotation_signed_with_the_old_key(
    world: World, live: str, database_url: str, tmp_path: Path
) -> None:
    o = await _founded(world)
    old = world.authorities["GBR"]
    new, new_pub = _authority_file(tmp_path, "GBR")

    out = await _cli(
        o["GBR"], "policy", "propose", "--add-key", "GBR", "--authority-key", str(new_pub),
        "--remove-key", old.key_id, "--sign-as", "GBR",
    )  # fmt: skip
    digest = _digest(out)
    assert f"+ nation GBR authority key {new.key_id}" in out
    assert f"- nation GBR authority key {old.key_id}" in out
    assert "signed by GBR: 1 of the 2" in out  # with the old key, which version 1 lists
    await _cli(o["FRA"], "policy", "sign", "--nation", "FRA", "--yes", "--", digest)
    await _publish(database_url, tmp_path, digest)
    shown = await _cli(o["USA"], "policy", "show")
    assert f"GBR  Gbr  (authority keys {new.key_id})" in shown

    # From version 3 on, only the new key signs for GBR: bob's home still holds the old one.
    out = await _cli(o["USA"], "policy", "propose", "--group", "DUO=USA,GBR", "--sign-as", "USA")
    digest = _digest(out)
    out = await _cli(o["GBR"], "policy", "sign", "--nation", "GBR", "--yes", "--", digest, code=1)
    assert f"made with key {old.key_id}, which version 2 does not list for GBR" in out
    # Once version 2 is published, GBR's security officer puts the new key in place.
    bob = o["GBR"]
    for suffix in ("key", "pub"):
        (bob.keystore.home / f"authority-GBR.{suffix}").unlink()
    bob.keystore.save_authority("GBR", new, PASSPHRASE)
    out = await _cli(bob, "policy", "sign", "--nation", "GBR", "--yes", "--", digest)
    assert "signed by GBR, USA: 2 of the 2" in out
    await _publish(database_url, tmp_path, digest)
