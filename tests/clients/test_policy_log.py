"""Coalition policy versions bound through the audit log (issue 13, item 3; PROTOCOL.md §18.6):
clients accept a version only once its ``policy.publish`` leaf is proven in the log they hold
(auditors' checks of the chain are test_policy_audit.py's).

The server is played as a compromised one, on SQLite and PostgreSQL: a version served that
the log never published, a version served with the proof of another digest's publication, and
a publication leaf made up for the answer. Each is refused by the SDK and the CLI, naming the
version. The server integrates every second, as by default, so a version
published moments ago is waited for and accepted.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from sqlalchemy import select

from clients.sdk import enroll
from clients.sdk.coalition import LOGGED_FILE, PolicyRefused, logged_version
from server.audit import publications
from server.audit.models import AuditEvent
from server.errors import NotFound
from tests.clients.test_cli_audit import _invoke
from tests.clients.test_coalition_pinning import (
    _founded,
    _messenger,
    _publish,
    _serve,
    _signed,
    _successor,
)
from tests.clients.test_policy_audit import _publication_leaf
from tests.factories import PASSPHRASE, Member, World


def _pinned_version(member: Member) -> int:
    pinned = member.keystore.policy_pin()
    assert pinned is not None
    return pinned[1].policy.policy_version


# --- clients ---------------------------------------------------------------------------------


async def test_enrolment_and_following_prove_each_version_in_the_log(
    world: World, live: str
) -> None:
    c = await _founded(world)
    # Enrolment proved version 1 and kept the checkpoint it was proven at.
    assert logged_version(c.alice.keystore) == (1, c.v1.digest_b64u)
    record = json.loads((c.alice.keystore.home / LOGGED_FILE).read_text())
    assert record["index"] == await _publication_leaf(world, c.v1)
    held = c.alice.keystore.held_checkpoint()
    assert held is not None
    assert held[0] >= record["size"] > record["index"]
    # Versions 2 and 3, published moments ago (the integrator logs them within a second),
    # are waited for, each proven, and followed.
    v2 = _successor(c.v1, groups={"DUO": ["FRA", "GBR", "USA"]})
    v3 = _successor(v2, threshold=3)
    await _publish(world, _signed(world, v2, "USA", "GBR"))
    await _publish(world, _signed(world, v3, "GBR", "FRA"))
    am = await _messenger(c.alice)
    assert am.policy is not None
    assert am.policy.policy.digest == v3.digest
    assert logged_version(c.alice.keystore) == (3, v3.digest_b64u)
    kept = c.alice.keystore.held_checkpoint()
    assert kept is not None
    assert kept[0] > held[0]
    # attache policy show says where the log publishes the version held.
    v3_index = await _publication_leaf(world, v3)
    shown = await _invoke(c.alice, "policy", "show")
    assert shown.exit_code == 0, shown.output
    assert f"in the audit log: published at leaf {v3_index}, proven at the checkpoint" in (
        shown.output
    )


async def test_a_version_the_log_never_published_is_refused(world: World) -> None:
    """The server shows a validly signed version 2 (one that, say, leaves out a rotation the
    nations signed) without publishing it in the log: refused by name, nothing pinned, and a
    device being enrolled registers nothing."""
    c = await _founded(world)
    v2 = _successor(c.v1, groups={"DUO": ["FRA", "GBR", "USA"]})
    await _serve(world, _signed(world, v2, "USA", "GBR"))
    with pytest.raises(PolicyRefused) as refused:
        await _messenger(c.alice)
    said = str(refused.value)
    assert said.startswith("coalition policy version 2 is not in the audit log")
    assert "the audit log has no publication of coalition policy version 2" in said
    assert _pinned_version(c.alice) == 1
    assert logged_version(c.alice.keystore) == (1, c.v1.digest_b64u)

    user = await world.user("dan", "USA")
    store = world.keystore("dan")
    with pytest.raises(PolicyRefused, match="coalition policy version 2 is not in the audit log"):
        await enroll(
            world.origin,
            username="dan",
            code=await world.code(user),
            device_name="dan-laptop",
            passphrase=PASSPHRASE,
            keystore=store,
            transport=world.transport,
        )
    assert not store.has_device()
    async with world.app.state.sessionmaker() as session:
        registered = await session.execute(
            select(AuditEvent).where(AuditEvent.action == "device.register")
        )
        assert len(registered.scalars().all()) == 3  # alice's, bob's and chloe's only


async def test_a_version_served_with_another_digests_publication_is_refused(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log publishes one version 2; the server shows this client another (validly
    signed: a fork of the chain) with the proof of the logged one's leaf."""
    c = await _founded(world)
    logged = _successor(c.v1, groups={"DUO": ["FRA", "GBR", "USA"]})
    shown = _successor(c.v1, threshold=3)
    await _publish(world, _signed(world, logged, "USA", "GBR"))
    index = await _publication_leaf(world, logged)
    await _serve(world, _signed(world, shown, "USA", "GBR"))

    async def any_digest(
        session: Any, policy_version: int, digest: str, old: int, *witnesses: Any
    ) -> Any:
        return await original(session, policy_version, logged.digest_b64u, old, *witnesses)

    original = publications.publication_proof
    monkeypatch.setattr(publications, "publication_proof", any_digest)
    with pytest.raises(PolicyRefused) as refused:
        await _messenger(c.alice)
    said = str(refused.value)
    assert said.startswith("coalition policy version 2 is refused: the audit log's publication")
    assert f"at leaf {index} is not coalition policy version 2 as served: its digest differ" in said
    assert f"the log has digest {logged.digest_b64u}, the server serves {shown.digest_b64u}" in said
    assert _pinned_version(c.alice) == 1


async def test_a_proof_that_does_not_verify_is_refused(
    world: World, monkeypatch: pytest.MonkeyPatch, live: str
) -> None:
    """The server makes up the publication leaf of the version it shows, and serves it with
    the proof of a real leaf: the inclusion proof does not verify. Refused by the SDK and by
    attache policy show, naming the version."""
    c = await _founded(world)
    v2 = _successor(c.v1, groups={"DUO": ["FRA", "GBR", "USA"]})
    await _serve(world, _signed(world, v2, "USA", "GBR"))
    v1_index = await _publication_leaf(world, c.v1)
    original = publications.publication_proof

    async def made_up(
        session: Any, policy_version: int, digest: str, old: int, *witnesses: Any
    ) -> Any:
        answer = await original(session, 1, c.v1.digest_b64u, old, *witnesses)
        leaf = json.loads(answer["publication"]["leaf"])
        leaf["object"]["id"] = "2"
        leaf["details"] |= {"digest": v2.digest_b64u, "previous": c.v1.digest_b64u}
        answer["publication"]["leaf"] = json.dumps(leaf, separators=(",", ":"), sort_keys=True)
        return answer

    monkeypatch.setattr(publications, "publication_proof", made_up)
    with pytest.raises(PolicyRefused) as refused:
        await _messenger(c.alice)
    said = str(refused.value)
    assert said.startswith(
        "coalition policy version 2 is refused: coalition policy version 2 is not in the audit "
        f"log: the inclusion proof of its publication (leaf {v1_index}) does not verify at the "
        "checkpoint of size "
    )
    result = await _invoke(c.bob, "policy", "show")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "coalition policy version 2 is not in the audit log: the inclusion proof" in (
        result.output
    )
    assert _pinned_version(c.alice) == 1
    assert _pinned_version(c.bob) == 1


async def test_a_version_pinned_before_the_log_was_checked_stays_held_and_is_said(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, live: str
) -> None:
    """An older deployment's home pinned version 1 before clients checked the log (no
    policy-log.json). A server that cannot prove it gets a warning, not a refusal: nothing
    accepted before is refused for this. A home that saw it proven is not warned, and every
    later version must be proven."""
    c = await _founded(world)
    (c.alice.keystore.home / LOGGED_FILE).unlink()

    async def none(session: Any, policy_version: int, *_: Any) -> Any:
        raise NotFound(
            f"the audit log has no publication of coalition policy version {policy_version}"
        )

    monkeypatch.setattr(publications, "publication_proof", none)
    with caplog.at_level(logging.WARNING, logger="attache.sdk"):
        am = await _messenger(c.alice)
    assert am.policy is not None
    assert am.policy.policy.digest == c.v1.digest
    assert (
        "coalition policy version 1 held here was pinned before this client checked policy "
        "versions in the audit log, and the log does not prove it"
    ) in caplog.text
    assert "it stays held, as it was accepted before" in caplog.text
    assert logged_version(c.alice.keystore) is None
    shown = await _invoke(c.alice, "policy", "show")
    assert shown.exit_code == 0, shown.output
    assert "in the audit log: not proven here (pinned before clients checked the log" in (
        shown.output
    )
    sent = await am.send("liaison", "still works", label="NATO SECRET//REL TO USA, GBR")
    assert c.bob.device_id in sent.released_to
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="attache.sdk"):
        await _messenger(c.bob)  # proven at its enrolment: nothing to say
    assert "pinned before this client checked" not in caplog.text
    # Once the log proves it, it is recorded and no longer said.
    monkeypatch.undo()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="attache.sdk"):
        await _messenger(c.alice)
    assert "pinned before this client checked" not in caplog.text
    assert logged_version(c.alice.keystore) == (1, c.v1.digest_b64u)
