"""The auditor's toolkit: verify the audit log on your own machine, without trusting the server.

``verify_log`` downloads every leaf, recomputes each leaf hash from the event itself, rebuilds
the RFC 9162 root, checks the checkpoint's signature against the pinned audit key, and checks
that the log is consistent with the checkpoint verified last time (kept locally, with the leaf
hashes, so that an edited, deleted, reordered or inserted event is named by its index), and
checks every index column the server queries by against its leaf, naming the first that differs,
and recomputes every key directory leaf from the device key events before it (PROTOCOL.md §19),
so that a directory that shows a revoked device as active, or keys the log never registered, is
named. It also holds the coalition policy's publications in the log to one chain (versions 1,
2, 3 ..., each naming the one before: PROTOCOL.md §18.6) and to the versions the server serves,
so that a version published twice (a fork), skipped, or served other than the log records it,
is named with its leaf.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from clients.sdk._client import ApiError, AttacheClient
from protocol import audit_index, keys, merkle
from protocol import checkpoint as notes
from protocol import policy_log as pl
from protocol import transparency as kt
from protocol.canonical import canonical_json
from protocol.coalition import (
    CoalitionPolicy,
    PolicyError,
    SignedPolicy,
    verify_founding,
    verify_successor,
)
from protocol.cosignature import CosignatureVerifier, check_witnesses

PAGE = 10_000
IN_FLIGHT = 3
#: Signed checkpoints kept to compare with other auditors' (the latest so many).
HELD = 1000


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
    # The pinned witnesses whose cosignatures of the checkpoint verified, and their times.
    witnesses: dict[str, int] = field(default_factory=dict)
    # The witnesses' checkpoint is a prefix of a larger log verified here before (without
    # them): nothing new was verified, and what was kept stands.
    behind: bool = False
    # Key directory leaves recomputed from the key events before them and found right; None
    # when they could not be (a nation-scoped auditor is not shown every key event).
    directories: int | None = 0
    # The coalition policy versions published in the log, in order: (version, digest b64u,
    # leaf index), each checked against the version the server serves.
    policy: list[tuple[int, str, int]] = field(default_factory=list)
    # Versions the server serves that are not in the checkpoint verified (published since,
    # or waiting for the integrator), proven to be in the log after it.
    policy_pending: list[int] = field(default_factory=list)

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

    def save(self, size: int, root: bytes, hashes: bytes, note: str | None = None) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self._path("leaves.bin.tmp")
        tmp.write_bytes(hashes)
        os.replace(tmp, self._path("leaves.bin"))
        record = {"size": size, "root": keys.b64u_encode(root)}
        self._path("checkpoint.json").write_text(json.dumps(record), encoding="utf-8")
        if note is not None:
            self._hold(note)

    def held(self) -> list[str]:
        """The signed checkpoint notes verified here (cosignatures included), oldest first:
        what ``attache audit checkpoints`` gives another auditor to compare."""
        path = self._path("checkpoints.json")
        if not path.exists():
            return []
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return [str(note) for note in data["checkpoints"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise AuditStateError(f"{path} is damaged: {exc}") from exc

    def _hold(self, note: str) -> None:
        # The same checkpoint served again with more cosignatures replaces its earlier copy.
        body = notes.split_note(note)[0]
        kept = [n for n in self.held() if notes.split_note(n)[0] != body]
        notes_held = [*kept[-(HELD - 1) :], note]
        tmp = self._path("checkpoints.json.tmp")
        tmp.write_text(json.dumps({"checkpoints": notes_held}, indent=1), encoding="utf-8")
        os.replace(tmp, self._path("checkpoints.json"))


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
    try:
        verifier = notes.NoteVerifier.from_vkey(chosen)
    except notes.CheckpointError as exc:
        raise AuditStateError(f"the audit key {chosen!r} is not a log's key: {exc}") from exc
    if pinned is None:
        state.pin(chosen)
    return verifier


async def verify_log(
    client: AttacheClient,
    home: Path,
    *,
    vkey: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    witnesses: Sequence[CosignatureVerifier] = (),
    min_witnesses: int | None = None,
    max_age: int | None = None,
) -> VerifyReport:
    """Verify the whole log (module docstring). With ``witnesses`` (their names and pinned
    keys), the checkpoint must also carry valid cosignatures of at least ``min_witnesses`` of
    them (all of them when None), and none of theirs forged; with ``max_age`` (seconds), a
    cosignature made longer ago than that does not count."""
    report = VerifyReport()
    required = len(witnesses) if min_witnesses is None else min_witnesses
    if required > len(witnesses):
        raise AuditStateError(
            f"{required} witnesses required but only {len(witnesses)} witness keys given"
        )
    state = AuditState(home, client.server)
    verifier = await _verifier(client, state, vkey, report)
    params: dict[str, Any] = {}
    if witnesses:
        # The witnesses run on their own schedule: the latest checkpoint they cosigned, which
        # is checked here as any other (a server that picks another fails the checks below).
        params = {"witness": [w.name for w in witnesses], "min_witnesses": required}
    try:
        latest = await client.request("GET", "/v1/audit/checkpoint", params=params)
    except ApiError as exc:
        if not witnesses or exc.status != 404:
            raise
        # None is: the latest is checked, so that what is missing or forged is named.
        latest = await client.request("GET", "/v1/audit/checkpoint")
    try:
        # The checkpoint must be this log's: its origin is the pinned key's name (a key that
        # signed two logs' checkpoints would otherwise let one log pass for the other).
        signed = notes.open_checkpoint(latest["note"], [verifier], origin=verifier.name)
    except notes.CheckpointError as exc:
        report.problem(f"the checkpoint's signature does not verify with the pinned key: {exc}")
        return report
    report.size, report.root = signed.size, signed.root
    if witnesses or required:
        # A checkpoint the witnesses did not cosign may be a view shown to this auditor alone.
        now = None if max_age is None else int(time.time())
        check = check_witnesses(latest["note"], witnesses, now=now, max_age=max_age)
        report.witnesses = dict(check.valid)
        for problem in check.problems(required):
            report.problem(f"checkpoint of size {signed.size}: {problem}")
    previous = state.checkpoint()
    cached = state.leaf_hashes()
    if previous is not None:
        report.previous_size = previous[0]
        if signed.size < previous[0] and witnesses and len(cached) >= previous[0] * 32:
            # The witnesses have not yet cosigned as far as was verified here (without them):
            # their checkpoint must then be a prefix of the leaves kept from that verification.
            prefix = [cached[i : i + 32] for i in range(0, signed.size * 32, 32)]
            if merkle.root(prefix) != signed.root:
                report.problem(
                    f"FORK: the witnesses' checkpoint of size {signed.size} is not a prefix of "
                    f"the {previous[0]} leaves verified here before"
                )
            report.behind = True
            return report
        if signed.size < previous[0]:
            report.problem(
                f"the log was rolled back: the signed checkpoint has {signed.size} leaves, "
                f"but {previous[0]} were verified here before",
                signed.size,
            )
            return report

    builder = merkle.RootBuilder()
    hashes = bytearray()
    directory = _DirectoryCheck(report)
    policy = _PolicyCheck(report)

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
                    directory.check(leaf, index)
                    policy.check(leaf, index)
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

    directory.finish(signed.size)
    await policy.finish(client, verifier, signed.size, signed.root)
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
        state.save(signed.size, signed.root, bytes(hashes), latest["note"])
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


class _DirectoryCheck:
    """Recomputes the key directory from the key events, in log order, and holds every
    ``keys.directory`` leaf to it (PROTOCOL.md §19.5). Only an auditor shown every leaf can:
    a nation-scoped one is not shown other nations' key events, so its check is skipped."""

    def __init__(self, report: VerifyReport) -> None:
        self.report = report
        self.directory = kt.KeyDirectory()
        self.last_directory: int | None = None
        self.complete = True

    def check(self, leaf: dict[str, Any], index: int) -> None:
        if not self.complete:
            return
        data = leaf.get("data")
        if leaf.get("status") != "shown" or not isinstance(data, str):
            self.complete = False
            self.report.directories = None
            return
        if '"action":"device.' not in data and f'"action":"{kt.DIRECTORY_ACTION}"' not in data:
            return  # the bytes of any other event: not parsed again
        try:
            event = kt.parse_leaf(data)
        except kt.TransparencyError:
            return  # named by the column check
        if kt.is_key_event(event):
            refused = self.directory.apply(index, event)
            if refused is not None:
                self.report.problem(
                    f"leaf {index}: a key event that does not fit: {refused}", index
                )
        elif event.get("action") == kt.DIRECTORY_ACTION:
            self.last_directory = index
            try:
                claimed = kt.parse_directory_leaf(event)
            except kt.TransparencyError as exc:
                self.report.problem(f"leaf {index}: a malformed key directory leaf: {exc}", index)
                return
            root, size = self.directory.root()
            if claimed != (root, size):
                self.report.problem(
                    f"leaf {index}: the key directory says root {claimed[0].hex()} of "
                    f"{claimed[1]} devices, but the key events before it give root "
                    f"{root.hex()} of {size}: the server showed a device's status or keys "
                    "falsely",
                    index,
                )
            elif self.report.directories is not None:
                self.report.directories += 1

    def finish(self, size: int) -> None:
        """Once a log has directory leaves, every checkpoint must end in one: else a key
        event after the last could be hidden from clients."""
        if self.complete and self.last_directory is not None and self.last_directory != size - 1:
            self.report.problem(
                f"the checkpoint of size {size} does not end in a key directory leaf (the last "
                f"is leaf {self.last_directory})",
                size - 1,
            )


class _PolicyCheck:
    """Holds the ``policy.publish`` leaves, in log order, to one chain (PROTOCOL.md §18.6),
    then each version the log publishes to the one the server serves (same digest, valid
    signatures from the founding version on), and each version the server serves beyond
    them to a publication in the log after the checkpoint verified."""

    def __init__(self, report: VerifyReport) -> None:
        self.report = report
        self.chain = pl.PolicyChain()

    def check(self, leaf: dict[str, Any], index: int) -> None:
        data = leaf.get("data")
        if leaf.get("status") != "shown" or not isinstance(data, str):
            return
        if f'"action":"{pl.PUBLISH_ACTION}"' not in data:
            return  # the bytes of any other event: not parsed again
        try:
            event = kt.parse_leaf(data)
        except kt.TransparencyError:
            return  # named by the column check
        problem = self.chain.apply(index, event)
        if problem is not None:
            self.report.problem(problem, index)

    async def finish(
        self, client: AttacheClient, verifier: notes.NoteVerifier, size: int, root: bytes
    ) -> None:
        current: CoalitionPolicy | None = None
        last = 0
        for version, logged in sorted(self.chain.versions.items()):
            self.report.policy.append((version, logged.publication.digest, logged.index))
            served = await self._served(client, version, f"leaf {logged.index}: ")
            if served is None:
                current = None
                continue
            if served.policy.digest_b64u != logged.publication.digest:
                self.report.problem(
                    f"leaf {logged.index}: the log publishes coalition policy version {version} "
                    f"with digest {logged.publication.digest}, but the server serves version "
                    f"{version} with digest {served.policy.digest_b64u}",
                    logged.index,
                )
            try:
                if version == 1:
                    current = verify_founding(served)
                elif current is not None and current.policy_version == version - 1:
                    current = verify_successor(current, served)
                else:
                    current = None  # after a gap or a refused version: named already
            except PolicyError as exc:
                self.report.problem(
                    f"leaf {logged.index}: coalition policy version {version} as served does not "
                    f"verify: {exc}",
                    logged.index,
                )
                current = None
            last = version
        latest = await self._served(client, None, "")
        if latest is None:
            return
        for version in range(last + 1, latest.policy.policy_version + 1):
            served = (
                latest
                if version == latest.policy.policy_version
                else await self._served(client, version, "")
            )
            if served is not None:
                await self._beyond(client, verifier, size, root, served.policy)

    async def _served(
        self, client: AttacheClient, version: int | None, where: str
    ) -> SignedPolicy | None:
        which = "latest version" if version is None else f"version {version}"
        try:
            raw = await client.policy(version)
        except ApiError as exc:
            self.report.problem(f"{where}the server's coalition policy {which}: {exc.detail}")
            return None
        if raw is None:
            if version is not None:
                self.report.problem(
                    f"{where}coalition policy version {version} is in the log, but the server "
                    "does not serve it"
                )
            return None
        try:
            return SignedPolicy.from_json(raw)
        except PolicyError as exc:
            self.report.problem(f"{where}the server's coalition policy {which} is malformed: {exc}")
            return None

    async def _beyond(
        self,
        client: AttacheClient,
        verifier: notes.NoteVerifier,
        size: int,
        root: bytes,
        policy: CoalitionPolicy,
    ) -> None:
        """A version served but not published in the log verified here: its publication must
        be in the log after this checkpoint (or wait for the integrator)."""
        version = policy.policy_version
        try:
            answer = await client.request(
                "GET", f"/v1/policy/{version}/proof", params={"old": size}
            )
        except ApiError as exc:
            if exc.status == 503:
                self.report.policy_pending.append(version)
                return
            self.report.problem(
                f"coalition policy version {version} is served, but the audit log does not "
                f"publish it (the server says: {exc.detail})"
            )
            return
        try:
            found = pl.verify_publication(
                answer, log_key=verifier, policy=policy, held=(size, root)
            )
        except kt.TransparencyError as exc:
            self.report.problem(f"coalition policy version {version} is served, but: {exc}")
            return
        if found.index < size:
            self.report.problem(
                f"leaf {found.index}: publishes coalition policy version {version}, but the "
                "server did not show it to you as one",
                found.index,
            )
            return
        self.report.policy_pending.append(version)


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


CHECKPOINTS_FORMAT = "attache-audit-checkpoints"


def export_checkpoints(home: Path, server: str) -> dict[str, Any]:
    """The signed checkpoints this auditor verified, for another auditor to compare
    (``compare_checkpoints``): ``{"format", "version", "vkey", "checkpoints": [note]}``."""
    state = AuditState(home, server)
    vkey = state.vkey()
    if vkey is None:
        raise AuditStateError("nothing verified here yet: run 'attache audit verify' first")
    return {"format": CHECKPOINTS_FORMAT, "version": 1, "vkey": vkey, "checkpoints": state.held()}


@dataclass
class CompareReport:
    agreed: int = 0  # their checkpoints that are checkpoints of the log verified here
    forks: list[str] = field(default_factory=list)  # proof that the server showed two logs
    unchecked: list[str] = field(default_factory=list)  # beyond what can be compared
    invalid: list[str] = field(default_factory=list)  # not signed by the pinned key: no proof

    @property
    def ok(self) -> bool:
        return not self.forks and not self.invalid


async def compare_checkpoints(
    client: AttacheClient | None, home: Path, server: str, other: Any
) -> CompareReport:
    """Compare another auditor's checkpoints (``export_checkpoints``'s form) with the log
    verified here. Each must be signed by the audit key pinned here, for this log's origin.

    A checkpoint no larger than the log verified here must have the root that the leaf hashes
    kept here give at its size: another root is a FORK (the server signed two histories). A
    larger one must extend the log verified here: with ``client``, the server is asked for an
    RFC 9162 consistency proof, and one that fails (or none) is a FORK of inconsistent sizes;
    without, it is left unchecked. Two of theirs of one size with two roots are a FORK too."""
    state = AuditState(home, server)
    vkey = state.vkey()
    mine = state.checkpoint()
    if vkey is None or mine is None:
        raise AuditStateError("nothing verified here yet: run 'attache audit verify' first")
    verifier = notes.NoteVerifier.from_vkey(vkey)
    if not isinstance(other, dict) or other.get("format") != CHECKPOINTS_FORMAT:
        raise AuditStateError(
            "not a file of checkpoints: ask the other auditor for the output of "
            "'attache audit checkpoints'"
        )
    theirs = other.get("checkpoints")
    if not isinstance(theirs, list) or not all(isinstance(n, str) for n in theirs):
        raise AuditStateError("the file's checkpoints are not a list of signed notes")
    report = CompareReport()
    my_size, my_root = mine
    hashes = state.leaf_hashes()
    tree = merkle.MerkleTree(hashes[i : i + 32] for i in range(0, my_size * 32, 32))
    if tree.size != my_size or tree.root() != my_root:
        raise AuditStateError(f"the leaf hashes kept in {state.dir} do not give the root kept")
    seen: dict[int, bytes] = {}
    for number, note in enumerate(theirs, start=1):
        try:
            checkpoint = notes.open_checkpoint(note, [verifier], origin=verifier.name)
        except notes.CheckpointError as exc:
            report.invalid.append(
                f"their checkpoint {number} is not signed by the audit key pinned here: {exc}"
            )
            continue
        size, root = checkpoint.size, checkpoint.root
        if size in seen and seen[size] != root:
            report.forks.append(
                f"FORK: two of their checkpoints have size {size} and different roots "
                f"({seen[size].hex()} and {root.hex()}), both signed by the log"
            )
        seen.setdefault(size, root)
        if size <= my_size:
            here = tree.root(size)
            if here == root:
                report.agreed += 1
            else:
                report.forks.append(
                    f"FORK: their checkpoint of size {size} has root {root.hex()}, but the log "
                    f"verified here has root {here.hex()} at that size"
                )
        elif client is None or my_size == 0:
            report.unchecked.append(
                f"their checkpoint of size {size} is beyond the {my_size} leaves verified here"
            )
        else:
            try:
                answer = await client.request(
                    "GET",
                    "/v1/audit/proofs/consistency",
                    params={"old": my_size, "new": size},
                )
                proof = [keys.b64u_decode(p) for p in answer["proof"]]
            except ApiError as exc:
                report.forks.append(
                    f"FORK: their checkpoint of size {size} cannot be shown to extend the "
                    f"{my_size} leaves verified here (the server answers: {exc.detail})"
                )
                continue
            if merkle.verify_consistency(my_size, size, my_root, root, proof):
                report.agreed += 1
            else:
                report.forks.append(
                    f"FORK: their checkpoint of size {size} is not consistent with the "
                    f"{my_size} leaves verified here (the consistency proof fails)"
                )
    return report
