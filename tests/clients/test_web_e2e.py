"""The browser client in a real Chromium (Debian's, driven by Playwright) against a real
`attache-server run`: a user enrols the page with a one-time code from their security officer,
who compares the fingerprint the page shows and certifies the device; the page refuses a
certificate that does not verify against the authority key it pinned, refuses a wrong
passphrase, then unlocks, signs in and lists the user's channels, setting text from the server
as text, with no Content-Security-Policy violation reported. A page given a coalition policy
refuses a founding version short of a founder's signature and pins a valid one.

Screenshots go to ``ATTACHE_SCREENS`` when set (``ATTACHE_SCREENS=docs/screens`` refreshes the
README's), else to the test's temporary directory. Without Chromium the test is skipped, except
under CI, where it fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from playwright.sync_api import Page, Route, expect, sync_playwright
from sqlalchemy import select, update

from clients.sdk import (
    AttacheClient,
    Keystore,
    Messenger,
    ReceivedMessage,
    certify_device,
    connect,
    enroll,
)
from protocol import coalition, keys
from server.audit.models import AuditEvent
from server.auth.principal import CONSOLE
from server.coalition import service as coalition_service
from server.db.engine import create_engine, create_sessionmaker
from server.devices.service import do_issue_enrolment_code
from server.directory import service as directory
from server.settings import Settings
from tests.clients.server_process import attache_server_run, free_port
from tests.conftest import IN_CI

T = TypeVar("T")
PASSPHRASE = "alice's browser passphrase"
OFFICER_PASSPHRASE = "sam's device passphrase"
BOB_PASSPHRASE = "bob's device passphrase"
REL_USA_GBR = "NATO SECRET//REL TO USA, GBR"
# Milliseconds to wait for what follows a key derivation: Argon2id at the CLI's cost (64 MiB,
# 3 passes) in the page takes about a second here, more on a loaded machine.
SLOW = 30_000
HOSTILE = '<img src=x onerror="window.__pwned = 1">'
# Collects every policy violation the page reports (an init script runs before the page's own).
WATCH_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(`${event.violatedDirective}: ${event.blockedURI}`);
});
"""


@pytest.fixture
def chromium() -> str:
    """Debian's Chromium: checked before the server starts, so a skip costs nothing."""
    path = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )
    if path is None:
        message = "Debian's chromium is not installed (apt-get install chromium; .ci/run does)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@dataclass
class Server:
    origin: str
    settings: Settings


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """`attache-server run` on SQLite of its own, as `make run` starts it."""
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    settings = Settings(
        data_dir=tmp_path / "var",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'attache.db'}",
        port=port,
    )
    env = {
        **os.environ,
        "ATTACHE_DATA_DIR": str(settings.data_dir),
        "ATTACHE_DATABASE_URL": settings.effective_database_url,
        "ATTACHE_PORT": str(port),
        "NO_COLOR": "1",
    }
    with attache_server_run(env, origin, tmp_path / "server.log"):
        yield Server(origin, settings)


@dataclass
class Officer:
    """USA's security officer: their authority key, and their own certified device; and bob,
    GBR's security officer, whose SDK device talks with alice's page."""

    authority: keys.AuthorityKey
    keystore: Keystore
    bob: Keystore
    gbr: keys.AuthorityKey  # bob's nation's authority key, to certify his other devices


async def _directory(
    server: Server, authority: keys.AuthorityKey, gbr: keys.AuthorityKey
) -> tuple[str, str]:
    """What the operator does (as `attache-server nation add` and `user add`, directly in the
    database): USA and GBR with their officers' authority keys, and their first security
    officers, sam and bob. Returns sam's and bob's enrolment codes."""
    engine = create_engine(server.settings.effective_database_url)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            codes = []
            for nation, name, key, user in (
                ("USA", "United States", authority, "sam"),
                ("GBR", "United Kingdom", gbr, "bob"),
            ):
                catalog = await directory.load_catalog(session, server.settings.load_catalog())
                await directory.do_create_nation(
                    session,
                    CONSOLE,
                    catalog,
                    code=nation,
                    name=name,
                    authority_key=key.public_bytes(),
                )
                catalog = await directory.load_catalog(session, server.settings.load_catalog())
                created = await directory.do_create_user(
                    session,
                    CONSOLE,
                    catalog,
                    username=user,
                    nationality=nation,
                    clearance="NATO SECRET",
                    roles=["officer", "security_officer"],
                )
                issued = await do_issue_enrolment_code(session, CONSOLE, server.settings, created)
                codes.append(issued.code)
            return codes[0], codes[1]
    finally:
        await engine.dispose()


async def _officer_sets_up(server: Server, home: Path) -> tuple[Officer, str]:
    """The officers enrol their own devices (certified at once); sam adds alice, makes the
    channels she will see (bob is in liaison too) and issues her one-time enrolment code."""
    authority = keys.AuthorityKey.generate()
    gbr = keys.AuthorityKey.generate()
    code, bob_code = await _directory(server, authority, gbr)
    bob = Keystore(home / "bob", kdf=keys.KdfParams.for_tests())
    await enroll(
        server.origin,
        username="bob",
        code=bob_code,
        device_name="bob-laptop",
        passphrase=BOB_PASSPHRASE,
        keystore=bob,
        authority=("GBR", gbr),
    )
    store = Keystore(home, kdf=keys.KdfParams.for_tests())
    await enroll(
        server.origin,
        username="sam",
        code=code,
        device_name="sam-laptop",
        passphrase=OFFICER_PASSPHRASE,
        keystore=store,
        authority=("USA", authority),
    )
    async with await connect(store, passphrase=OFFICER_PASSPHRASE) as client:
        await client.create_user(
            username="alice", nationality="USA", clearance="NATO SECRET", roles=["officer"]
        )
        await client.create_channel(
            "liaison",
            "NATO SECRET",
            labels=[
                "NATO UNCLASSIFIED",
                REL_USA_GBR,
                "NATO SECRET//REL TO FVEY",
                "NATO SECRET//REL TO EU",
            ],
            default_label=REL_USA_GBR,
        )
        await client.add_member("liaison", "alice")
        await client.add_member("liaison", "bob")
        await client.create_channel("planning", "NATO CONFIDENTIAL")
        await client.add_member("planning", "alice")
        issued = await client.issue_enrolment_code("alice")
    return Officer(authority, store, bob, gbr), str(issued["code"])


async def _bob_sends(bob: Keystore, text: str) -> None:
    async with await Messenger.open(bob, passphrase=BOB_PASSPHRASE) as messenger:
        await messenger.send("liaison", text, label=REL_USA_GBR)


async def _bob_reads(bob: Keystore) -> list[ReceivedMessage]:
    async with await Messenger.open(bob, passphrase=BOB_PASSPHRASE) as messenger:
        return await messenger.read("liaison")


async def _officer_certifies(
    officer: Officer, fingerprint: str, username: str = "alice"
) -> dict[str, Any]:
    """The officer finds the user's pending device, compares its fingerprint with the one the
    page showed them, and certifies it."""
    client: AttacheClient
    async with await connect(officer.keystore, passphrase=OFFICER_PASSPHRASE) as client:
        pending = [d for d in await client.devices(status="pending") if d["username"] == username]
        assert len(pending) == 1
        assert pending[0]["fingerprint"] == fingerprint
        return await certify_device(client, "USA", officer.authority, pending[0])


async def _officer_adds_auditor(officer: Officer) -> str:
    """Sam adds audrey, USA's auditor (she sees USA's events and only the hashes of others'),
    and issues her one-time enrolment code."""
    async with await connect(officer.keystore, passphrase=OFFICER_PASSPHRASE) as client:
        await client.create_user(
            username="audrey", nationality="USA", clearance="NATO SECRET", roles=["auditor"]
        )
        issued = await client.issue_enrolment_code("audrey")
    return str(issued["code"])


async def _edit_logged_event(server: Server) -> int:
    """What an operator with the database might do: rewrite a logged event (the last channel
    the officer created, an allow made a deny) behind the log's back. Its leaf's index."""
    engine = create_engine(server.settings.effective_database_url)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            target = (
                await session.execute(
                    select(AuditEvent)
                    .where(AuditEvent.action == "channel.create")
                    .order_by(AuditEvent.id.desc())
                    .limit(1)
                )
            ).scalar_one()
            assert target.leaf_index is not None
            await session.execute(
                update(AuditEvent)
                .where(AuditEvent.id == target.id)
                .values(body=target.body.replace('"decision":"allow"', '"decision":"deny"'))
            )
            return int(target.leaf_index)
    finally:
        await engine.dispose()


def _run(work: Coroutine[Any, Any, T]) -> T:
    """Run an SDK coroutine to its end: in a thread of its own, since Playwright's sync API
    keeps an event loop running in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work).result()


def _screens(tmp_path: Path) -> Path:
    screens = Path(os.environ.get("ATTACHE_SCREENS") or tmp_path / "screens")
    screens.mkdir(parents=True, exist_ok=True)
    return screens


def _tampered_certificate(route: Route) -> None:
    """The device as the server shows it, its certificate naming another user: the signature
    no longer holds, as when a server forges one."""
    response = route.fetch()
    device = response.json()
    assert device["certificate"]["body"]["username"] == "alice"
    device["certificate"]["body"]["username"] = "mallory"
    route.fulfill(response=response, body=json.dumps(device))


def _hostile_channels(route: Route) -> None:
    response = route.fetch()
    channels = response.json()
    channels[0]["name"] = HOSTILE
    channels[0]["ceiling"] = HOSTILE
    route.fulfill(response=response, body=json.dumps(channels))


def _tampered_sync(route: Route) -> None:
    """The sync answer with one byte of the last item's body changed, as a server (or anyone
    on the way) might change it: its signature no longer holds."""
    response = route.fetch()
    page = response.json()
    if page["items"]:
        message = page["items"][-1]["message"]
        body = bytearray(keys.b64u_decode(message["body"]))
        body[-1] ^= 0x01
        message["body"] = keys.b64u_encode(bytes(body))
    route.fulfill(response=response, body=json.dumps(page))


def _no_violations(page: Page) -> None:
    """The page ran under its policy: nothing blocked, nothing reported."""
    assert page.evaluate("() => window.__violations") == []


def _unlock(page: Page, passphrase: str) -> None:
    page.get_by_label("Passphrase", exact=True).fill(passphrase)
    page.get_by_role("button", name="Unlock").click()


def test_a_browser_enrols_is_certified_unlocks_and_lists_its_channels(
    chromium: str, server: Server, tmp_path: Path
) -> None:
    officer, code = _run(_officer_sets_up(server, tmp_path / "sam"))
    screens = _screens(tmp_path)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            context = browser.new_context(viewport={"width": 900, "height": 760})
            context.add_init_script(WATCH_VIOLATIONS)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            sent: list[str] = []
            page.on("request", lambda request: sent.append(request.url))
            page.goto(server.origin)

            # Enrolment: the keys are made in the page; the code comes from the officer.
            expect(page.locator("#status")).to_contain_text("enrol it with the code")
            page.get_by_label("Username").fill("alice")
            page.get_by_label("Enrolment code").fill(code.lower())
            page.get_by_label("A name for this device").fill("alice-browser")
            page.get_by_label("Passphrase (protects this device's keys)").fill(PASSPHRASE)
            page.get_by_label("The same passphrase again").fill(PASSPHRASE)
            page.screenshot(path=screens / "web-enrol.png", full_page=True)
            page.get_by_role("button", name="Enrol").click()
            expect(page.locator("#status")).to_contain_text("awaits certification", timeout=SLOW)
            fingerprint = page.locator("#fingerprint").inner_text()
            assert len(fingerprint.split()) == 10
            expect(page.locator("#pins")).to_contain_text("USA: ")
            # Keyboard users land where they go on: the passphrase that unlocks.
            expect(page.locator("#unlock-passphrase")).to_be_focused()
            page.screenshot(path=screens / "web-enrolled.png", full_page=True)

            # Before the officer certifies, the server refuses to sign the device in, and
            # the page says why.
            _unlock(page, PASSPHRASE)
            expect(page.locator("#problem")).to_contain_text("awaits certification", timeout=SLOW)

            device = _run(_officer_certifies(officer, fingerprint))
            assert device["status"] == "active"

            # The device is kept (sealed, in IndexedDB) across a reload.
            _no_violations(page)
            page.reload()
            expect(page.locator("#status")).to_contain_text("Unlock this device")
            expect(page.locator("#fingerprint")).to_have_text(fingerprint)

            # A wrong passphrase opens nothing, and nothing is sent.
            sent.clear()
            _unlock(page, "not the passphrase")
            expect(page.locator("#problem")).to_contain_text("Wrong passphrase", timeout=SLOW)
            assert [url for url in sent if "/v1/" in url] == []

            # A certificate that does not verify against the pinned USA key is refused.
            page.route(f"**/v1/devices/{device['id']}", _tampered_certificate)
            _unlock(page, PASSPHRASE)
            expect(page.locator("#problem")).to_contain_text("does not verify", timeout=SLOW)
            expect(page.locator("#home")).to_be_hidden()
            page.unroute(f"**/v1/devices/{device['id']}")

            _unlock(page, PASSPHRASE)
            channels = page.locator("#channels li")
            expect(channels).to_have_count(2, timeout=SLOW)
            expect(page.locator("#whoami")).to_contain_text(
                "Signed in as alice (USA, cleared NATO SECRET)"
            )
            expect(page.locator("#home-title")).to_be_focused()
            expect(channels.filter(has_text="liaison")).to_contain_text("NATO SECRET")
            expect(channels.filter(has_text="planning")).to_contain_text("NATO CONFIDENTIAL")
            expect(page.locator("#live")).to_have_text("Live.", timeout=SLOW)

            # Bob (GBR, the SDK) sends while alice's page is open: it arrives live, unread.
            _run(_bob_sends(officer.bob, HOSTILE))
            liaison = page.locator("#channels .channel-open", has_text="liaison")
            expect(liaison.locator(".unread")).to_have_text("1 unread", timeout=SLOW)
            page.screenshot(path=screens / "web-channels.png", full_page=True)
            liaison.click()
            item = page.locator("#messages .item").first
            banners = item.locator(".banner")
            expect(banners).to_have_count(2)
            expect(banners.first).to_have_text(REL_USA_GBR)
            expect(banners.last).to_have_text(REL_USA_GBR)
            # The catalog's colour of NATO SECRET, with white text on it.
            assert banners.first.evaluate("e => getComputedStyle(e).backgroundColor") == (
                "rgb(200, 16, 46)"
            )
            assert banners.first.evaluate("e => getComputedStyle(e).color") == "rgb(255, 255, 255)"
            # A hostile body stays text.
            expect(item.locator(".item-body")).to_have_text(HOSTILE)
            expect(item.locator(".item-meta")).to_contain_text("bob (GBR)")
            assert page.locator("#app img").count() == 0
            assert page.evaluate("() => window.__pwned") is None

            # The label picker offers the channel's labels, its default chosen, and says who
            # a message would be released to before it is sent.
            # (The meeting screen's upload form has a picker of its own.)
            picker = page.get_by_role("form", name="Send a message").get_by_label("Label")
            expect(picker).to_have_value(REL_USA_GBR)
            reach = page.locator("#compose-reach")
            expect(reach).to_have_text(
                "Will be released to: alice (USA), bob (GBR), sam (USA) (3 devices)."
            )
            picker.select_option("NATO SECRET//REL TO EU")
            expect(reach).to_contain_text("you may not send NATO SECRET//REL TO EU here")
            picker.select_option("NATO SECRET//REL TO FVEY")
            expect(reach).to_have_text(
                "Will be released to: alice (USA), bob (GBR), sam (USA) (3 devices)."
            )
            page.get_by_label("Message", exact=True).fill("hello bob, from alice's page")
            page.get_by_role("button", name="Send").click()
            expect(page.locator("#compose-sent")).to_have_text(
                "Sent as NATO SECRET//REL TO FVEY, released to: alice (USA), bob (GBR), "
                "sam (USA) (3 devices).",
                timeout=SLOW,
            )
            # It comes back to the page by the stream, verified like any other.
            expect(page.locator("#messages .item-body")).to_have_text(
                [HOSTILE, "hello bob, from alice's page"], timeout=SLOW
            )
            page.screenshot(path=screens / "web-messages.png", full_page=True)

            # Bob's SDK reads and verifies what the page sealed.
            read = _run(_bob_reads(officer.bob))
            mine = [m for m in read if m.sender == "alice"]
            assert len(mine) == 1
            assert mine[0].verified, mine[0].problem
            assert mine[0].text == "hello bob, from alice's page"
            assert mine[0].banner == "NATO SECRET//REL TO FVEY"
            assert mine[0].sender_nation == "USA"
            page.get_by_role("button", name="Back to the channels").click()
            expect(liaison.locator(".unread")).to_have_text("")

            # The token lives in memory only: nothing in any storage the page can write, and
            # a reload asks for the passphrase again.
            stored = page.evaluate(
                "() => [localStorage.length, sessionStorage.length, document.cookie]"
            )
            assert stored == [0, 0, ""]
            _no_violations(page)
            page.reload()
            expect(page.locator("#status")).to_contain_text("Unlock this device")
            expect(page.locator("#home")).to_be_hidden()

            # A message bob sent while the page was closed comes by sync, from the cursor;
            # changed on its way by one byte, it is shown as a warning, never as content.
            _run(_bob_sends(officer.bob, "changed on its way"))
            page.route("**/v1/sync?*", _tampered_sync)
            _unlock(page, PASSPHRASE)
            expect(liaison.locator(".unread")).to_have_text("3 unread", timeout=SLOW)
            liaison.click()
            expect(page.locator("#messages .item")).to_have_count(3)
            warning = page.locator("#messages .item-warning")
            expect(warning).to_have_count(1)
            expect(warning).to_contain_text("failed verification")
            expect(warning).to_contain_text("does not verify or decrypt")
            expect(page.locator("#messages")).not_to_contain_text("changed on its way")
            expect(page.locator("#messages .item-body")).to_have_text(
                [HOSTILE, "hello bob, from alice's page"]
            )
            page.screenshot(path=screens / "web-warning.png", full_page=True)
            page.unroute("**/v1/sync?*")
            page.reload()
            expect(page.locator("#status")).to_contain_text("Unlock this device")

            # Text from the server is set as text: a hostile channel name stays a string.
            page.route("**/v1/channels", _hostile_channels)
            _unlock(page, PASSPHRASE)
            expect(page.locator("#channels .channel-name").first).to_have_text(
                HOSTILE, timeout=SLOW
            )
            assert page.locator("#app img").count() == 0
            assert page.evaluate("() => window.__pwned") is None

            # Signing out ends the session and locks the keys again.
            page.get_by_role("button", name="Sign out").click()
            expect(page.locator("#status")).to_contain_text("Signed out")
            expect(page.locator("#unlock")).to_be_visible()

            _no_violations(page)
            assert errors == []
        finally:
            browser.close()


def _enrol(page: Page, username: str, code: str, passphrase: str) -> str:
    """Enrol the page with a one-time code; the fingerprint it shows."""
    page.get_by_label("Username").fill(username)
    page.get_by_label("Enrolment code").fill(code)
    page.get_by_label("A name for this device").fill(f"{username}-browser")
    page.get_by_label("Passphrase (protects this device's keys)").fill(passphrase)
    page.get_by_label("The same passphrase again").fill(passphrase)
    page.get_by_role("button", name="Enrol").click()
    expect(page.locator("#status")).to_contain_text("awaits certification", timeout=SLOW)
    return page.locator("#fingerprint").inner_text()


class _TamperedLeaf:
    """The leaves as the server shows them, one shown leaf's event edited on its way (an
    allow made a deny), as a server might rewrite what it logged."""

    def __init__(self) -> None:
        self.index: int | None = None

    def __call__(self, route: Route) -> None:
        response = route.fetch()
        page = response.json()
        for leaf in page["leaves"]:
            if (
                leaf["status"] == "shown"
                and leaf["index"] > 0
                and '"decision":"allow"' in leaf["data"]
            ):
                leaf["data"] = leaf["data"].replace('"decision":"allow"', '"decision":"deny"')
                self.index = leaf["index"]
                break
        route.fulfill(response=response, body=json.dumps(page))


def test_an_auditor_reads_filters_exports_and_verifies_the_log_in_the_page(
    chromium: str, server: Server, tmp_path: Path
) -> None:
    officer, _ = _run(_officer_sets_up(server, tmp_path / "sam"))
    code = _run(_officer_adds_auditor(officer))
    screens = _screens(tmp_path)
    vkey = httpx.get(f"{server.origin}/v1/audit/key").json()["vkey"]

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1100, "height": 900})
            context.add_init_script(WATCH_VIOLATIONS)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(server.origin)
            fingerprint = _enrol(page, "audrey", code, PASSPHRASE)
            _run(_officer_certifies(officer, fingerprint, "audrey"))
            _unlock(page, PASSPHRASE)
            expect(page.locator("#whoami")).to_contain_text("Signed in as audrey", timeout=SLOW)

            # The audit log is offered to auditors; its events come with the CLI's filters.
            page.get_by_role("button", name="Audit log").click()
            expect(page.locator("#audit-title")).to_be_focused()
            page.get_by_role("button", name="Show events").click()
            rows = page.locator("#audit-rows tr")
            expect(page.locator("#audit-count")).to_have_text(
                re.compile(r"^\d+ events\.$"), timeout=SLOW
            )
            assert rows.count() > 5
            page.get_by_label("Action (reads of the log").fill("channel.create")
            page.get_by_label("Decision").select_option("allow")
            page.get_by_label("Nation (actor or subject)").fill("usa")
            page.get_by_role("button", name="Show events").click()
            expect(page.locator("#audit-count")).to_have_text("2 events.", timeout=SLOW)
            expect(rows.first).to_contain_text("channel.create")
            expect(rows.first).to_contain_text("sam")
            expect(page.locator("#audit-head th")).to_have_text(
                [
                    "id",
                    "time",
                    "action",
                    "decision",
                    "actor",
                    "actor_nation",
                    "object",
                    "label",
                    "reasons",
                ]
            )

            # Exports are made in the page and offered as downloads, as the CLI writes them.
            with page.expect_download() as csv_download:
                page.get_by_role("button", name="Export CSV").click()
            lines = Path(csv_download.value.path()).read_text(encoding="utf-8").splitlines()
            assert csv_download.value.suggested_filename.endswith(".csv")
            assert lines[0] == (
                "id,leaf,time,action,decision,actor,actor_id,actor_nation,object,"
                "subject_nation,label,reasons"
            )
            assert len(lines) == 3
            assert all(",channel.create,allow,sam," in line for line in lines[1:])
            with page.expect_download() as json_download:
                page.get_by_role("button", name="Export JSON").click()
            exported = json.loads(Path(json_download.value.path()).read_text(encoding="utf-8"))
            assert [e["event"]["action"] for e in exported] == ["channel.create"] * 2
            assert {e["actor_username"] for e in exported} == {"sam"}

            # Verification in the page: the key pinned on first use and said aloud.
            verify = page.get_by_role("button", name="Verify the log")
            verdict = page.locator("#audit-verdict")
            verify.click()
            expect(verdict).to_contain_text("Audit log verified: ", timeout=SLOW)
            expect(verdict).to_contain_text("Pinned the server's audit key on first use")
            expect(verdict).to_contain_text(vkey)
            page.screenshot(path=screens / "web-audit.png", full_page=True)
            # Again: consistent with the checkpoint verified before, kept in IndexedDB.
            verify.click()
            expect(verdict).to_contain_text(", consistent with the ", timeout=SLOW)
            expect(verdict).not_to_contain_text("Pinned")

            # A leaf edited on its way is named as the first bad leaf; nothing is kept.
            tampered = _TamperedLeaf()
            page.route("**/v1/audit/leaves?*", tampered)
            verify.click()
            expect(verdict).to_contain_text("VERIFICATION FAILED (first bad leaf: ", timeout=SLOW)
            assert tampered.index is not None
            expect(verdict).to_contain_text(f"(first bad leaf: {tampered.index})")
            problems = page.locator("#audit-problems li")
            expect(problems.first).to_have_text(
                f"leaf {tampered.index}: the event differs from what was logged"
            )
            expect(page.locator("#audit-problems")).to_contain_text(
                f"leaf {tampered.index} changed since it was last verified here"
            )
            page.screenshot(path=screens / "web-audit-failed.png", full_page=True)
            page.unroute("**/v1/audit/leaves?*")
            verify.click()
            expect(verdict).to_contain_text(", consistent with the ", timeout=SLOW)

            # An event rewritten in the database is caught the same way.
            edited = _run(_edit_logged_event(server))
            verify.click()
            expect(verdict).to_contain_text(f"(first bad leaf: {edited})", timeout=SLOW)
            expect(problems.first).to_have_text(
                f"leaf {edited}: the event differs from what was logged"
            )

            _no_violations(page)
            assert errors == []
        finally:
            browser.close()


def _founding_policy(*signers: tuple[str, keys.AuthorityKey]) -> tuple[dict[str, Any], str]:
    """A founding coalition policy of USA, GBR and FRA (FRA a nation the server does not know),
    signed by ``signers``: its wire form and its digest."""
    founders = {"USA": "United States", "GBR": "United Kingdom", "FRA": "France"}
    authorities = dict(signers)
    for code in founders:
        authorities.setdefault(code, keys.AuthorityKey.generate())
    policy = coalition.build_policy(
        coalition="e2e",
        nations=[
            coalition.PolicyNation.of(code, name, [authorities[code].public_bytes()])
            for code, name in founders.items()
        ],
        groups={},
        catalog_toml=(Path(__file__).parents[2] / "protocol/catalogs/default.toml").read_text(),
        threshold=2,
    )
    signed = coalition.SignedPolicy(
        policy, tuple(coalition.sign_policy(policy, code, key) for code, key in signers)
    )
    return signed.to_json(), policy.digest_b64u


async def _publish_policy(server: Server, signed: dict[str, Any]) -> None:
    """What the operator does (as `attache-server policy publish`, directly in the database):
    publish ``signed``, which the audit log then records (its integrator runs every second)."""
    engine = create_engine(server.settings.effective_database_url)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            await coalition_service.do_publish_policy(
                session, CONSOLE, coalition.SignedPolicy.from_json(signed)
            )
    finally:
        await engine.dispose()


def test_the_page_pins_the_coalition_policy_and_refuses_one_short_of_a_founder(
    chromium: str, server: Server, tmp_path: Path
) -> None:
    """The page as a device of a coalition with a signed policy (served here by a route, as
    the server would serve it): a founding version one founder has not signed is refused
    before any key is made; a valid one, once the operator has published it in the audit log
    (which the page checks, test_web_policy_log.py), is pinned, its nations' keys taken instead
    of the server's list of nations. docs/web.md; the Node tests play every other refusal."""
    usa, gbr, fra = (keys.AuthorityKey.generate() for _ in range(3))
    code, _ = _run(_directory(server, usa, gbr))
    forged, _ = _founding_policy(("USA", usa), ("GBR", gbr))
    valid, digest = _founding_policy(("USA", usa), ("GBR", gbr), ("FRA", fra))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            page = browser.new_context().new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            sent: list[str] = []
            page.on("request", lambda request: sent.append(request.url))
            served = [forged]
            page.route(
                "**/v1/policy",
                lambda route: route.fulfill(json=served[0]),
            )
            page.goto(server.origin)
            page.get_by_label("Username").fill("sam")
            page.get_by_label("Enrolment code").fill(code)
            page.get_by_label("Passphrase (protects this device's keys)").fill(PASSPHRASE)
            page.get_by_label("The same passphrase again").fill(PASSPHRASE)
            page.get_by_role("button", name="Enrol").click()
            expect(page.locator("#problem")).to_contain_text(
                "coalition policy is refused", timeout=SLOW
            )
            expect(page.locator("#problem")).to_contain_text("missing: FRA")
            assert not [url for url in sent if url.endswith(("/v1/devices", "/v1/nations"))]

            # The page accepts a version only once the audit log proves its publication
            # (PROTOCOL.md §18.6): the operator publishes it, as `attache-server policy publish`.
            _run(_publish_policy(server, valid))
            served[0] = valid
            page.get_by_label("Passphrase (protects this device's keys)").fill(PASSPHRASE)
            page.get_by_label("The same passphrase again").fill(PASSPHRASE)
            page.get_by_role("button", name="Enrol").click()
            expect(page.locator("#status")).to_contain_text("awaits certification", timeout=SLOW)
            expect(page.locator("#policy-pin")).to_contain_text(
                f"Coalition policy version 1 of e2e, founding digest {digest}"
            )
            expect(page.locator("#pins")).to_contain_text(f"FRA: {fra.key_id}")
            assert not [url for url in sent if url.endswith("/v1/nations")]
            assert errors == []
        finally:
            browser.close()
