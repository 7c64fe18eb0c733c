"""Key transparency on the server: the key directory the integrator keeps, and the bundle
that proves a device's current status (PROTOCOL.md §19, protocol/transparency.py).

The integrator ends every checkpoint with a ``keys.directory`` leaf: the root and size of the
directory over every key event before it. The ``key_directory`` table holds that directory's
entries and is written only by the integrator, in the transaction that writes the leaf, so it
is always the directory of the latest checkpoint. A bundle is served from it with proofs
computed from the stored tree nodes; the directory's own tree is kept in memory per process,
keyed by its root, so a read costs O(log n) while the directory does not change.

A client that requires witnesses' cosignatures (PROTOCOL.md §19.4) names them: the bundle is
then served at the latest checkpoint that enough of them cosigned, which is often behind the
latest (witnesses run on their own schedule). Its directory is the table's when no key event
came since; otherwise it is rebuilt once from the key events before that checkpoint and kept
per process, keyed by its root, like the latest one.

Reading a bundle is not audited: every member's client fetches bundles before sealing, and
an event per read would add a leaf, then a checkpoint, then a new bundle to fetch, for ever.
It reveals what the log already commits to for one device: its ids, its public keys, its
status and its registration leaf.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from protocol import merkle
from protocol import transparency as kt
from protocol.keys import b64u_encode as _b64u
from server.audit import log as audit
from server.audit import repository as repo
from server.audit.leaves import parse_body
from server.audit.models import AuditCheckpoint, AuditEvent
from server.errors import InvalidInput, NotFound, Unavailable

if TYPE_CHECKING:
    from server.audit.integrator import NodeCache

logger = logging.getLogger("attache.audit")

#: Who writes directory leaves: the integrator, on no one's behalf.
INTEGRATOR = audit.Actor(user_id=None, device_id=None, nation=None, via="integrator")


def key_events(first_index: int, bodies: Sequence[str]) -> list[tuple[int, dict[str, Any]]]:
    """(leaf index, leaf) of the key events among leaves ``bodies`` starting at ``first_index``.
    Only bodies that can be one are parsed: a batch is up to 10,000 leaves."""
    found = []
    for offset, body in enumerate(bodies):
        if '"action":"device.' not in body:
            continue
        try:
            leaf = parse_body(body)
        except ValueError:
            continue  # not an event: auditors name it; the directory cannot use it
        if kt.is_key_event(leaf):
            found.append((first_index + offset, leaf))
    return found


async def _previous_directory(session: AsyncSession, size: int) -> tuple[bytes, int] | None:
    """(root, size) of the directory leaf that ends the tree of ``size``, if it ends in one."""
    if size == 0:
        return None
    body = await repo.event_body_at(session, size - 1)
    if body is None or f'"action":"{kt.DIRECTORY_ACTION}"' not in body:
        return None
    try:
        return kt.parse_directory_leaf(parse_body(body))
    except (kt.TransparencyError, ValueError):
        return None


async def directory_event(
    session: AsyncSession, size: int, events: list[tuple[int, dict[str, Any]]]
) -> AuditEvent:
    """Apply the key events of a batch (leaf index, leaf) to the key directory of the tree of
    ``size`` and return the ``keys.directory`` event for the batch's end (not yet added to
    the session).

    Precondition: inside the integrator's transaction, holding its lock. When the tree does
    not end in a directory leaf (before the first, or after a run of an older server), the
    directory is rebuilt from every key event already in the log: the table then says
    nothing that the log does not."""
    previous = await _previous_directory(session, size)
    if previous is None:
        await repo.clear_directory(session)
        replay = [
            (index, parse_body(body))
            for index, body in await repo.integrated_events_of(session, kt.KEY_ACTIONS)
            if index is not None
        ]
        events = [(i, leaf) for i, leaf in replay if kt.is_key_event(leaf)] + events
    root, entries = (
        previous if previous is not None and not events else await _apply(session, events)
    )
    return audit.event(
        actor=INTEGRATOR,
        action=kt.DIRECTORY_ACTION,
        object_type="keys",
        object_id="directory",
        details={"directory": kt.directory_details(root, entries)},
    )


async def _apply(
    session: AsyncSession, events: list[tuple[int, dict[str, Any]]]
) -> tuple[bytes, int]:
    # Malformed events name no device: ``apply`` refuses them, and the integrator goes on.
    objects = [leaf.get("object") for _, leaf in events]
    devices = {str(o.get("id")) for o in objects if isinstance(o, dict)}
    directory = kt.KeyDirectory(
        kt.DirectoryEntry.parse(body) for body in await repo.directory_bodies(session, devices)
    )
    for index, leaf in events:
        problem = directory.apply(index, leaf)
        if problem is not None:
            # The directory follows the log as auditors read it: they refuse the same event.
            logger.warning("key directory: %s; left out", problem)
    for device in sorted(devices):
        entry = directory.get(device)
        if entry is not None:
            await repo.put_directory_entry(
                session, device, entry.encode().decode(), entry.leaf_hash()
            )
    await session.flush()
    hashes = [bytes(h) for _, h in sorted(await repo.directory_hashes(session))]
    return merkle.root(hashes), len(hashes)


@dataclass(frozen=True)
class _DirectoryView:
    tree: merkle.MerkleTree
    positions: dict[str, int]
    bodies: list[str]


# The directory of the latest checkpoint this process served from, by (root, size): equal
# roots mean equal entries, whichever database they came from.
_views: dict[tuple[bytes, int], _DirectoryView] = {}


async def _view(session: AsyncSession, root: bytes, size: int) -> _DirectoryView | None:
    found = _views.get((root, size))
    if found is not None:
        return found
    rows = sorted(await repo.directory_rows(session))
    tree = merkle.MerkleTree(bytes(h) for _, _, h in rows)
    if tree.size != size or tree.root() != root:
        return None  # the integrator wrote a newer directory meanwhile
    view = _DirectoryView(tree, {d: i for i, (d, _, _) in enumerate(rows)}, [b for _, b, _ in rows])
    _views.clear()
    _views[(root, size)] = view
    return view


#: At most this many witnesses may be named (as for GET /v1/audit/checkpoint).
MAX_WITNESSES = 64
# Directories of past (cosigned) checkpoints this process rebuilt, by (root, size).
_past: dict[tuple[bytes, int], _DirectoryView] = {}
_PAST_KEPT = 4


def _directory_of(last: str | None, tree_size: int) -> tuple[bytes, int]:
    """(root, size) of the directory leaf ``last`` that ends the checkpoint of ``tree_size``."""
    refusal = f"the checkpoint of size {tree_size} does not end in a key directory leaf"
    if last is None:
        raise NotFound(refusal)
    try:
        return kt.parse_directory_leaf(parse_body(last))
    except (kt.TransparencyError, ValueError):
        raise NotFound(refusal) from None


async def _past_view(
    session: AsyncSession, tree_size: int, root: bytes, size: int
) -> _DirectoryView:
    """The directory that the leaf at ``tree_size - 1`` commits to (``root``, ``size``):
    the table's when it has not changed since, else rebuilt from the key events before it."""
    found = _past.get((root, size)) or await _view(session, root, size)
    if found is not None:
        return found
    directory = kt.KeyDirectory()
    for index, body in await repo.integrated_events_of(session, kt.KEY_ACTIONS):
        if index is None or index >= tree_size - 1:
            break
        try:
            directory.apply(index, parse_body(body))
        except ValueError:
            continue  # not an event: the integrator left it out too
    tree, positions = directory.tree()
    if tree.size != size or tree.root() != root:
        logger.warning("key directory: the key events do not give the directory at %s", tree_size)
        raise Unavailable("the key directory of that checkpoint cannot be rebuilt; try again")
    view = _DirectoryView(tree, positions, [e.encode().decode() for e in directory.entries()])
    if len(_past) >= _PAST_KEPT:
        _past.clear()
    _past[(root, size)] = view
    return view


def check_witness_names(witnesses: Sequence[str], minimum: int | None) -> tuple[list[str], int]:
    """The distinct witness names asked for and how many must have cosigned (all when
    ``minimum`` is None); InvalidInput otherwise."""
    names = sorted(set(witnesses))
    if not names:
        if minimum is not None:
            raise InvalidInput("min_witnesses needs witness names", field="min_witnesses")
        return names, 0
    if len(names) > MAX_WITNESSES:
        raise InvalidInput(f"name at most {MAX_WITNESSES} witnesses", field="witness")
    wanted = len(names) if minimum is None else minimum
    if not 1 <= wanted <= len(names):
        raise InvalidInput(
            f"min_witnesses must be between 1 and the {len(names)} witnesses named",
            field="min_witnesses",
        )
    return names, wanted


async def device_bundle(
    session: AsyncSession,
    device_id: str,
    old: int,
    witnesses: Sequence[str] = (),
    minimum: int | None = None,
) -> dict[str, Any]:
    """The transparency bundle of ``device_id`` at the latest checkpoint (PROTOCOL.md §19.3),
    with a consistency proof from size ``old`` when 0 < old < its size. With ``witnesses``
    (names), at the latest checkpoint that ``minimum`` of them (all when None) cosigned, or
    the latest when none is: the client checks the cosignatures and names what is missing."""
    # Here, not at the top: the integrator imports this module to write directory leaves.
    from server.audit.integrator import NodeCache

    names, wanted = check_witness_names(witnesses, minimum)
    checkpoint: AuditCheckpoint | None = None
    view: _DirectoryView | None = None
    last: str | None = None
    if names:
        cosigned = await repo.latest_cosigned_size(session, names, wanted)
        checkpoint = None if cosigned is None else await repo.checkpoint_at(session, cosigned)
    if checkpoint is not None:
        last = await repo.event_body_at(session, checkpoint.size - 1)
        view = await _past_view(session, checkpoint.size, *_directory_of(last, checkpoint.size))
    for _ in range(3):
        if view is not None:
            break
        checkpoint = await repo.latest_checkpoint(session)
        if checkpoint is None:
            raise NotFound("the audit log has no checkpoint yet")
        last = await repo.event_body_at(session, checkpoint.size - 1)
        view = await _view(session, *_directory_of(last, checkpoint.size))
    if view is None or checkpoint is None or last is None:
        logger.warning("key directory: the table does not give the latest directory leaf's root")
        raise Unavailable("the key directory is being updated; try again")
    position = view.positions.get(device_id)
    if position is None:
        raise NotFound(f"device {device_id} is not in the key directory", device_id=device_id)
    body = view.bodies[position]
    entry = kt.DirectoryEntry.parse(body)
    registration = await repo.event_body_at(session, entry.registered)
    if registration is None:
        raise NotFound(f"the registration of device {device_id} is gone from the log")
    tree_size = checkpoint.size
    nodes = NodeCache(session)
    directory_proof = await nodes.run(
        lambda get: merkle.inclusion_proof(tree_size - 1, tree_size, get)
    )
    registration_proof = await nodes.run(
        lambda get: merkle.inclusion_proof(entry.registered, tree_size, get)
    )
    return {
        "device_id": device_id,
        "checkpoint": await checkpoint_part(session, checkpoint, old, nodes),
        "directory": {
            "index": tree_size - 1,
            "leaf": last,
            "proof": [_b64u(p) for p in directory_proof],
        },
        "entry": {
            "index": position,
            "size": view.tree.size,
            "data": body,
            "proof": [_b64u(p) for p in view.tree.inclusion_proof(position)],
        },
        "registration": {
            "index": entry.registered,
            "leaf": registration,
            "proof": [_b64u(p) for p in registration_proof],
        },
    }


async def checkpoint_part(
    session: AsyncSession, checkpoint: AuditCheckpoint, old: int, nodes: NodeCache
) -> dict[str, Any]:
    """The ``checkpoint`` member of a proof answer (a device's bundle, a policy version's
    publication): the checkpoint, its note with the witnesses' cosignatures, and the
    consistency proof from ``old`` when 0 < old < size."""
    size = checkpoint.size
    consistency: list[bytes] = []
    if 0 < old < size:
        consistency = await nodes.run(lambda get: merkle.consistency_proof(old, size, get))
    return {
        "size": size,
        "root": _b64u(checkpoint.root),
        "note": await _cosigned(session, size, checkpoint.note),
        "old": old,
        "consistency": [_b64u(p) for p in consistency],
    }


async def _cosigned(session: AsyncSession, size: int, note: str) -> str:
    rows = await repo.cosignatures(session, size)
    return note + "".join(row.line for row in rows)
