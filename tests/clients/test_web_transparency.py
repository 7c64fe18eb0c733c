"""Key transparency in the page (docs/web.md, PROTOCOL.md §19.4), in a real Chromium (Debian's,
driven by Playwright) against a real `attache-server run` that integrates every second.

Alice's page pins the server's audit key at enrolment and shows it, and keeps the largest
checkpoint it verified in IndexedDB. The server is then made to lie, as
test_key_transparency.py plays it against the SDK and the CLI: bob's device keys are swapped
for keys the log never registered, under a certificate GBR's own authority key signed for
them; dan's device, revoked (and logged so), is listed as active again; and, after a reload,
the checkpoint the page kept is one the log forked from. The page names each device it does
not vouch for and why, seals no envelope for either (every audience it POSTs is recorded), and
refuses the forked log outright, sealing nothing at all. A record from before key
transparency (no audit key) pins the server's at the next sign-in, saying so as a warning.

Screenshots go to ``ATTACHE_SCREENS`` when set, else to the test's temporary directory (as in
test_web_e2e.py, whose server, officers and helpers these tests share).
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, Request, expect, sync_playwright
from sqlalchemy import select, update

from clients.sdk import Keystore, certify_device, connect, enroll
from protocol import keys
from server.audit.models import AuditEvent
from server.db.engine import create_engine, create_sessionmaker
from server.devices.models import Device
from tests.clients import test_web_e2e as web
from tests.clients.test_web_e2e import (
    OFFICER_PASSPHRASE,
    PASSPHRASE,
    REL_USA_GBR,
    SLOW,
    WATCH_VIOLATIONS,
    Officer,
    Server,
    _enrol,
    _no_violations,
    _officer_certifies,
    _officer_sets_up,
    _run,
    _screens,
    _unlock,
)

# The fixtures of test_web_e2e.py: Debian's Chromium, and the server `make run` starts.
chromium = web.chromium
server = web.server

DAN_PASSPHRASE = "dan's device passphrase"

READ_PIN = """async () => {
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
  return record.transparency;
}"""

# The page's kept checkpoint given another root at its size: a log that forked from it.
FORK_PIN = """async (root) => {
  const db = await new Promise((resolve, reject) => {
    const request = indexedDB.open("attache");
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  await new Promise((resolve, reject) => {
    const store = db.transaction("device", "readwrite").objectStore("device");
    const request = store.get("this");
    request.onsuccess = () => {
      const record = request.result;
      record.transparency.checkpoint.root = root;
      store.put(record, "this").onsuccess = resolve;
    };
    request.onerror = () => reject(request.error);
  });
  db.close();
}"""


# A record kept by a page from before key transparency: no audit key pinned, no checkpoint.
FORGET_PIN = """async () => {
  const db = await new Promise((resolve, reject) => {
    const request = indexedDB.open("attache");
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  await new Promise((resolve, reject) => {
    const store = db.transaction("device", "readwrite").objectStore("device");
    const request = store.get("this");
    request.onsuccess = () => {
      const record = request.result;
      delete record.transparency;
      store.put(record, "this").onsuccess = resolve;
    };
    request.onerror = () => reject(request.error);
  });
  db.close();
}"""


async def _dan_joins(server: Server, officer: Officer, home: Path) -> str:
    """Sam adds dan (USA) to liaison with a device of the SDK's, certified; its id."""
    async with await connect(officer.keystore, passphrase=OFFICER_PASSPHRASE) as client:
        await client.create_user(
            username="dan", nationality="USA", clearance="NATO SECRET", roles=["officer"]
        )
        issued = await client.issue_enrolment_code("dan")
        dan = Keystore(home, kdf=keys.KdfParams.for_tests())
        await enroll(
            server.origin,
            username="dan",
            code=str(issued["code"]),
            device_name="dan-laptop",
            passphrase=DAN_PASSPHRASE,
            keystore=dan,
        )
        pending = [d for d in await client.devices(status="pending") if d["username"] == "dan"]
        await certify_device(client, "USA", officer.authority, pending[0])
        await client.add_member("liaison", "dan")
        return str(pending[0]["id"])


async def _dan_revokes_his_device(home: Path, device_id: str) -> None:
    dan = Keystore(home, kdf=keys.KdfParams.for_tests())
    async with await connect(dan, passphrase=DAN_PASSPHRASE) as client:
        await client.revoke_device(device_id, "lost")


async def _wait_logged(server: Server) -> None:
    """Until the integrator has logged every event written so far (a second, by default)."""
    engine = create_engine(server.settings.effective_database_url)
    try:
        for _ in range(200):
            async with create_sessionmaker(engine)() as session:
                pending = (
                    await session.execute(
                        select(AuditEvent.id).where(AuditEvent.leaf_index.is_(None))
                    )
                ).first()
            if pending is None:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the integrator did not log the events")
    finally:
        await engine.dispose()


async def _server_lies(server: Server, officer: Officer, bob: str, dan: str) -> None:
    """Once dan's revocation is logged: dan's device listed as active again, and bob's device
    given keys the log never registered, under a certificate GBR's authority key signed for
    them (a coerced or stolen nation key)."""
    await _wait_logged(server)
    planted = keys.DeviceKeys.generate().public()
    engine = create_engine(server.settings.effective_database_url)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            row = await session.get(Device, bob)
            assert row is not None
            assert row.certificate is not None
            vouched = keys.DeviceCertificate.from_json(row.certificate).body
            now = datetime.now(UTC)
            certificate = keys.issue_certificate(
                officer.gbr,
                device_id=bob,
                user_id=str(row.user_id),
                username="bob",
                nationality="GBR",
                clearance=vouched["clearance"],
                device_keys=planted,
                issued_at=now - timedelta(minutes=1),
                expires_at=now + timedelta(days=1),
            )
            await session.execute(
                update(Device)
                .where(Device.id == bob)
                .values(
                    signing_key=planted.signing_key,
                    encryption_key=planted.encryption_key,
                    certificate=certificate.to_json(),
                )
            )
            await session.execute(
                update(Device).where(Device.id == dan).values(status="active", revoked_at=None)
            )
    finally:
        await engine.dispose()


class _Posts:
    """Every audience and message the page POSTs (their JSON bodies)."""

    def __init__(self, page: Page) -> None:
        self.audiences: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        page.on("request", self._request)

    def _request(self, request: Request) -> None:
        if request.method != "POST":
            return
        if request.url.endswith("/audiences"):
            self.audiences.append(json.loads(request.post_data or "{}"))
        elif request.url.endswith("/messages"):
            self.messages.append(json.loads(request.post_data or "{}"))

    def sealed_to(self) -> set[str]:
        return {d for a in self.audiences for d in a["header"]["devices"]}


def _open_liaison(page: Page) -> None:
    page.locator("#channels .channel-open", has_text="liaison").click(timeout=SLOW)
    expect(page.locator("#channel-title")).to_have_text("liaison")


def test_the_page_seals_only_to_devices_the_key_directory_vouches_for(
    chromium: str, server: Server, tmp_path: Path
) -> None:
    officer, code = _run(_officer_sets_up(server, tmp_path / "sam"))
    dan = _run(_dan_joins(server, officer, tmp_path / "dan"))
    bob = officer.bob.profile().device_id
    vkey = httpx.get(f"{server.origin}/v1/audit/key").json()["vkey"]
    screens = _screens(tmp_path)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            context = browser.new_context(viewport={"width": 900, "height": 900})
            context.add_init_script(WATCH_VIOLATIONS)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            posts = _Posts(page)
            page.goto(server.origin)

            # Enrolment pins the server's audit key, and the page shows it (as attache enroll).
            fingerprint = _enrol(page, "alice", code, PASSPHRASE)
            expect(page.locator("#status")).to_contain_text(f"Pinned the server's audit key {vkey}")
            expect(page.locator("#audit-key")).to_have_text(vkey)
            assert page.evaluate(READ_PIN) == {"vkey": vkey, "checkpoint": None}
            _run(_officer_certifies(officer, fingerprint))

            # An honest server: the page, just certified, waits for its own device to be
            # logged, and seals to all four devices; the checkpoint it verified is kept.
            _unlock(page, PASSPHRASE)
            expect(page.locator("#whoami")).to_contain_text("Signed in as alice", timeout=SLOW)
            expect(page.locator("#transparency-note")).to_be_hidden()
            _open_liaison(page)
            everyone = "alice (USA), bob (GBR), dan (USA), sam (USA) (4 devices)."
            expect(page.locator("#compose-reach")).to_have_text(
                f"Will be released to: {everyone}", timeout=SLOW
            )
            page.get_by_label("Message", exact=True).fill("before the server lies")
            page.get_by_role("button", name="Send").click()
            expect(page.locator("#compose-sent")).to_have_text(
                f"Sent as {REL_USA_GBR}, released to: {everyone}", timeout=SLOW
            )
            assert {bob, dan} <= posts.sealed_to()
            kept = page.evaluate(READ_PIN)
            assert kept["vkey"] == vkey
            assert kept["checkpoint"]["size"] > 0

            # The server lies: bob's keys swapped for its own, dan's revoked device revived.
            _run(_dan_revokes_his_device(tmp_path / "dan", dan))
            _run(_server_lies(server, officer, bob, dan))
            posts.audiences.clear()
            page.reload()
            _unlock(page, PASSPHRASE)
            expect(page.locator("#whoami")).to_contain_text("Signed in as alice", timeout=SLOW)
            _open_liaison(page)
            reach = page.locator("#compose-reach")
            expect(reach).to_contain_text(
                "Will be released to: alice (USA), sam (USA) (2 devices). Not sealed to 2 "
                "device(s) this page does not vouch for: ",
                timeout=SLOW,
            )
            expect(reach).to_contain_text(
                "bob (the key directory does not vouch for it: the key directory has other "
                f"keys for device {bob} than its certificate)"
            )
            expect(reach).to_contain_text(
                f"dan (the key directory does not vouch for it: device {dan} is revoked in "
                "the key directory at checkpoint "
            )
            # The server insists on both (it holds them active and eligible): refused, each
            # named with why, and no envelope for either in what the page sealed.
            page.get_by_label("Message", exact=True).fill("for the eyes of USA and GBR")
            page.get_by_role("button", name="Send").click()
            problem = page.locator("#problem")
            expect(problem).to_contain_text(
                "Not sent: the server requires devices this page does not vouch for (",
                timeout=SLOW,
            )
            expect(problem).to_contain_text(f"device {bob} of bob: the key directory does not")
            expect(problem).to_contain_text(f"device {dan} of dan: the key directory does not")
            page.screenshot(path=screens / "web-transparency-refused.png", full_page=True)
            assert posts.audiences, "the page sealed nothing at all to the honest devices"
            assert not ({bob, dan} & posts.sealed_to())
            kept_before_fork = page.evaluate(READ_PIN)["checkpoint"]
            assert kept_before_fork["size"] >= kept["checkpoint"]["size"]

            # A log forked from the checkpoint the page kept: nothing is sealed to anyone.
            page.reload()
            expect(page.locator("#status")).to_contain_text("Unlock this device")
            forged = keys.b64u_encode(os.urandom(32))
            page.evaluate(FORK_PIN, forged)
            posts.audiences.clear()
            posts.messages.clear()
            _unlock(page, PASSPHRASE)
            expect(page.locator("#whoami")).to_contain_text("Signed in as alice", timeout=SLOW)
            _open_liaison(page)
            expect(reach).to_contain_text(
                "Not sent: the server's key directory is refused: ", timeout=SLOW
            )
            expect(reach).to_contain_text("forked")
            page.get_by_label("Message", exact=True).fill("never sealed")
            page.get_by_role("button", name="Send").click()
            expect(problem).to_contain_text(
                "Not sent: the server's key directory is refused: ", timeout=SLOW
            )
            expect(problem).to_contain_text("forked")
            page.screenshot(path=screens / "web-transparency-forked.png", full_page=True)
            assert posts.audiences == []
            assert posts.messages == []
            # The page keeps the checkpoint it had, never one the forked log shows.
            assert page.evaluate(READ_PIN)["checkpoint"] == {
                "size": kept_before_fork["size"],
                "root": forged,
            }

            # A page enrolled before key transparency pins the audit key at its next sign-in,
            # and says so as a warning; it is held to that key from then on.
            page.reload()
            expect(page.locator("#status")).to_contain_text("Unlock this device")
            page.evaluate(FORGET_PIN)
            page.reload()
            expect(page.locator("#audit-key")).to_contain_text("none yet")
            _unlock(page, PASSPHRASE)
            note = page.locator("#transparency-note")
            expect(note).to_be_visible(timeout=SLOW)
            expect(note).to_contain_text(f"Pinned the server's audit key {vkey} on first use")
            assert page.evaluate(READ_PIN) == {"vkey": vkey, "checkpoint": None}

            _no_violations(page)
            assert errors == []
        finally:
            browser.close()
