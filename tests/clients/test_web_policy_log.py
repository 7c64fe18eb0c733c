"""Coalition policy versions proven in the audit log, in the page (issue 13, items 3 and 5;
docs/web.md, PROTOCOL.md §18.5-§18.6), in a real Chromium (Debian's, driven by Playwright)
against a real `attache-server run` that integrates every second.

The operator publishes a founding policy; alice's page enrols, proving version 1's publication
in the log before it registers anything, and keeps the version proven and the checkpoint with
the device. The server is then made to lie as test_policy_log.py plays it against the SDK: it
serves a validly signed version 2 that it stored without publishing (so the log holds no
publication of it). At the next sign-in the page refuses to follow it, saying which version
and why, and keeps version 1. The Node tests (test/policy_log.test.ts,
test/coalition_pinning.test.ts) play every other tampering.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import expect, sync_playwright

from protocol import coalition, keys
from protocol.canonical import canonical_json
from server.coalition.models import CoalitionPolicyVersion
from server.db.engine import create_engine, create_sessionmaker
from tests.clients import test_web_e2e as web
from tests.clients.test_web_e2e import (
    PASSPHRASE,
    SLOW,
    Server,
    _enrol,
    _officer_certifies,
    _officer_sets_up,
    _publish_policy,
    _run,
    _screens,
    _unlock,
)

# The fixtures of test_web_e2e.py: Debian's Chromium, and the server `make run` starts.
chromium = web.chromium
server = web.server

READ_RECORD = """async () => {
  const db = await new Promise((resolve, reject) => {
    const request = indexedDB.open("attache");
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  const record = await new Promise((resolve, reject) => {
    const request = db.transaction("device").objectStore("device").get("this");
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  db.close();
  return { policy: record.policy, transparency: record.transparency };
}"""


def _policies(
    usa: keys.AuthorityKey, gbr: keys.AuthorityKey
) -> tuple[dict[str, Any], coalition.SignedPolicy]:
    """A founding policy of USA, GBR and FRA signed by all three (its wire form), and a
    version 2 widening nothing but adding a group, validly signed by USA and GBR."""
    fra = keys.AuthorityKey.generate()
    authorities = {"USA": usa, "GBR": gbr, "FRA": fra}
    names = {"USA": "United States", "GBR": "United Kingdom", "FRA": "France"}
    catalog = (Path(__file__).parents[2] / "protocol/catalogs/default.toml").read_text()
    v1 = coalition.build_policy(
        coalition="e2e",
        nations=[
            coalition.PolicyNation.of(code, name, [authorities[code].public_bytes()])
            for code, name in names.items()
        ],
        groups={},
        catalog_toml=catalog,
        threshold=2,
    )
    founding = coalition.SignedPolicy(
        v1, tuple(coalition.sign_policy(v1, code, key) for code, key in authorities.items())
    )
    v2 = coalition.build_policy(
        coalition="e2e",
        nations=list(v1.nations.values()),
        groups={"DUO": ["GBR", "USA"]},
        catalog_toml=catalog,
        threshold=2,
        previous=v1,
    )
    successor = coalition.SignedPolicy(
        v2, (coalition.sign_policy(v2, "USA", usa), coalition.sign_policy(v2, "GBR", gbr))
    )
    return founding.to_json(), successor


async def _serve_unlogged(server: Server, signed: coalition.SignedPolicy) -> None:
    """What a compromised server does: store a version without publishing it, so that the
    audit log never records it (as test_coalition_pinning.py's _serve)."""
    policy = signed.policy
    engine = create_engine(server.settings.effective_database_url)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            session.add(
                CoalitionPolicyVersion(
                    policy_version=policy.policy_version,
                    coalition=policy.coalition,
                    digest=policy.digest_b64u,
                    document=canonical_json(signed.to_json()).decode(),
                )
            )
    finally:
        await engine.dispose()


def test_the_page_refuses_to_follow_a_policy_version_the_log_does_not_hold(
    chromium: str, server: Server, tmp_path: Path
) -> None:
    officer, code = _run(_officer_sets_up(server, tmp_path / "sam"))
    founding, v2 = _policies(officer.authority, officer.gbr)
    _run(_publish_policy(server, founding))
    screens = _screens(tmp_path)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            page = browser.new_context().new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            sent: list[str] = []
            page.on("request", lambda request: sent.append(request.url))
            page.goto(server.origin)

            # Enrolment proves version 1's publication before it registers the device.
            fingerprint = _enrol(page, "alice", code, PASSPHRASE)
            expect(page.locator("#policy-pin")).to_contain_text("Coalition policy version 1")
            proofs = [url for url in sent if "/v1/policy/1/proof?old=0" in url]
            registered = [i for i, url in enumerate(sent) if url.endswith("/v1/devices")]
            assert proofs
            assert registered
            assert sent.index(proofs[0]) < registered[0]
            record = page.evaluate(READ_RECORD)
            assert record["policy"]["logged"]["version"] == 1
            assert record["policy"]["logged"]["digest"] == (
                coalition.SignedPolicy.from_json(founding).policy.digest_b64u
            )
            kept = record["transparency"]["checkpoint"]
            assert kept is not None
            assert kept["size"] > record["policy"]["logged"]["index"]

            device = _run(_officer_certifies(officer, fingerprint))
            assert device["status"] == "active"

            # The server now serves a validly signed version 2 that the log never recorded.
            _run(_serve_unlogged(server, v2))
            page.reload()
            expect(page.locator("#status")).to_contain_text("Unlock this device")
            sent.clear()
            _unlock(page, PASSPHRASE)
            problem = page.locator("#problem")
            expect(problem).to_contain_text(
                "The server's coalition policy is refused: coalition policy version 2 is not "
                "in the audit log (the server says: ",
                timeout=SLOW,
            )
            expect(problem).to_contain_text("refusing it. The page goes no further")
            page.screenshot(path=screens / "web-policy-unlogged.png", full_page=True)
            assert any("/v1/policy/2/proof?old=" in url for url in sent)
            assert not [url for url in sent if url.endswith("/v1/me")]
            after = page.evaluate(READ_RECORD)
            assert after["policy"]["latest"]["policy"]["policy_version"] == 1
            assert after["policy"]["logged"]["version"] == 1
            assert after["transparency"]["checkpoint"]["size"] >= kept["size"]
            assert errors == []
        finally:
            browser.close()
