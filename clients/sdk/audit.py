"""The auditor's toolkit: verify the audit log on your own machine, without trusting the server.

``verify_log`` downloads every leaf, recomputes each leaf hash from the event itself, rebuilds
the RFC 9162 root, checks the checkpoint's signature against the pinned audit key, and checks
that the log is consistent with the checkpoint verified last time (kept locally, with the leaf
hashes, so that an edited, deleted, reordered or inserted event is named by its index), and
checks every index column the server queries by against its leaf, naming the first that differs.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from clients.sdk._client import AttacheClient
from protocol import audit_index, keys, merkle
from protocol import checkpoint as notes
from protocol.canonical import canonical_json

PAGE = 10_000
IN_FLIGHT = 3


class AuditStateError(Exception):
    """The local record of past verifications is unusable."""


@dataclass
class VerifyReport:
    size: int = 0
    root: bytes = b""
    key_pinned_now: bool = False
    problems: list[str] = field(default_factory=list)
    first_bad_index: int | None = None
    previous_size: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, text: str, index: int | None = None) -> None:
        self.problems.append(text)
        if index is not None and (self.first_bad_index is None or index < self.first_bad_index):
            self.first_bad_index = index


class AuditState:
    """What this auditor verified before, per server: the pinned key, the last checkpoint and
    the leaf hashes it covered (32 bytes each)."""

    def __init__(self, home: Path, server: str) -> None:
        host = urlsplit(server).netloc.replace(":", "_") or "server"
        self.dir = home / "audit" / host

    def _path(self, name: str) -> Path:
        return self.dir / name

    def vkey(self) -> str | None:
        path = self._path("vkey")
        return path.read_text(encoding="utf-8").strip() if path.exists() else None

    def pin(self, vkey: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._path("vkey").write_text(vkey + "\n", encoding="utf-8")

    def checkpoint(self) -> tuple[int, bytes] | None:
        path = self._path("checkpoint.json")
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return int(data["size"]), keys.b64u_decode(data["root"])
        except (ValueError, KeyError, TypeError) as exc:
            raise AuditStateError(f"{path} is damaged: {exc}") from exc

    def leaf_hashes(self) -> bytes:
        path = self._path("leaves.bin")
        return path.read_bytes() if path.exists() else b""

    def save(self, size: int, root: bytes, hashes: bytes) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self._path("leaves.bin.tmp")
        tmp.write_bytes(hashes)
        os.replace(tmp, self._path("leaves.bin"))
        record = {"size": size, "root": keys.b64u_encode(root)}
        self._path("checkpoint.json").write_text(json.dumps(record), encoding="utf-8")


async def _verifier(
    client: AttacheClient, state: AuditState, vkey: str | None, report: VerifyReport
) -> notes.NoteVerifier:
    pinned = state.vkey()
    if vkey is not None and pinned is not None and vkey != pinned:
        raise AuditStateError(
            "the audit key given differs from the one pinned earlier; if the operator "
            f"rotated it, remove {state.dir / 'vkey'} after checking the new key out of band"
        )
    chosen = vkey or pinned
    if chosen is None:
        # Trust on first use, said aloud: the report tells the auditor to compare the key.
        chosen = str((await client.request("GET", "/v1/audit/key"))["vkey"])
        report.key_pinned_now = True
    verifier = notes.NoteVerifier.from_vkey(chosen)
    if pinned is None:
        state.pin(chosen)
    return verifier


async def verify_log(
    client: AttacheClient,
    home: Path,
    *,
    vkey: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    report = VerifyReport()
    state = AuditState(home, client.server)
    verifier = await _verifier(client, state, vkey, report)
    latest = await client.request("GET", "/v1/audit/checkpoint")
    try:
        # The checkpoint must be this log's: its origin is the pinned key's name (a key that
        # signed two logs' checkpoints would otherwise let one log pass for the other).
        signed = notes.open_checkpoint(latest["note"], [verifier], origin=verifier.name)
    except notes.CheckpointError as exc:
        report.problem(f"the checkpoint's signature does not verify with the pinned key: {exc}")
        return report
    report.size, report.root = signed.size, signed.root
    previous = state.checkpoint()
    cached = state.leaf_hashes()
    if previous is not None:
        report.previous_size = previous[0]
        if signed.size < previous[0]:
            report.problem(
                f"the log was rolled back: the signed checkpoint has {signed.size} leaves, "
                f"but {previous[0]} were verified here before",
                signed.size,
            )
            return report

    builder = merkle.RootBuilder()
    hashes = bytearray()

    async def fetch(start: int) -> Any:
        end = min(start + PAGE, signed.size)
        return await client.request("GET", "/v1/audit/leaves", params={"start": start, "end": end})

    # Pages are fetched ahead (IN_FLIGHT at a time), so that a server with several processes
    # serves them in parallel while this one hashes.
    starts = list(range(0, signed.size, PAGE))
    queue = deque(asyncio.create_task(fetch(start)) for start in starts[:IN_FLIGHT])
    ahead = iter(starts[IN_FLIGHT:])
    try:
        for start in starts:
            page = await queue.popleft()
            following = next(ahead, None)
            if following is not None:
                queue.append(asyncio.create_task(fetch(following)))
            shown = {int(leaf["index"]): leaf for leaf in page["leaves"]}
            for index in range(start, min(start + PAGE, signed.size)):
                leaf = shown.get(index)
                if leaf is None:
                    report.problem(f"leaf {index} is missing from the log", index)
                    digest = b"\x00" * 32
                else:
                    digest = _check_leaf(leaf, index, cached, report)
                builder.add(digest)
                hashes += digest
                if (
                    previous is not None
                    and builder.size == previous[0]
                    and builder.root() != previous[1]
                ):
                    report.problem(
                        f"the first {previous[0]} leaves no longer hash to the root verified "
                        "before: history was rewritten",
                        _first_difference(cached, bytes(hashes)),
                    )
            if progress is not None:
                progress(builder.size, signed.size)
    finally:
        for task in queue:
            task.cancel()

    if builder.root() != signed.root:
        report.problem(
            "the leaves do not hash to the signed checkpoint's root",
            report.first_bad_index if report.first_bad_index is not None else None,
        )
    if previous is not None and previous[0] > 0 and signed.size >= previous[0]:
        proof = await client.request(
            "GET", "/v1/audit/proofs/consistency", params={"old": previous[0], "new": signed.size}
        )
        if not merkle.verify_consistency(
            previous[0],
            signed.size,
            previous[1],
            signed.root,
            [keys.b64u_decode(p) for p in proof["proof"]],
        ):
            report.problem(
                f"the signed checkpoint is not consistent with the one of size {previous[0]} "
                "verified before: the log forked or was rewritten"
            )
    if report.ok:
        state.save(signed.size, signed.root, bytes(hashes))
    return report


def _check_leaf(leaf: dict[str, Any], index: int, cached: bytes, report: VerifyReport) -> bytes:
    """The leaf hash to build the tree with: recomputed from the leaf bytes wherever they are
    shown; the server's stored hash only for leaves outside a nation-scoped auditor's view."""
    stored = keys.b64u_decode(leaf["hash"])
    status, data = leaf.get("status"), leaf.get("data")
    digest = stored
    if status == "shown" and isinstance(data, str):
        digest = merkle.leaf_hash(data.encode("utf-8"))
        if digest != stored:
            report.problem(f"leaf {index}: the event differs from what was logged", index)
        else:
            _check_columns(leaf, data, index, report)
    elif status == "missing":
        report.problem(f"leaf {index}: its event was deleted from the database", index)
    elif status != "out-of-scope":
        report.problem(f"leaf {index}: the server sent a malformed leaf", index)
    start = index * 32
    if start + 32 <= len(cached) and cached[start : start + 32] != digest:
        report.problem(f"leaf {index} changed since it was last verified here", index)
    return digest


def _check_columns(leaf: dict[str, Any], data: str, index: int, report: VerifyReport) -> None:
    """The event row's index columns, which queries select on, must say what its leaf says:
    otherwise a query could be steered to find or hide the event. Names the first that
    differs."""
    columns = leaf.get("columns")
    try:
        event = json.loads(data)
    except ValueError:
        report.problem(f"leaf {index}: the logged event is not JSON", index)
        return
    if not isinstance(event, dict):
        report.problem(f"leaf {index}: the logged event is not a JSON object", index)
        return
    name = f"event {leaf.get('event', '?')} ({event.get('uid')})"
    if not isinstance(columns, dict):
        report.problem(f"leaf {index}, {name}: the server sent no index columns", index)
        return
    differs = audit_index.first_difference(event, columns)
    if differs is not None:
        column, says, logged = differs
        report.problem(
            f"leaf {index}, {name}: column {column} says {says!r} but the logged event says "
            f"{logged!r}: queries on it were steered",
            index,
        )


def _first_difference(before: bytes, now: bytes) -> int | None:
    for i in range(0, min(len(before), len(now)), 32):
        if before[i : i + 32] != now[i : i + 32]:
            return i // 32
    return None


@dataclass(frozen=True)
class InclusionResult:
    event: dict[str, Any]
    index: int
    size: int


async def prove_event(
    client: AttacheClient, home: Path, event_id: int, *, vkey: str | None = None
) -> InclusionResult:
    """Check locally that ``event_id``, as the server shows it, is in the signed log."""
    report = VerifyReport()
    state = AuditState(home, client.server)
    verifier = await _verifier(client, state, vkey, report)
    events: list[dict[str, Any]] = []
    # The server leaves reads of the log out of a query unless asked for them by action.
    for action in (None, "audit.read"):
        params: dict[str, Any] = {"after": event_id - 1, "limit": 1}
        if action is not None:
            params["action"] = action
        found = await client.request("GET", "/v1/audit/events", params=params)
        events = [e for e in found["events"] if e["id"] == event_id]
        if events:
            break
    if not events:
        raise AuditStateError(f"event {event_id} is not visible to you")
    event = events[0]["event"]
    latest = await client.request("GET", "/v1/audit/checkpoint")
    signed = notes.open_checkpoint(latest["note"], [verifier], origin=verifier.name)
    proof = await client.request(
        "GET", "/v1/audit/proofs/inclusion", params={"event": event_id, "size": signed.size}
    )
    if not merkle.verify_inclusion(
        merkle.leaf_hash(canonical_json(event)),
        int(proof["index"]),
        signed.size,
        [keys.b64u_decode(p) for p in proof["proof"]],
        signed.root,
    ):
        raise AuditStateError(
            f"event {event_id} as shown is NOT in the signed log of size {signed.size}"
        )
    return InclusionResult(event=event, index=int(proof["index"]), size=signed.size)
