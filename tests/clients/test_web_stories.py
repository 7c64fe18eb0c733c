"""Two of issue 12's stories in a real Chromium (Debian's, driven by Playwright) against a real
`attache-server run`.

The three-nation story: alice (USA), bob (GBR) and chloe (FRA) each enrol a page in a browser
context of their own, certified by their nation's security officer, all members of `liaison`.
Alice's page sends a message REL TO USA, GBR and then one for all of NATO. Bob's page shows
both live; chloe's page shows the NATO one live and nothing of the other: not its text, its
banner or that it exists. Every HTTP response body and websocket frame chloe's page receives is
recorded, and none holds the first message's id, its audience (so no envelope for it) or its
ciphertext; the server's sync for chloe's page's device omits it too.

The CLI and the page: bob's `attache send` (a real process) arrives live in alice's page,
verified; what alice's page sends, bob's `attache listen` shows live with its banners and
`attache read` verifies.

Screenshots go to ``ATTACHE_SCREENS`` when set, else to the test's temporary directory (as in
test_web_e2e.py, whose server, officers and helpers these tests share).
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, Error, Page, Response, WebSocket, expect, sync_playwright

from clients.sdk import Keystore, Messenger, ReceivedMessage, certify_device, connect
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
from tests.clients.test_web_releases import (
    CHLOE_PASSPHRASE,
    REL_USA_GBR_FRA,
    France,
    _bobs_requests,
    _chloe_certifies,
    _chloe_code,
    _france,
)

# The fixtures of test_web_e2e.py: Debian's Chromium, and the server `make run` starts.
chromium = web.chromium
server = web.server

SECRET = "Two GBR handlers meet the source at 04:00"
FOR_NATO = "Coffee at ten in the NATO bar"
NATO_UNCLASSIFIED = "NATO UNCLASSIFIED"  # the NATO policy's default: REL TO NATO, FRA included
BIN = Path(sys.executable).parent
# Seconds for one run of the CLI: Python's start, Argon2id and a round trip, on a busy machine.
CLI_TIMEOUT = 60


async def _sam_adds_chloe(officer: Officer) -> None:
    async with await connect(officer.keystore, passphrase=OFFICER_PASSPHRASE) as client:
        await client.add_member("liaison", "chloe")


async def _bob_code(officer: Officer) -> str:
    """Bob, GBR's security officer, issues himself a code for a browser device."""
    async with await connect(officer.bob, passphrase=web.BOB_PASSPHRASE) as client:
        return str((await client.issue_enrolment_code("bob"))["code"])


async def _bob_certifies(officer: Officer, fingerprint: str) -> None:
    async with await connect(officer.bob, passphrase=web.BOB_PASSPHRASE) as client:
        (pending,) = await client.devices(status="pending")
        assert pending["fingerprint"] == fingerprint
        await certify_device(client, "GBR", officer.gbr, pending)


async def _reads(store: Keystore, passphrase: str) -> list[ReceivedMessage]:
    async with await Messenger.open(store, passphrase=passphrase) as messenger:
        return await messenger.read("liaison")


def _new_page(browser: Browser, errors: list[str]) -> Page:
    context = browser.new_context(viewport={"width": 900, "height": 760})
    context.add_init_script(WATCH_VIOLATIONS)
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    return page


class Recorder:
    """Everything a page receives: each HTTP response (bodies read at the end) and each
    websocket frame, from before its first request."""

    def __init__(self, page: Page) -> None:
        self.responses: list[Response] = []
        self.frames: list[str] = []
        self.tokens: set[str] = set()
        page.on("response", lambda response: self.responses.append(response))
        page.on("websocket", self._socket)
        page.on("request", self._request)

    def _socket(self, socket: WebSocket) -> None:
        socket.on("framereceived", self._frame)

    def _frame(self, payload: str | bytes) -> None:
        self.frames.append(payload if isinstance(payload, str) else payload.decode("latin-1"))

    def _request(self, request: Any) -> None:
        authorization = request.headers.get("authorization", "")
        if authorization.startswith("Bearer "):
            self.tokens.add(authorization.removeprefix("Bearer "))

    def bodies(self) -> list[str]:
        """Every response body, as text; each answer of the API must have been read."""
        read: list[str] = []
        for response in self.responses:
            try:
                read.append(response.body().decode("latin-1"))
            except Error:
                # Only a body the browser no longer holds, and never an answer of the API.
                assert "/v1/" not in response.url, response.url
        return read


def test_three_nations_in_three_pages_and_france_gets_nothing_of_rel_to_usa_gbr(
    chromium: str, server: Server, tmp_path: Path
) -> None:
    france: France = _run(_france(server, tmp_path / "chloe"))
    officer, alice_code = _run(_officer_sets_up(server, tmp_path / "sam"))
    _run(_sam_adds_chloe(officer))
    screens = _screens(tmp_path)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            errors: list[str] = []
            usa = _new_page(browser, errors)
            gbr = _new_page(browser, errors)
            fra = _new_page(browser, errors)
            seen = Recorder(fra)

            # Each officer enrols a page, certified by their own nation's security officer.
            usa.goto(server.origin)
            _run(_officer_certifies(officer, _enrol(usa, "alice", alice_code, PASSPHRASE)))
            gbr.goto(server.origin)
            _run(_bob_certifies(officer, _enrol(gbr, "bob", _run(_bob_code(officer)), PASSPHRASE)))
            fra.goto(server.origin)
            fingerprint = _enrol(fra, "chloe", _run(_chloe_code(france)), PASSPHRASE)
            _run(_chloe_certifies(france, fingerprint))
            for page, who in ((usa, "alice"), (gbr, "bob"), (fra, "chloe")):
                _unlock(page, PASSPHRASE)
                expect(page.locator("#whoami")).to_contain_text(f"Signed in as {who}", timeout=SLOW)
            for page in (usa, gbr, fra):
                expect(page.locator("#live")).to_have_text("Live.", timeout=SLOW)

            # Alice's page sends REL TO USA, GBR: it says before and after that FRA is not in.
            usa.locator("#channels .channel-open", has_text="liaison").click()
            picker = usa.get_by_role("form", name="Send a message").get_by_label("Label")
            expect(picker).to_have_value(REL_USA_GBR)
            reach = usa.locator("#compose-reach")
            expect(reach).to_have_text(
                "Will be released to: alice (USA), bob (GBR), sam (USA) (4 devices).", timeout=SLOW
            )
            usa.get_by_label("Message", exact=True).fill(SECRET)
            with usa.expect_response(
                lambda r: r.request.method == "POST" and r.url.endswith("/messages"), timeout=SLOW
            ) as submitted:
                usa.get_by_role("button", name="Send").click()
            secret_id = submitted.value.json()["message_id"]
            sealed = submitted.value.request.post_data_json
            audience_id = sealed["header"]["audience_id"]
            expect(usa.locator("#compose-sent")).to_have_text(
                f"Sent as {REL_USA_GBR}, released to: alice (USA), bob (GBR), sam (USA) "
                "(4 devices).",
                timeout=SLOW,
            )
            # Then one for all of NATO, FRA included.
            picker.select_option(NATO_UNCLASSIFIED)
            expect(reach).to_have_text(
                "Will be released to: alice (USA), bob (GBR), chloe (FRA), sam (USA) (6 devices).",
                timeout=SLOW,
            )
            usa.get_by_label("Message", exact=True).fill(FOR_NATO)
            with usa.expect_response(
                lambda r: r.request.method == "POST" and r.url.endswith("/messages"), timeout=SLOW
            ) as submitted:
                usa.get_by_role("button", name="Send").click()
            nato_id = submitted.value.json()["message_id"]
            expect(usa.locator("#messages .item-body")).to_have_text(
                [SECRET, FOR_NATO], timeout=SLOW
            )
            usa.screenshot(path=screens / "web-nations-usa.png", full_page=True)

            # Bob's page (GBR) shows both live, the first between its banners.
            liaison = gbr.locator("#channels .channel-open", has_text="liaison")
            expect(liaison.locator(".unread")).to_have_text("2 unread", timeout=SLOW)
            liaison.click()
            items = gbr.locator("#messages .item")
            expect(items.locator(".item-body")).to_have_text([SECRET, FOR_NATO])
            expect(items.first.locator(".banner")).to_have_text([REL_USA_GBR, REL_USA_GBR])
            expect(items.first.locator(".item-meta")).to_contain_text("alice (USA)")
            expect(gbr.locator("#messages .item-warning")).to_have_count(0)
            gbr.screenshot(path=screens / "web-nations-gbr.png", full_page=True)

            # Bob asks, from his page and by keyboard, for the first to be released to FRA
            # too, as `attache release request` asks; USA's disclosure officers decide.
            ask = items.first.get_by_role("button", name="Ask for a release")
            ask.click()
            expect(gbr.get_by_label("Nations or groups to add")).to_be_focused()
            # Cancel closes the form and goes back to the message's button.
            gbr.get_by_role("button", name="Cancel").click()
            expect(gbr.locator("#ask-release")).to_be_hidden()
            expect(ask).to_be_focused()
            gbr.keyboard.press("Enter")
            expect(gbr.get_by_label("Nations or groups to add")).to_be_focused()
            gbr.keyboard.type("fra")
            gbr.keyboard.press("Tab")
            gbr.keyboard.type("FRA leads the cell")
            gbr.keyboard.press("Tab")
            expect(gbr.get_by_role("button", name="Ask for the release")).to_be_focused()
            gbr.keyboard.press("Enter")
            asked = gbr.locator("#ask-release-outcome")
            expect(asked).to_contain_text(
                f"Asked: the message from alice to go from {REL_USA_GBR} to {REL_USA_GBR_FRA}, "
                "pending a decision by USA's disclosure officers (request ",
                timeout=SLOW,
            )
            expect(asked).to_be_focused()
            expect(gbr.locator("#ask-release")).to_be_hidden()
            gbr.screenshot(path=screens / "web-release-asked.png", full_page=True)
            (request,) = _run(_bobs_requests(officer))
            assert (request["item_id"], request["status"]) == (secret_id, "pending")
            assert request["requested_label"] == REL_USA_GBR_FRA
            assert request["reason"] == "FRA leads the cell"
            gbr.get_by_role("button", name="Back to the channels").click()
            gbr.get_by_role("button", name="Release requests").click()
            mine = gbr.locator("#releases-mine .release")
            expect(mine).to_have_count(1, timeout=SLOW)
            expect(mine.locator(".release-status")).to_have_text(
                "Pending a decision by a disclosure officer of USA."
            )

            # Chloe's page (FRA) shows the NATO message live, and nothing of the other.
            liaison = fra.locator("#channels .channel-open", has_text="liaison")
            expect(liaison.locator(".unread")).to_have_text("1 unread", timeout=SLOW)
            liaison.click()
            items = fra.locator("#messages .item")
            expect(items).to_have_count(1)
            expect(items.locator(".item-body")).to_have_text(FOR_NATO)
            expect(items.locator(".banner")).to_have_text([NATO_UNCLASSIFIED] * 2)
            expect(fra.locator("#messages .item-warning")).to_have_count(0)
            fra.screenshot(path=screens / "web-nations-fra.png", full_page=True)
            # (The compose form's picker offers the channel's labels, REL TO USA, GBR among
            # them; the messages hold nothing of it.)
            assert SECRET not in fra.locator("body").inner_text()
            assert "REL TO USA, GBR" not in fra.locator("#messages").inner_text()
            assert secret_id not in fra.content()

            # Nothing of it ever reached the page: no response, no frame names the message
            # or its audience (so no envelope of it), or holds its ciphertext.
            received = seen.bodies() + seen.frames
            assert any(nato_id in text for text in received)  # what FRA may read did come
            assert any(nato_id in frame for frame in seen.frames)  # live, by the stream
            for secret in (secret_id, audience_id, sealed["body"], sealed["signature"]):
                assert not [text for text in received if secret in text]

            # The server's sync for chloe's page's device omits it too.
            (token,) = seen.tokens
            synced = httpx.get(
                f"{server.origin}/v1/sync",
                params={"after": 0},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert synced.status_code == 200
            assert nato_id in synced.text
            assert secret_id not in synced.text
            assert audience_id not in synced.text
            # As for chloe's other device, her SDK's.
            assert [m.text for m in _run(_reads(france.chloe, CHLOE_PASSPHRASE))] == [FOR_NATO]

            for page in (usa, gbr, fra):
                _no_violations(page)
            assert errors == []
        finally:
            browser.close()


def _attache(home: Path, passphrase: str) -> dict[str, str]:
    return {
        **os.environ,
        "ATTACHE_HOME": str(home),
        "ATTACHE_PASSPHRASE": passphrase,
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "200",
        "NO_COLOR": "1",
    }


def _cli(home: Path, passphrase: str, *args: str) -> str:
    """`attache ARGS` as a process of its own; its output, after it succeeded."""
    result = subprocess.run(
        [str(BIN / "attache"), *args],
        env=_attache(home, passphrase),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, f"attache {args}: exit {result.returncode}\n{result.stderr}"
    return result.stdout


class _Listening:
    """`attache listen --count N` running, its standard output read line by line."""

    def __init__(self, home: Path, passphrase: str, count: int) -> None:
        self.process = subprocess.Popen(
            [str(BIN / "attache"), "listen", "--count", str(count)],
            env=_attache(home, passphrase),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.text = ""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def expect(self, pattern: str) -> None:
        while re.search(pattern, self.text, re.MULTILINE) is None:
            try:
                line = self.lines.get(timeout=CLI_TIMEOUT)
            except queue.Empty:
                raise AssertionError(f"no {pattern!r} in time:\n{self.text}") from None
            if line is None:
                raise AssertionError(f"attache listen ended before {pattern!r}:\n{self.text}")
            self.text += line

    def finish(self) -> str:
        """What it wrote, once it ended by itself (having shown its count)."""
        assert self.process.wait(CLI_TIMEOUT) == 0, self.process.stderr
        while (line := self.lines.get(timeout=CLI_TIMEOUT)) is not None:
            self.text += line
        return self.text

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(CLI_TIMEOUT)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def test_a_message_from_the_cli_is_read_in_the_page_and_one_from_the_page_in_the_cli(
    chromium: str, server: Server, tmp_path: Path
) -> None:
    officer, code = _run(_officer_sets_up(server, tmp_path / "sam"))
    bob = officer.bob.home  # bob's device, enrolled by the SDK, is the CLI's home
    screens = _screens(tmp_path)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        listening: _Listening | None = None
        try:
            errors: list[str] = []
            page = _new_page(browser, errors)
            page.goto(server.origin)
            _run(_officer_certifies(officer, _enrol(page, "alice", code, PASSPHRASE)))
            _unlock(page, PASSPHRASE)
            expect(page.locator("#live")).to_have_text("Live.", timeout=SLOW)

            # Bob sends from his terminal; alice's page shows it live, verified.
            sent = _cli(
                bob, web.BOB_PASSPHRASE, "send", "--channel", "liaison", "--label", REL_USA_GBR,
                "From bob's terminal <b>as text</b>",
            )  # fmt: skip
            assert re.fullmatch(
                rf"sent #\d+ to liaison as {re.escape(REL_USA_GBR)}, released to 3 device\(s\)\n",
                sent,
            ), sent
            liaison = page.locator("#channels .channel-open", has_text="liaison")
            expect(liaison.locator(".unread")).to_have_text("1 unread", timeout=SLOW)
            liaison.click()
            item = page.locator("#messages .item")
            expect(item).to_have_count(1)
            expect(item.locator(".banner")).to_have_text([REL_USA_GBR, REL_USA_GBR])
            expect(item.locator(".item-body")).to_have_text("From bob's terminal <b>as text</b>")
            expect(item.locator(".item-meta")).to_contain_text("bob (GBR)")
            expect(page.locator("#messages .item-warning")).to_have_count(0)

            # Bob listens in his terminal; alice's page sends under REL TO FVEY.
            listening = _Listening(bob, web.BOB_PASSPHRASE, count=1)
            listening.expect(r"^listening as bob; Ctrl-C to stop$")
            page.get_by_role("form", name="Send a message").get_by_label("Label").select_option(
                "NATO SECRET//REL TO FVEY"
            )
            page.get_by_label("Message", exact=True).fill("From alice's page")
            page.get_by_role("button", name="Send").click()
            expect(page.locator("#compose-sent")).to_contain_text(
                "Sent as NATO SECRET//REL TO FVEY, released to: ", timeout=SLOW
            )
            expect(page.locator("#messages .item-body")).to_have_text(
                ["From bob's terminal <b>as text</b>", "From alice's page"], timeout=SLOW
            )
            page.screenshot(path=screens / "web-cli.png", full_page=True)
            shown = listening.finish()
            assert re.search(
                r"^NATO SECRET//REL TO FVEY\n"
                r"#\d+  from alice \(USA\)  .* UTC  in channel liaison  id .*\n"
                r"From alice's page\nNATO SECRET//REL TO FVEY$",
                shown,
                re.MULTILINE,
            ), shown

            # `attache read` verifies both (it exits 1 when any does not verify).
            read = _cli(bob, web.BOB_PASSPHRASE, "read", "--channel", "liaison")
            first, second = (block.splitlines() for block in read.strip().split("\n\n"))
            assert first[0] == first[3] == REL_USA_GBR
            assert re.match(r"#\d+  from bob \(GBR\)  ", first[1]), first[1]
            assert first[2] == "From bob's terminal <b>as text</b>"
            assert second[0] == second[3] == "NATO SECRET//REL TO FVEY"
            assert re.match(r"#\d+  from alice \(USA\)  ", second[1]), second[1]
            assert second[2] == "From alice's page"

            _no_violations(page)
            assert errors == []
        finally:
            if listening is not None:
                listening.stop()
            browser.close()
