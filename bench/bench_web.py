"""Benchmark of the browser client (issue 12): the page's cost per received message and per MiB
of document, beside the SDK's, measured in the same run.

Run: ``.venv/bin/python bench/bench_web.py [--messages N] [--runs R] [--mib M]`` (``make
bench-web``: 200 messages, 5 runs, 16 MiB). Needs Debian's Chromium (/usr/bin/chromium) and
``clients/web/node_modules`` (``npm ci`` in clients/web, for esbuild). Writes
``bench/results/web.json`` and ``web.md``; every repeated figure is the median of its runs with
the minimum and maximum, and is also stated as a multiple of V, the CPU time of one Ed25519
verification with pyca/cryptography measured in this run. Not part of the test suite.

Set-up, as tests/clients/test_web_e2e.py does it and with its helpers: a real `attache-server
run` on SQLite of its own (rate limits raised out of reach); USA and GBR with their officers,
sam and bob (SDK devices), and alice, whose device is the page: she enrols in headless
Chromium (Playwright) with a one-time code, sam certifies the fingerprint the page shows, and
the page unlocks, signs in and goes live on ``/v1/stream``. Sam made the channel and is in it,
so every message is sealed to alice's page and to sam's SDK device alike.

(a) Per received message. Per run, bob (the SDK, in this process) sends N messages labelled
``NATO SECRET//REL TO USA, GBR`` to ``liaison`` while alice's page sits on its channel list; the
page receives each over the websocket, verifies and opens it exactly as it does for a user
(certificate, audience, envelope, signature, key commitment, decryption, label against the
catalog, banner) and counts it unread. Measured: the CPU time (utime + stime from
``/proc/<pid>/stat``) of Chromium's renderer processes from just before the first send until
the page shows N more unread, minus the renderer's idle CPU over a window as long (pings,
timers, the wait's own polling every 100 ms), divided by N. The renderer, from outside, because
the bundle exposes no function to call and this benchmark does not change the page to add one:
what is measured is the page's whole receive path (frame parsing, JSON, the protocol, the inbox,
the channel list's redraw), not the protocol alone. Chromium's other processes (browser,
network service, GPU) are reported as well. Not included: drawing the items of an open channel
(the page redraws the open channel's list on every arrival; the figure is taken on the channel
list). Beside it, the SDK: sam's ``Messenger.sync()`` over the same N messages, CPU time of its
thread (``time.thread_time``: fetch, JSON, ``open_item`` for each), after a first sync of the
same messages so that both sides have the sender's certificate verified already.

(b) Per MiB of document. The SDK's ``protocol.stream.DocumentEncryptor`` seals an M MiB
document (64 KiB chunks). The SDK's cost: ``DocumentDecryptor.with_audience_key`` (header,
signature, key commitment) and ``decrypt_chunks`` over the ciphertext in 1 MiB pieces, CPU of
this process. The page's cost: the same bytes through the page's own TypeScript protocol code,
``DocumentDecryptor.withAudienceKey`` and ``decryptChunks`` from clients/web/src/protocol,
bundled for this benchmark with the same esbuild and options as the page (the page's bundle
exports nothing), loaded in a page of its own on the server's origin (served by Playwright's
route, no CSP), the ciphertext fetched into memory first; timed with ``performance.now()``
around the decryption (wall time: WebCrypto's AES-GCM runs off the main thread), with the
renderer's CPU from /proc over the same calls beside it. This is the protocol-level
decryption: the committee UI's download into the origin-private file system is not built yet.
The page's own V (``ed25519Verify`` of @noble/curves in the page) is reported too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import process_tree, spread, unbind_rate_limits
from cryptography.hazmat.primitives.asymmetric import ed25519

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

from clients.sdk import Messenger  # noqa: E402
from protocol import keys  # noqa: E402
from protocol.catalog import load_default_catalog  # noqa: E402
from protocol.labels import parse_label  # noqa: E402
from protocol.stream import DocumentDecryptor, DocumentEncryptor  # noqa: E402
from server.settings import Settings  # noqa: E402
from tests.clients import test_web_e2e as e2e  # noqa: E402
from tests.clients.server_process import attache_server_run, free_port  # noqa: E402

RESULTS = ROOT / "bench" / "results"
WEB = ROOT / "clients" / "web"
TICK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024
BENCH_PATH = "/__bench/"


_run = e2e._run  # an SDK coroutine in a thread of its own (Playwright's loop is here)


def cpu_of(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def chromium_processes() -> dict[str, list[int]]:
    """Chromium's processes under this one (Playwright's driver starts the browser), renderers
    apart."""
    found: dict[str, list[int]] = {"renderer": [], "chromium": []}
    for pid in process_tree(os.getpid()):
        with contextlib.suppress(OSError):
            # Chromium's children rewrite their command line as one string.
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").split()
            if not command or b"chrom" not in command[0]:
                continue
            found["chromium"].append(pid)
            if b"--type=renderer" in command:
                found["renderer"].append(pid)
    return found


def per_op(fn: Any, n: int, batches: int = 7) -> dict[str, float]:
    """CPU seconds of one call of ``fn``: median (and spread) of ``batches`` batches of ``n``."""
    fn()
    results = []
    for _ in range(batches):
        start = time.process_time()
        for _ in range(n):
            fn()
        results.append((time.process_time() - start) / n)
    return spread(results)


def measure_v() -> dict[str, float]:
    signer = ed25519.Ed25519PrivateKey.generate()
    public, data = signer.public_key(), secrets.token_bytes(64)
    signature = signer.sign(data)
    return per_op(lambda: public.verify(signature, data), 2000)


@contextlib.contextmanager
def attache_server(home: Path) -> Iterator[e2e.Server]:
    """`attache-server run` on SQLite of its own, as `make run` starts it (and the e2e test)."""
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    settings = Settings(
        data_dir=home / "var",
        database_url=f"sqlite+aiosqlite:///{home / 'attache.db'}",
        port=port,
    )
    env = {
        **os.environ,
        "ATTACHE_DATA_DIR": str(settings.data_dir),
        "ATTACHE_DATABASE_URL": settings.effective_database_url,
        "ATTACHE_PORT": str(port),
        "NO_COLOR": "1",
    }
    with attache_server_run(env, origin, home / "server.log"):
        yield e2e.Server(origin, settings)


# --- (a) messages ----------------------------------------------------------------------------


async def bob_sends(officer: e2e.Officer, count: int, run: int) -> None:
    async with await Messenger.open(officer.bob, passphrase=e2e.BOB_PASSPHRASE) as messenger:
        for i in range(count):
            text = f"run {run}, message {i}: the convoy leaves at 06:00 from gate 3."
            await messenger.send("liaison", text, label=e2e.REL_USA_GBR)


async def sam_syncs(officer: e2e.Officer, after: int, expected: int) -> tuple[float, int]:
    """CPU seconds of this thread for one ``sync`` of the messages after ``after`` (once
    synced before, untimed, so that the sender's certificate is verified already), and the
    cursor after them."""
    async with await Messenger.open(officer.keystore, passphrase=e2e.OFFICER_PASSPHRASE) as m:
        warm = await m.sync(after=after)
        start = time.thread_time()
        found = await m.sync(after=after)
        cpu = time.thread_time() - start
        assert len(found) == len(warm) == expected, (len(found), expected)
        assert all(message.verified for message in found), [m.problem for m in found]
        return cpu, m.cursor


async def sam_cursor(officer: e2e.Officer) -> int:
    async with await Messenger.open(officer.keystore, passphrase=e2e.OFFICER_PASSPHRASE) as m:
        await m.sync(after=0)
        return m.cursor


def page_unread(page: Page) -> int:
    return int(
        page.evaluate(
            "() => Number(document.querySelector('#channels .channel-open .unread')"
            "?.dataset.unread ?? 0)"
        )
    )


def messages_bench(
    page: Page, officer: e2e.Officer, count: int, runs: int
) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {
        "page_renderer": [],
        "page_chromium": [],
        "page_wall": [],
        "renderer_idle_per_second": [],
        "sdk": [],
    }
    cursor = _run(sam_cursor(officer))
    for run in range(runs):
        before = page_unread(page)
        procs = chromium_processes()
        # Idle first: the renderer's CPU with nothing arriving, polled as the wait polls.
        idle_start, idle_t = cpu_of(procs["renderer"]), time.monotonic()
        with contextlib.suppress(Exception):
            page.wait_for_function("() => false", polling=100, timeout=3000)
        idle_rate = (cpu_of(procs["renderer"]) - idle_start) / (time.monotonic() - idle_t)
        r0, c0, t0 = cpu_of(procs["renderer"]), cpu_of(procs["chromium"]), time.monotonic()
        _run(bob_sends(officer, count, run))
        page.wait_for_function(
            "(n) => Number(document.querySelector('#channels .channel-open .unread')"
            "?.dataset.unread ?? 0) >= n",
            arg=before + count,
            polling=100,
            timeout=600_000,
        )
        wall = time.monotonic() - t0
        renderer = cpu_of(procs["renderer"]) - r0
        browser = cpu_of(procs["chromium"]) - c0
        assert page_unread(page) == before + count
        out["page_renderer"].append((renderer - idle_rate * wall) / count)
        out["page_chromium"].append((browser - idle_rate * wall) / count)
        out["page_wall"].append(wall)
        out["renderer_idle_per_second"].append(idle_rate)
        sdk_cpu, cursor_after = _run(sam_syncs(officer, cursor, count))
        cursor = cursor_after
        out["sdk"].append(sdk_cpu / count)
        print(
            f"  run {run + 1}: page renderer {out['page_renderer'][-1] * 1e3:.2f} ms/message "
            f"(Chromium {out['page_chromium'][-1] * 1e3:.2f}), SDK {sdk_cpu / count * 1e3:.2f} "
            f"ms/message; {count} received in {wall:.1f} s",
            flush=True,
        )
    return out


# --- (b) documents ---------------------------------------------------------------------------


BENCH_ENTRY = """
import {{ ContentHasher, DocumentDecryptor, ed25519Sign, ed25519PublicKey, ed25519Verify }} from
  {index};
globalThis.attacheBench = {{
  ContentHasher, DocumentDecryptor, ed25519Sign, ed25519PublicKey, ed25519Verify,
}};
"""

BENCH_HTML = (
    '<!doctype html><meta charset="utf-8"><title>bench</title>'
    '<script type="module" src="protocol.js"></script>'
)

DECRYPT_IN_PAGE = """
async ({ runs }) => {
  const P = globalThis.attacheBench;
  const b64u = (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")),
    (c) => c.charCodeAt(0));
  if (globalThis.attacheDocument === undefined) {
    globalThis.attacheDocument = {
      meta: await (await fetch("meta.json")).json(),
      ciphertext: new Uint8Array(await (await fetch("ciphertext")).arrayBuffer()),
    };
  }
  const { meta, ciphertext } = globalThis.attacheDocument;
  const audienceKey = b64u(meta.audience_key);
  const signingKey = b64u(meta.signing_key);
  const piece = 1024 * 1024;
  function* pieces() {
    for (let at = 0; at < ciphertext.length; at += piece) {
      yield ciphertext.subarray(at, at + piece);
    }
  }
  const times = [];
  let size = 0;
  for (let run = 0; run < runs; run++) {
    const start = performance.now();
    const decryptor = await P.DocumentDecryptor.withAudienceKey(
      meta.header, meta.trailer, audienceKey, signingKey);
    size = 0;
    for await (const plain of decryptor.decryptChunks(pieces())) size += plain.length;
    times.push((performance.now() - start) / 1000);
  }
  return { times, size };
}
"""

HASH_IN_PAGE = """
() => {
  const hasher = new globalThis.attacheBench.ContentHasher();
  const { ciphertext } = globalThis.attacheDocument;
  const start = performance.now();
  for (let at = 0; at < ciphertext.length; at += 65552) {
    hasher.update(ciphertext.subarray(at, at + 65552));
  }
  hasher.digest();
  return (performance.now() - start) / 1000;
}
"""

VERIFY_IN_PAGE = """
({ n, batches }) => {
  const P = globalThis.attacheBench;
  const seed = crypto.getRandomValues(new Uint8Array(32));
  const data = crypto.getRandomValues(new Uint8Array(64));
  const key = P.ed25519PublicKey(seed);
  const signature = P.ed25519Sign(seed, data);
  for (let i = 0; i < 50; i++) P.ed25519Verify(key, signature, data);
  const out = [];
  for (let b = 0; b < batches; b++) {
    const start = performance.now();
    for (let i = 0; i < n; i++) {
      if (!P.ed25519Verify(key, signature, data)) throw new Error("does not verify");
    }
    out.push((performance.now() - start) / 1000 / n);
  }
  return out;
}
"""


def bench_bundle(out: Path) -> bytes:
    """The page's protocol code (clients/web/src/protocol), bundled with the page's esbuild and
    options, exporting what the benchmark calls onto ``globalThis``."""
    esbuild = WEB / "node_modules" / ".bin" / "esbuild"
    if not esbuild.exists():
        raise SystemExit("clients/web/node_modules is missing: cd clients/web && npm ci")
    entry = out / "entry.ts"
    index = json.dumps(str(WEB / "src" / "protocol" / "index.ts"))
    entry.write_text(BENCH_ENTRY.format(index=index))
    bundle = out / "protocol.js"
    subprocess.run(
        [str(esbuild), str(entry), "--bundle", "--format=esm", "--platform=browser",
         "--target=chrome120,firefox121,safari17", "--minify", "--charset=utf8",
         "--log-level=warning", f"--outfile={bundle}"],
        check=True,
    )  # fmt: skip
    return bundle.read_bytes()


def sealed_document(mib: int) -> tuple[dict[str, Any], bytes, bytes]:
    """A document of ``mib`` MiB sealed by the SDK's protocol code: the metadata the page needs
    (header, trailer, audience key, sender's signing key), the ciphertext, the plaintext."""
    sender = keys.DeviceKeys.generate()
    audience_key = secrets.token_bytes(32)
    plaintext = secrets.token_bytes(mib * MIB)
    label = parse_label(e2e.REL_USA_GBR, load_default_catalog(), originator="USA")
    encryptor = DocumentEncryptor(
        sender,
        audience_key,
        document_id=str(uuid.uuid4()),
        version_id=str(uuid.uuid4()),
        version_number=1,
        container=str(uuid.uuid4()),
        sender_user="sam",
        sender_device=str(uuid.uuid4()),
        audience_id=str(uuid.uuid4()),
        created_at=datetime.now(UTC),
        label=label,
        filename="agenda.pdf",
        content_type="application/pdf",
        size=len(plaintext),
    )
    view = memoryview(plaintext)
    ciphertext = b"".join(
        encryptor.encrypt_chunks(view[i : i + MIB] for i in range(0, len(view), MIB))
    )
    meta = {
        "header": encryptor.header,
        "trailer": encryptor.finish().to_json(),
        "audience_key": keys.b64u_encode(audience_key),
        "signing_key": keys.b64u_encode(sender.public().signing_key),
    }
    return meta, ciphertext, plaintext


def sdk_decrypt(meta: dict[str, Any], ciphertext: bytes, plaintext: bytes) -> float:
    from protocol.stream import SealedDocumentTrailer

    view = memoryview(ciphertext)
    start = time.process_time()
    decryptor = DocumentDecryptor.with_audience_key(
        meta["header"],
        SealedDocumentTrailer.from_json(meta["trailer"]),
        keys.b64u_decode(meta["audience_key"]),
        keys.b64u_decode(meta["signing_key"]),
    )
    size = 0
    for chunk in decryptor.decrypt_chunks(view[i : i + MIB] for i in range(0, len(view), MIB)):
        size += len(chunk)
    decryptor.finish()
    cpu = time.process_time() - start
    assert size == len(plaintext)
    return cpu


def documents_bench(browser: Any, origin: str, mib: int, runs: int, work: Path) -> dict[str, Any]:
    bundle = bench_bundle(work)
    meta, ciphertext, plaintext = sealed_document(mib)
    files = {
        "index.html": (BENCH_HTML.encode(), "text/html"),
        "protocol.js": (bundle, "text/javascript"),
        "meta.json": (json.dumps(meta).encode(), "application/json"),
        "ciphertext": (ciphertext, "application/octet-stream"),
    }

    def fulfil(route: Any) -> None:
        name = route.request.url.split(BENCH_PATH, 1)[1] or "index.html"
        body, kind = files[name]
        route.fulfill(status=200, body=body, content_type=kind)

    context = browser.new_context()
    try:
        context.route(f"{origin}{BENCH_PATH}**", fulfil)
        page = context.new_page()
        page.goto(f"{origin}{BENCH_PATH}")
        page.wait_for_function("() => globalThis.attacheBench !== undefined")
        page_v = page.evaluate(VERIFY_IN_PAGE, {"n": 500, "batches": 7})
        # One call untimed (the fetches, the JIT), then each run.
        page.evaluate(DECRYPT_IN_PAGE, {"runs": 1})
        wall, cpu, hashing = [], [], []
        for _ in range(runs):
            renderers = chromium_processes()["renderer"]
            before = cpu_of(renderers)
            result = page.evaluate(DECRYPT_IN_PAGE, {"runs": 1})
            after = cpu_of(renderers)
            assert result["size"] == len(plaintext)
            wall.append(result["times"][0] / mib)
            cpu.append((after - before) / mib)
            hashing.append(page.evaluate(HASH_IN_PAGE) / mib)
        sdk_decrypt(meta, ciphertext, plaintext)
        sdk = [sdk_decrypt(meta, ciphertext, plaintext) / mib for _ in range(runs)]
    finally:
        context.close()
    return {
        "page_wall_per_mib": wall,
        "page_renderer_cpu_per_mib": cpu,
        "page_content_hash_per_mib": hashing,
        "page_v": page_v,
        "sdk_per_mib": sdk,
        "ciphertext_bytes": len(ciphertext),
    }


# --- the report ------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--mib", type=int, default=16)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        raise SystemExit("Debian's chromium is not installed (apt-get install chromium)")
    rate_note = unbind_rate_limits()
    v_before = measure_v()

    with tempfile.TemporaryDirectory(prefix="attache-bench-web-") as tmp:
        work = Path(tmp)
        with attache_server(work) as server, sync_playwright() as playwright:
            officer, code = _run(e2e._officer_sets_up(server, work / "sam"))
            browser = playwright.chromium.launch(executable_path=chromium, headless=True)
            try:
                page = browser.new_context(viewport={"width": 900, "height": 760}).new_page()
                page.goto(server.origin)
                expect(page.locator("#status")).to_contain_text("enrol it with the code")
                fingerprint = e2e._enrol(page, "alice", code, e2e.PASSPHRASE)
                _run(e2e._officer_certifies(officer, fingerprint))
                e2e._unlock(page, e2e.PASSPHRASE)
                expect(page.locator("#channels li")).to_have_count(2, timeout=e2e.SLOW)
                expect(page.locator("#live")).to_have_text("Live.", timeout=e2e.SLOW)
                print(f"(a) {args.messages} messages per run, {args.runs} runs", flush=True)
                messages = messages_bench(page, officer, args.messages, args.runs)
                print(f"(b) a {args.mib} MiB document, {args.runs} runs", flush=True)
                documents = documents_bench(browser, server.origin, args.mib, args.runs, work)
            finally:
                browser.close()
    v_after = measure_v()
    v = statistics.median([v_before["median"], v_after["median"]])
    chromium_version = subprocess.run(
        [chromium, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()

    def figure(values: list[float]) -> dict[str, float]:
        s = spread(values)
        return {**s, "v": s["median"] / v}

    results = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "chromium": chromium_version,
        },
        "v_seconds": {"before": v_before, "after": v_after, "used": v},
        "messages": {
            "count_per_run": args.messages,
            "runs": args.runs,
            "page_renderer_cpu_per_message": figure(messages["page_renderer"]),
            "page_all_chromium_cpu_per_message": figure(messages["page_chromium"]),
            "sdk_cpu_per_message": figure(messages["sdk"]),
            "page_receive_wall_seconds": spread(messages["page_wall"]),
            "renderer_idle_cpu_per_second": spread(messages["renderer_idle_per_second"]),
            "raw": messages,
        },
        "documents": {
            "mib": args.mib,
            "runs": args.runs,
            "ciphertext_bytes": documents["ciphertext_bytes"],
            "page_wall_per_mib": figure(documents["page_wall_per_mib"]),
            "page_renderer_cpu_per_mib": figure(documents["page_renderer_cpu_per_mib"]),
            "page_content_hash_per_mib": figure(documents["page_content_hash_per_mib"]),
            "sdk_cpu_per_mib": figure(documents["sdk_per_mib"]),
            "page_v_seconds": spread(documents["page_v"]),
            "raw": {
                k: documents[k]
                for k in (
                    "page_wall_per_mib",
                    "page_renderer_cpu_per_mib",
                    "page_content_hash_per_mib",
                    "sdk_per_mib",
                    "page_v",
                )
            },
        },
        "notes": [rate_note],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "web.json").write_text(json.dumps(results, indent=2) + "\n")
    report = markdown(results)
    (RESULTS / "web.md").write_text(report)
    print(report)


def markdown(r: dict[str, Any]) -> str:
    def cell(f: dict[str, float], unit: float = 1e3) -> str:
        return (
            f"{f['median'] * unit:.2f} ({f['min'] * unit:.2f} to {f['max'] * unit:.2f})"
            f" | {f['v']:.0f} V"
        )

    m, d = r["messages"], r["documents"]
    v = r["v_seconds"]["used"]
    page_v = d["page_v_seconds"]["median"]
    lines = [
        "# The browser client: cost per received message and per MiB (bench/bench_web.py)",
        "",
        f"{r['when']}, {r['machine']['platform']}, {r['machine']['cpus']} CPUs, "
        f"Python {r['machine']['python']}, {r['machine']['chromium']} (headless).",
        "",
        f"V = one Ed25519 verification (pyca/cryptography), this run: **{v * 1e6:.1f} µs** "
        f"CPU. In the page (@noble/curves, `ed25519Verify`): {page_v * 1e6:.1f} µs "
        f"= {page_v / v:.1f} V. Figures: median (min to max) of the runs.",
        "",
        f"## Per received message ({m['count_per_run']} messages a run, {m['runs']} runs)",
        "",
        "| | ms CPU per message | in V |",
        "|---|---|---|",
        "| page: Chromium renderer, whole receive path | "
        f"{cell(m['page_renderer_cpu_per_message'])} |",
        f"| page: all Chromium processes | {cell(m['page_all_chromium_cpu_per_message'])} |",
        "| SDK: `Messenger.sync()` (fetch, JSON, `open_item`) | "
        f"{cell(m['sdk_cpu_per_message'])} |",
        "",
        f"Page: {m['count_per_run']} received live over `/v1/stream` in "
        f"{m['page_receive_wall_seconds']['median']:.1f} s (median; the sender's pace); "
        "renderer CPU from /proc, its idle rate "
        f"({m['renderer_idle_cpu_per_second']['median'] * 1e3:.1f} ms/s) subtracted.",
        "",
        f"## Per MiB of document ({d['mib']} MiB, {d['ciphertext_bytes']:,} bytes of "
        f"ciphertext, {d['runs']} runs)",
        "",
        "| | ms per MiB | in V |",
        "|---|---|---|",
        "| page: `DocumentDecryptor` (TS), wall time, `performance.now()` | "
        f"{cell(d['page_wall_per_mib'])} |",
        f"| page: renderer CPU from /proc, same calls | {cell(d['page_renderer_cpu_per_mib'])} |",
        f"| of which, in the page: the content hash alone (`ContentHasher`, @noble/hashes "
        f"SHA-256), wall | {cell(d['page_content_hash_per_mib'])} |",
        f"| SDK: `protocol.stream.DocumentDecryptor`, CPU | {cell(d['sdk_cpu_per_mib'])} |",
        "",
        "Protocol-level decryption and verification (header, signature, key commitment, every "
        "chunk opened, the content hash) of a document the SDK sealed; the committee UI's "
        "download into the origin-private file system is not built yet.",
        "",
        *[f"{note}" for note in r["notes"]],
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
