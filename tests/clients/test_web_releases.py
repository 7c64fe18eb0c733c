"""A disclosure officer's page in a real Chromium (Debian's, driven by Playwright) against a real
`attache-server run` (issue 12, item 6): bob (GBR, the SDK) asks for two of sam's (USA)
messages to be released to FRA too; dora, USA's disclosure officer, sees both in her page with
the item's labels, the message itself and bob's (hostile) reason as text; she approves one by
keyboard alone, the page seals the message's key to chloe's two FRA devices, and both chloe's
SDK and chloe's own page read it under the wider label, released by dora (the page opening the
grant as the SDK does); she refuses the other with a reason, which
bob's SDK then reads, and chloe never gets it. A label the server changed on its way is shown
as text and said not to check.

Screenshots go to ``ATTACHE_SCREENS`` when set, else to the test's temporary directory (as in
test_web_e2e.py, whose server, officers and helpers this test shares).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playwright.sync_api import Route, expect, sync_playwright

from clients.sdk import (
    Keystore,
    Messenger,
    ReceivedMessage,
    Releases,
    certify_device,
    connect,
    enroll,
)
from protocol import keys
from server.auth.principal import CONSOLE
from server.db.engine import create_engine, create_sessionmaker
from server.devices.service import do_issue_enrolment_code
from server.directory import service as directory
from tests.clients import test_web_e2e as web
from tests.clients.test_web_e2e import (
    HOSTILE,
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

REL_USA_GBR_FRA = "NATO SECRET//REL TO USA, GBR, FRA"
CHLOE_PASSPHRASE = "chloe's device passphrase"
CONVOY = "Convoy leaves the port at 06:00"
HOLD = "Hold the northern crossing"


@dataclass
class Story:
    officer: Officer
    chloe: Keystore
    convoy: str
    hold: str


@dataclass
class France:
    authority: keys.AuthorityKey
    chloe: Keystore


async def _france(server: Server, home: Path) -> France:
    """What the operator does for FRA (as `attache-server nation add` and `user add`): the
    nation with its authority key, and chloe, its security officer, who enrols her SDK
    device."""
    fra = keys.AuthorityKey.generate()
    engine = create_engine(server.settings.effective_database_url)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            catalog = await directory.load_catalog(session, server.settings.load_catalog())
            await directory.do_create_nation(
                session,
                CONSOLE,
                catalog,
                code="FRA",
                name="France",
                authority_key=fra.public_bytes(),
            )
            catalog = await directory.load_catalog(session, server.settings.load_catalog())
            chloe = await directory.do_create_user(
                session,
                CONSOLE,
                catalog,
                username="chloe",
                nationality="FRA",
                clearance="NATO SECRET",
                roles=["officer", "security_officer"],
            )
            code = (await do_issue_enrolment_code(session, CONSOLE, server.settings, chloe)).code
    finally:
        await engine.dispose()
    store = Keystore(home, kdf=keys.KdfParams.for_tests())
    await enroll(
        server.origin,
        username="chloe",
        code=code,
        device_name="chloe-laptop",
        passphrase=CHLOE_PASSPHRASE,
        keystore=store,
        authority=("FRA", fra),
    )
    return France(fra, store)


async def _chloe_code(france: France) -> str:
    """Chloe, FRA's security officer, issues herself a code for a browser device too."""
    async with await connect(france.chloe, passphrase=CHLOE_PASSPHRASE) as client:
        return str((await client.issue_enrolment_code("chloe"))["code"])


async def _chloe_certifies(france: France, fingerprint: str) -> None:
    async with await connect(france.chloe, passphrase=CHLOE_PASSPHRASE) as client:
        (pending,) = await client.devices(status="pending")
        assert pending["fingerprint"] == fingerprint
        await certify_device(client, "FRA", france.authority, pending)


async def _sam_adds_dora(officer: Officer) -> str:
    """Sam adds dora, USA's disclosure officer, and chloe to liaison; dora's one-time code."""
    async with await connect(officer.keystore, passphrase=OFFICER_PASSPHRASE) as client:
        await client.create_user(
            username="dora",
            nationality="USA",
            clearance="NATO SECRET",
            roles=["officer", "disclosure_officer"],
        )
        await client.add_member("liaison", "dora")
        await client.add_member("liaison", "chloe")
        issued = await client.issue_enrolment_code("dora")
    return str(issued["code"])


async def _sam_sends_and_bob_asks(officer: Officer) -> tuple[str, str]:
    """Sam sends two messages for USA and GBR; bob asks for each to be released to FRA."""
    async with await Messenger.open(officer.keystore, passphrase=OFFICER_PASSPHRASE) as sam:
        convoy = await sam.send("liaison", CONVOY, label=REL_USA_GBR)
        hold = await sam.send("liaison", HOLD, label=REL_USA_GBR)
    async with await Messenger.open(officer.bob, passphrase=web.BOB_PASSPHRASE) as bob:
        asked = await Releases(bob).request("message", convoy.message_id, ["FRA"], reason=HOSTILE)
        assert asked["requested_label"] == REL_USA_GBR_FRA
        await Releases(bob).request("message", hold.message_id, ["FRA"], reason="FRA asks too")
    return convoy.message_id, hold.message_id


async def _chloe_reads(chloe: Keystore) -> list[ReceivedMessage]:
    async with await Messenger.open(chloe, passphrase=CHLOE_PASSPHRASE) as messenger:
        return await messenger.read("liaison")


async def _bobs_requests(officer: Officer) -> list[dict[str, Any]]:
    async with await Messenger.open(officer.bob, passphrase=web.BOB_PASSPHRASE) as bob:
        return await Releases(bob).list()


def _busy(route: Route) -> None:
    """The server failing to take a grant, as a busy or restarting one might."""
    route.fulfill(
        status=503,
        content_type="application/problem+json",
        body=json.dumps(
            {"title": "Unavailable", "detail": "The server is busy; nothing was changed."}
        ),
    )


class _HostileLabel:
    """The requests as the server shows them, each pending one's label banner replaced on its
    way by markup, as a hostile server might send it."""

    def __call__(self, route: Route) -> None:
        response = route.fetch()
        requests = response.json()
        for request in requests:
            if request["status"] == "pending":
                request["label"] = HOSTILE
        route.fulfill(response=response, body=json.dumps(requests))


def test_a_disclosure_officer_approves_and_refuses_releases_in_the_page(
    chromium: str, server: Server, tmp_path: Path
) -> None:
    france = _run(_france(server, tmp_path / "chloe"))
    chloe = france.chloe
    officer, _ = _run(_officer_sets_up(server, tmp_path / "sam"))
    code = _run(_sam_adds_dora(officer))
    screens = _screens(tmp_path)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            context = browser.new_context(viewport={"width": 900, "height": 1000})
            context.add_init_script(WATCH_VIOLATIONS)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(server.origin)
            fingerprint = _enrol(page, "dora", code, PASSPHRASE)
            _run(_officer_certifies(officer, fingerprint, "dora"))
            # Chloe's browser, in a context of its own, is her second FRA device.
            chloe_context = browser.new_context(viewport={"width": 900, "height": 760})
            chloe_context.add_init_script(WATCH_VIOLATIONS)
            chloe_page = chloe_context.new_page()
            chloe_page.on("pageerror", lambda error: errors.append(str(error)))
            chloe_page.goto(server.origin)
            chloe_fingerprint = _enrol(chloe_page, "chloe", _run(_chloe_code(france)), PASSPHRASE)
            _run(_chloe_certifies(france, chloe_fingerprint))
            # Dora's device is certified before sam sends: it holds both messages' keys.
            convoy, hold = _run(_sam_sends_and_bob_asks(officer))
            story = Story(officer, chloe, convoy, hold)
            _unlock(page, PASSPHRASE)
            expect(page.locator("#whoami")).to_contain_text("Signed in as dora", timeout=SLOW)
            assert _run(_chloe_reads(story.chloe)) == []

            # Both requests wait for her decision, each with the item's labels, the message
            # itself (opened and verified here), who asked and why, all as text.
            page.get_by_role("button", name="Release requests").click()
            expect(page.locator("#releases-title")).to_be_focused()
            pending = page.locator("#releases-pending .release")
            expect(pending).to_have_count(2, timeout=SLOW)
            first = pending.filter(has_text=CONVOY)
            expect(first.locator("h4")).to_have_text("Message in liaison, asked by bob (GBR)")
            banners = first.locator(".release-labels .banner")
            expect(banners).to_have_text([REL_USA_GBR, REL_USA_GBR_FRA])
            assert banners.first.evaluate("e => getComputedStyle(e).backgroundColor") == (
                "rgb(200, 16, 46)"
            )
            expect(first.locator(".release-labels")).to_contain_text("It would also reach: FRA.")
            expect(first.locator(".release-reason")).to_have_text(f"Reason given: {HOSTILE}")
            expect(first.locator(".item-body")).to_have_text(CONVOY)
            expect(first.locator(".item-meta").last).to_contain_text("sam (USA)")
            expect(first.locator(".release-problems")).to_have_count(0)
            assert page.locator("#app img").count() == 0
            assert page.evaluate("() => window.__pwned") is None
            page.screenshot(path=screens / "web-releases.png", full_page=True)
            # In a narrow window nothing runs off the side: long banners, ids and reasons wrap.
            page.set_viewport_size({"width": 360, "height": 1000})
            assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
            page.set_viewport_size({"width": 900, "height": 1000})

            # She approves by keyboard alone: the reason, then the button, then Enter. The
            # page seals the message's key to the devices the wider label newly admits; the
            # server fails to take the grant the first time, and the page says so.
            page.route("**/v1/releases/*/grant", _busy)
            reason = first.get_by_label("Your reason (the requester sees it)")
            reason.focus()
            page.keyboard.type("Agreed: FRA leads the cell")
            page.keyboard.press("Tab")
            expect(first.get_by_role("button", name="Approve and release")).to_be_focused()
            page.keyboard.press("Enter")
            outcome = page.locator("#releases-outcome")
            expect(outcome).to_have_text(
                "Approved, but not yet released: The server is busy; nothing was changed. "
                "Carry it out again below.",
                timeout=SLOW,
            )
            expect(outcome).to_be_focused()
            page.unroute("**/v1/releases/*/grant")
            approved = page.locator("#releases-approved .release")
            expect(approved).to_have_count(1)
            expect(approved).to_contain_text("Approved 20")
            expect(approved).to_contain_text("with the reason: Agreed: FRA leads the cell")
            approved.get_by_role("button", name="Carry out the release").click()
            expect(outcome).to_have_text(
                f"Released: Message in liaison is now {REL_USA_GBR_FRA}, its key sealed here to "
                "chloe (FRA) (2 devices).",
                timeout=SLOW,
            )
            expect(outcome).to_be_focused()
            expect(pending).to_have_count(1)
            expect(page.locator("#releases-approved")).to_have_text(
                "No approved release waits to be carried out."
            )
            page.screenshot(path=screens / "web-release-approved.png", full_page=True)

            # Chloe's SDK reads it, verified, under the wider label, released by dora.
            (released,) = _run(_chloe_reads(story.chloe))
            assert released.verified, released.problem
            assert released.text == CONVOY
            assert released.banner == REL_USA_GBR_FRA
            assert (released.released_by, released.original_banner) == ("dora", REL_USA_GBR)
            assert (released.sender, released.sender_nation) == ("sam", "USA")

            # So does chloe's page: the grant opened and checked, the message under the label
            # the release widened it to, with who released it and the label it was sent as.
            _unlock(chloe_page, PASSPHRASE)
            liaison = chloe_page.locator("#channels .channel-open", has_text="liaison")
            expect(liaison.locator(".unread")).to_have_text("1 unread", timeout=SLOW)
            liaison.click()
            item = chloe_page.locator("#messages .item")
            expect(item).to_have_count(1)
            expect(item.locator(".banner")).to_have_text([REL_USA_GBR_FRA, REL_USA_GBR_FRA])
            expect(item.locator(".item-body")).to_have_text(CONVOY)
            expect(item.locator(".item-meta")).to_contain_text("sam (USA) at ")
            expect(item.locator(".item-meta")).to_contain_text(
                f"; released by dora (sent as {REL_USA_GBR})"
            )
            chloe_page.screenshot(path=screens / "web-release-received.png", full_page=True)

            # A refusal needs a reason; given one (hostile, as any text), the requester reads it.
            second = pending.filter(has_text=HOLD)
            second.get_by_role("button", name="Refuse").click()
            expect(page.locator("#problem")).to_have_text(
                "Not refused: say why in the reason first (the requester sees it)."
            )
            second.get_by_label("Your reason (the requester sees it)").fill(HOSTILE)
            second.get_by_role("button", name="Refuse").click()
            expect(outcome).to_have_text(
                f"Refused: Message in liaison stays {REL_USA_GBR}. The requester sees your reason.",
                timeout=SLOW,
            )
            expect(pending).to_have_count(0)
            expect(page.locator("#releases-pending")).to_have_text(
                "Nothing waits for you to decide."
            )
            decided = {r["item_id"]: r for r in _run(_bobs_requests(story.officer))}
            assert decided[story.convoy]["status"] == "granted"
            assert decided[story.convoy]["decision_reason"] == "Agreed: FRA leads the cell"
            assert decided[story.hold]["status"] == "refused"
            assert decided[story.hold]["decision_reason"] == HOSTILE
            assert [m.text for m in _run(_chloe_reads(story.chloe))] == [CONVOY]
            chloe_page.reload()
            _unlock(chloe_page, PASSPHRASE)
            expect(liaison.locator(".unread")).to_have_text("1 unread", timeout=SLOW)

            # A label the server changes on its way stays text, and is said not to check.
            bob_asks_again(story)
            page.route("**/v1/releases", _HostileLabel())
            page.get_by_role("button", name="Refresh the requests").click()
            card = pending.first
            expect(card.locator(".release-problems")).to_contain_text(
                f"The server shows the item's label as {json.dumps(HOSTILE)}", timeout=SLOW
            )
            assert page.locator("#app img").count() == 0
            assert page.evaluate("() => window.__pwned") is None
            page.unroute("**/v1/releases")

            _no_violations(page)
            _no_violations(chloe_page)
            assert errors == []
        finally:
            browser.close()


def bob_asks_again(story: Story) -> None:
    """Bob asks once more for the refused message (a request may be made again)."""

    async def ask() -> None:
        async with await Messenger.open(story.officer.bob, passphrase=web.BOB_PASSPHRASE) as bob:
            await Releases(bob).request("message", story.hold, ["FRA"], reason="asking again")

    _run(ask())
