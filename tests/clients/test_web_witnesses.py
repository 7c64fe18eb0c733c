"""Witnesses' cosignatures required by the page (issue 13, items 4 to 6; docs/web.md,
PROTOCOL.md §19.4 "Required witnesses"), in a real Chromium (Debian's, driven by Playwright)
against a real `attache-server run` that integrates every second.

Alice enrols her page requiring USA's witness (its vkey typed into the enrolment form), which
the page keeps beside the pinned audit key. The witness runs as nations run it
(``clients.sdk.witness.cosign_latest``, through audrey's auditor session) once alice's device
is logged; the page then asks each device's bundle at the latest checkpoint the witness
cosigned and seals to liaison. The server is then made to lie, as test_required_witnesses.py
plays it against the SDK and the CLI: it serves the key directory's checkpoint with the
witness's cosignature stripped, then with it forged (the witness's name and key id, another
signature). Each time the page refuses the whole directory with a sentence naming the witness
(missing, forged), POSTs no audience and no message, and keeps the checkpoint it had. Last,
the user drops the witness on the unlock screen: refused as a loosening until confirmed. The Node
tests (test/witnesses.test.ts, test/cosignature.test.ts) play the rest: too old, a stranger's
cosignature only, policy proofs.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from playwright.sync_api import Page, Route, expect, sync_playwright

from clients.sdk import Keystore, certify_device, connect, enroll
from clients.sdk.witness import cosign_latest
from protocol import keys
from protocol.cosignature import CosignatureSigner
from tests.clients import test_web_e2e as web
from tests.clients.test_web_e2e import (
    OFFICER_PASSPHRASE,
    PASSPHRASE,
    REL_USA_GBR,
    SLOW,
    WATCH_VIOLATIONS,
    Officer,
    Server,
    _no_violations,
    _officer_certifies,
    _officer_sets_up,
    _run,
    _screens,
    _unlock,
)
from tests.clients.test_web_transparency import READ_PIN, _open_liaison, _Posts, _wait_logged

# The fixtures of test_web_e2e.py: Debian's Chromium, and the server `make run` starts.
chromium = web.chromium
server = web.server

AUDITOR_PASSPHRASE = "audrey's device passphrase"
WITNESS = "witness.usa.example/w1"
EM_DASH = "\u2014"


async def _auditor_joins(server: Server, officer: Officer, home: Path) -> Keystore:
    """Sam adds audrey, USA's auditor, whose session USA's witness uses; her SDK device,
    certified."""
    async with await connect(officer.keystore, passphrase=OFFICER_PASSPHRASE) as client:
        await client.create_user(
            username="audrey", nationality="USA", clearance="NATO SECRET", roles=["auditor"]
        )
        issued = await client.issue_enrolment_code("audrey")
        audrey = Keystore(home, kdf=keys.KdfParams.for_tests())
        await enroll(
            server.origin,
            username="audrey",
            code=str(issued["code"]),
            device_name="audrey-laptop",
            passphrase=AUDITOR_PASSPHRASE,
            keystore=audrey,
        )
        pending = [d for d in await client.devices(status="pending") if d["username"] == "audrey"]
        await certify_device(client, "USA", officer.authority, pending[0])
        return audrey


async def _witness_cosigns(
    server: Server, auditor: Keystore, signer: CosignatureSigner, state: Path
) -> int:
    """Once everything written so far is logged, the witness cosigns the latest checkpoint;
    its size."""
    await _wait_logged(server)
    async with await connect(auditor, passphrase=AUDITOR_PASSPHRASE) as client:
        done = await cosign_latest(client, signer, state, now=time.time())
    return done.size


def _enrol_requiring(page: Page, code: str, vkey: str) -> str:
    """Alice enrols the page, requiring the witness; the fingerprint it shows."""
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Enrolment code").fill(code)
    page.get_by_label("A name for this device").fill("alice-browser")
    page.get_by_label("Passphrase (protects this device's keys)").fill(PASSPHRASE)
    page.get_by_label("The same passphrase again").fill(PASSPHRASE)
    page.get_by_label("Witness keys, one a line").fill(vkey)
    page.get_by_role("button", name="Enrol").click()
    expect(page.locator("#status")).to_contain_text("awaits certification", timeout=SLOW)
    return page.locator("#fingerprint").inner_text()


class _Lie:
    """The key directory's bundles as the server serves them, the witness's cosignature line
    stripped from the checkpoint note ("strip") or its signature changed ("forge")."""

    def __init__(self, how: str) -> None:
        self.how = how
        self.served = 0

    def __call__(self, route: Route) -> None:
        response = route.fetch()
        bundle: dict[str, Any] = response.json()
        lines = bundle["checkpoint"]["note"].split("\n")
        prefix = f"{EM_DASH} {WITNESS} "
        mine = [i for i, line in enumerate(lines) if line.startswith(prefix)]
        assert mine, "the server served no cosignature of the witness to tamper with"
        for i in reversed(mine):
            if self.how == "strip":
                del lines[i]
            else:
                blob = bytearray(base64.b64decode(lines[i][len(prefix) :]))
                blob[-1] ^= 0x01  # key id and time kept: the witness's line, falsely signed
                lines[i] = prefix + base64.b64encode(bytes(blob)).decode("ascii")
        bundle["checkpoint"]["note"] = "\n".join(lines)
        self.served += 1
        route.fulfill(response=response, body=json.dumps(bundle))


def test_the_page_requires_the_witness_cosignatures_it_was_given(
    chromium: str, server: Server, tmp_path: Path
) -> None:
    officer, code = _run(_officer_sets_up(server, tmp_path / "sam"))
    auditor = _run(_auditor_joins(server, officer, tmp_path / "audrey"))
    signer = CosignatureSigner(WITNESS, Ed25519PrivateKey.generate())
    vkey = httpx.get(f"{server.origin}/v1/audit/key").json()["vkey"]
    bob = officer.bob.profile().device_id
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
            bundles: list[str] = []
            page.on(
                "request",
                lambda request: (
                    bundles.append(request.url) if "/transparency?" in request.url else None
                ),
            )
            page.goto(server.origin)

            # A witness key that is none is refused before anything is registered.
            page.get_by_label("Witness keys, one a line").fill("nonsense")
            page.get_by_label("Username").fill("alice")
            page.get_by_label("Enrolment code").fill(code)
            page.get_by_label("Passphrase (protects this device's keys)").fill(PASSPHRASE)
            page.get_by_label("The same passphrase again").fill(PASSPHRASE)
            page.get_by_role("button", name="Enrol").click()
            expect(page.locator("#problem")).to_have_text(
                "Not enrolled: witness key 'nonsense': a witness key is <name>+<key id>+<key>.",
                timeout=SLOW,
            )
            page.reload()

            # Enrolment keeps the witness required beside the audit key, and says so.
            fingerprint = _enrol_requiring(page, code, signer.vkey())
            expect(page.locator("#status")).to_contain_text(
                f"Witnesses required: 1 of 1 ({WITNESS})."
            )
            expect(page.locator("#witnesses-required")).to_contain_text(f"1 of 1 ({WITNESS})")
            assert page.evaluate(READ_PIN) == {
                "vkey": vkey,
                "checkpoint": None,
                "witnesses": {"keys": [signer.vkey()], "min": None, "max_age": None},
            }
            _run(_officer_certifies(officer, fingerprint))
            cosigned = _run(_witness_cosigns(server, auditor, signer, tmp_path / "witness.json"))

            # An honest server and a witness that ran: the page asks each bundle at the
            # checkpoint the witness cosigned, and seals.
            _unlock(page, PASSPHRASE)
            expect(page.locator("#whoami")).to_contain_text("Signed in as alice", timeout=SLOW)
            _open_liaison(page)
            everyone = "alice (USA), bob (GBR), sam (USA) (3 devices)."
            expect(page.locator("#compose-reach")).to_have_text(
                f"Will be released to: {everyone}", timeout=SLOW
            )
            page.get_by_label("Message", exact=True).fill("witnessed")
            page.get_by_role("button", name="Send").click()
            expect(page.locator("#compose-sent")).to_have_text(
                f"Sent as {REL_USA_GBR}, released to: {everyone}", timeout=SLOW
            )
            assert bob in posts.sealed_to()
            assert bundles
            asked = f"witness={WITNESS.replace('/', '%2F')}&min_witnesses=1"
            assert all(asked in url for url in bundles), bundles
            kept = page.evaluate(READ_PIN)
            assert kept["checkpoint"]["size"] == cosigned
            assert kept["witnesses"]["keys"] == [signer.vkey()]

            # The server lies: the witness's cosignature stripped, then forged.
            reach = page.locator("#compose-reach")
            problem = page.locator("#problem")
            for how, named in (
                ("strip", f"(missing: {WITNESS})"),
                ("forge", f"the cosignature of witness {WITNESS} does not verify with its "),
            ):
                lie = _Lie(how)
                page.route("**/v1/devices/*/transparency?*", lie)
                page.reload()
                expect(page.locator("#status")).to_contain_text("Unlock this device")
                posts.audiences.clear()
                posts.messages.clear()
                _unlock(page, PASSPHRASE)
                expect(page.locator("#whoami")).to_contain_text("Signed in as alice", timeout=SLOW)
                _open_liaison(page)
                refused = (
                    "Not sent: the server's key directory is refused: the checkpoint of size "
                    f"{cosigned} lacks the witnesses' cosignatures this device requires: "
                )
                expect(reach).to_contain_text(refused, timeout=SLOW)
                expect(reach).to_contain_text(named)
                page.get_by_label("Message", exact=True).fill("never sealed")
                page.get_by_role("button", name="Send").click()
                expect(problem).to_contain_text(refused, timeout=SLOW)
                expect(problem).to_contain_text(named)
                page.screenshot(path=screens / f"web-witness-{how}.png", full_page=True)
                assert lie.served > 0
                assert posts.audiences == []
                assert posts.messages == []
                assert page.evaluate(READ_PIN)["checkpoint"] == kept["checkpoint"]
                page.unroute("**/v1/devices/*/transparency?*", lie)

            # The user may change the witnesses before signing in; dropping them is a
            # loosening, refused until confirmed (the CLI's --force).
            page.reload()
            expect(page.locator("#status")).to_contain_text("Unlock this device")
            page.get_by_text("Change the witnesses required").click()
            keys_field = page.get_by_label("Witnesses to require, one key a line")
            expect(keys_field).to_have_value(signer.vkey())
            keys_field.fill("")
            page.get_by_role("button", name="Keep these witnesses").click()
            expect(problem).to_have_text(
                "Not changed: that loosens the witnesses required here (no witness would be "
                'required any more): say so with "Loosen anyway".',
                timeout=SLOW,
            )
            assert page.evaluate(READ_PIN)["witnesses"]["keys"] == [signer.vkey()]
            page.get_by_label("Loosen anyway").check()
            page.get_by_role("button", name="Keep these witnesses").click()
            expect(page.locator("#status")).to_have_text("No witness is required any more.")
            expect(page.locator("#witnesses-required")).to_contain_text("None")
            assert "witnesses" not in page.evaluate(READ_PIN)

            _no_violations(page)
            assert errors == []
        finally:
            browser.close()
