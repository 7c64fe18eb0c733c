"""Documents: labelled versions of any size, streamed, resumable, released only to eligible
devices, verified before the plaintext is kept."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from clients.sdk import ApiError, AttacheClient, ConnectionFailed, MessagingError
from clients.sdk.documents import Documents
from protocol import stream
from protocol.labels import parse_label
from server.audit.models import AuditEvent
from server.documents.models import DocumentVersion
from server.settings import Settings
from tests.clients.server_process import free_port, serve, wait_until_up
from tests.clients.test_cli_messages import _ok as _cli_ok
from tests.clients.test_messaging import Trio, _messenger, _trio
from tests.server.test_channels import CATALOG, _audience

REL_USA_GBR = "NATO SECRET//REL TO USA, GBR"


def _file(tmp_path: Path, name: str, size: int) -> Path:
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    return path


async def _events(world: Any, action: str) -> list[AuditEvent]:
    async with world.app.state.sessionmaker() as session:
        stmt = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        return list((await session.execute(stmt)).scalars().all())


async def test_a_version_reaches_only_eligible_devices(world: Any, tmp_path: Path) -> None:
    t: Trio = await _trio(world)
    source = _file(tmp_path, "brief.bin", 3 * stream.CHUNK_SIZE + 123)
    version = await Documents(t.am).put("liaison", source, label=REL_USA_GBR)
    assert version["status"] == "complete"
    assert version["label"] == REL_USA_GBR
    opened = await Documents(t.bm).get(version["id"], tmp_path / "bob" / "brief.bin")
    assert opened.path.read_bytes() == source.read_bytes()
    assert (opened.sender, opened.sender_nation, opened.banner) == ("alice", "USA", REL_USA_GBR)
    # Chloe (FRA) does not even see that the version exists, and cannot fetch it.
    assert await Documents(t.cm).versions("liaison") == []
    with pytest.raises(ApiError) as refused:
        await Documents(t.cm).get(version["id"], tmp_path / "chloe" / "brief.bin")
    assert refused.value.status == 404
    assert not (tmp_path / "chloe" / "brief.bin").exists()
    (upload,) = await _events(world, "document.upload")
    assert [entry["nation"] for entry in upload.details["not_released"]] == ["FRA"]
    accesses = await _events(world, "document.access")
    # Every access is audited: bob's (header, then content) and chloe's refusal.
    assert [(e.actor_user_id, e.decision) for e in accesses] == [
        (t.bob.user.id, "allow"),
        (t.bob.user.id, "allow"),
        (t.chloe.user.id, "deny"),
    ]
    assert accesses[2].reasons == [
        "nationality FRA not in REL TO USA, GBR",
        "device not in the version's audience",
    ]


async def test_versions_keep_their_own_labels(world: Any, tmp_path: Path) -> None:
    t = await _trio(world)
    first = await Documents(t.am).put("liaison", _file(tmp_path, "a", 10), label="NATO SECRET")
    second = await Documents(t.am).put(
        "liaison", _file(tmp_path, "b", 20), label=REL_USA_GBR, document_id=first["document_id"]
    )
    assert second["number"] == 2
    seen_by_chloe = await Documents(t.cm).versions("liaison")
    assert [(v["number"], v["label"]) for v in seen_by_chloe] == [(1, "NATO SECRET")]
    seen_by_bob = await Documents(t.bm).versions("liaison")
    assert [v["number"] for v in seen_by_bob] == [1, 2]


async def test_an_empty_document(world: Any, tmp_path: Path) -> None:
    t = await _trio(world)
    version = await Documents(t.am).put("liaison", _file(tmp_path, "empty", 0))
    opened = await Documents(t.cm).get(version["id"], tmp_path / "out")
    assert opened.path.read_bytes() == b""


async def test_an_interrupted_upload_resumes(
    world: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = await _trio(world)
    source = _file(tmp_path, "big", 5 * stream.CHUNK_SIZE)
    client = t.am.client
    real = client.upload_content
    calls = {"n": 0}

    async def dropping(version_id: str, offset: int, content: Any) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] > 1:
            return await real(version_id, offset, content)

        async def first_two_and_a_half_chunks() -> Any:
            sent = 0
            async for piece in content:
                yield piece[: max(0, int(2.5 * stream.ENCRYPTED_CHUNK_SIZE) - sent)]
                sent += len(piece)
                if sent >= 2.5 * stream.ENCRYPTED_CHUNK_SIZE:
                    break

        await real(version_id, offset, first_two_and_a_half_chunks())
        raise ConnectionFailed("the line dropped")

    monkeypatch.setattr(client, "upload_content", dropping)
    version = await Documents(t.am).put("liaison", source)
    assert calls["n"] == 2
    assert version["status"] == "complete"
    opened = await Documents(t.bm).get(version["id"], tmp_path / "copy")
    assert opened.path.read_bytes() == source.read_bytes()


async def test_an_unfinished_upload_is_invisible_and_can_be_discarded(
    world: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = await _trio(world)
    client = t.am.client

    async def dead(version_id: str, offset: int, content: Any) -> dict[str, Any]:
        raise ConnectionFailed("no route")

    monkeypatch.setattr(client, "upload_content", dead)
    with pytest.raises(ConnectionFailed, match="resume"):
        await Documents(t.am).put("liaison", _file(tmp_path, "x", 1000))
    assert await Documents(t.bm).versions("liaison") == []
    async with world.app.state.sessionmaker() as session:
        (pending,) = (await session.execute(select(DocumentVersion))).scalars().all()
    assert pending.status == "uploading"
    await client.discard_upload(pending.id)
    async with world.app.state.sessionmaker() as session:
        assert (await session.execute(select(DocumentVersion))).scalars().all() == []
    assert not world.app.state.blobs.path(pending.id).exists()


async def test_stored_ciphertext_tampering_is_caught(world: Any, tmp_path: Path) -> None:
    t = await _trio(world)
    source = _file(tmp_path, "doc", 2 * stream.CHUNK_SIZE + 5)
    version = await Documents(t.am).put("liaison", source)
    blob = world.app.state.blobs.path(version["id"])
    data = bytearray(blob.read_bytes())
    data[stream.ENCRYPTED_CHUNK_SIZE + 7] ^= 1
    blob.write_bytes(bytes(data))
    with pytest.raises(MessagingError, match="failed verification"):
        await Documents(t.bm).get(version["id"], tmp_path / "copy")
    assert not (tmp_path / "copy").exists()
    # Truncated (a whole chunk dropped): caught too.
    blob.write_bytes(bytes(data[: stream.ENCRYPTED_CHUNK_SIZE]))
    with pytest.raises((MessagingError, ApiError)):
        await Documents(t.bm).get(version["id"], tmp_path / "copy")
    assert not (tmp_path / "copy").exists()


async def test_a_signature_not_covering_the_upload_discards_it(world: Any, tmp_path: Path) -> None:
    t = await _trio(world)
    client = t.am.client
    real = client.complete_upload

    async def forged(version_id: str, trailer: dict[str, Any]) -> dict[str, Any]:
        bad = dict(trailer)
        bad["content_hash"] = bad["commitment"]
        return await real(version_id, bad)

    client.complete_upload = forged  # type: ignore[method-assign]
    with pytest.raises(ApiError) as refused:
        await Documents(t.am).put("liaison", _file(tmp_path, "f", 100))
    assert refused.value.status == 422
    async with world.app.state.sessionmaker() as session:
        assert (await session.execute(select(DocumentVersion))).scalars().all() == []


async def test_a_label_above_the_ceiling_is_refused(world: Any, tmp_path: Path) -> None:
    t = await _trio(world)
    # This client refuses by itself: no device may receive it here.
    with pytest.raises(MessagingError, match="ceiling"):
        await Documents(t.am).put(
            "liaison", _file(tmp_path, "f", 10), label="NATO TOP SECRET//REL TO USA"
        )
    # A client that asks anyway is refused by the server, and the refusal audited.
    channel = await t.am.client.channel("liaison")
    audience, key, audience_id = await _audience(t.alice, channel["id"], [t.alice, t.bob])
    await t.am.client.create_audience("liaison", audience)
    encryptor = stream.DocumentEncryptor(
        t.alice.device_keys,
        key,
        document_id=str(uuid.uuid4()),
        version_id=str(uuid.uuid4()),
        version_number=1,
        container=channel["id"],
        sender_user=t.alice.user.id,
        sender_device=t.alice.device_id,
        audience_id=audience_id,
        created_at=datetime.now(UTC),
        label=parse_label("NATO TOP SECRET//REL TO USA, GBR", CATALOG, originator="USA"),
        filename="f",
        content_type="application/octet-stream",
        size=10,
    )
    with pytest.raises(ApiError) as refused:
        await t.am.client.begin_document_version(channel["id"], encryptor.header)
    assert refused.value.status == 403
    denied = await _events(world, "document.upload")
    assert [e.decision for e in denied] == ["deny"]


async def test_a_member_removed_after_upload_is_refused_the_download(
    world: Any, tmp_path: Path
) -> None:
    t = await _trio(world)
    version = await Documents(t.am).put("liaison", _file(tmp_path, "f", 10), label="NATO SECRET")
    await t.cm.client.remove_member("liaison", "chloe")
    with pytest.raises(ApiError) as refused:
        await Documents(t.cm).get(version["id"], tmp_path / "out")
    assert refused.value.status == 404
    async with world.app.state.sessionmaker() as session:
        await session.execute(update(DocumentVersion).values(status="complete"))
    denied = [e for e in await _events(world, "document.access") if e.decision == "deny"]
    assert denied[0].reasons == ["not a member"]


async def test_uploads_must_follow_where_the_server_stands(world: Any, tmp_path: Path) -> None:
    t = await _trio(world)
    client = t.am.client

    async def dead(version_id: str, offset: int, content: Any) -> dict[str, Any]:
        raise ConnectionFailed("no route")

    real = client.upload_content
    client.upload_content = dead  # type: ignore[method-assign]
    with pytest.raises(ConnectionFailed):
        await Documents(t.am).put("liaison", _file(tmp_path, "x", 1000))
    async with world.app.state.sessionmaker() as session:
        (pending,) = (await session.execute(select(DocumentVersion))).scalars().all()

    async def some() -> Any:
        yield b"x" * 10

    with pytest.raises(ApiError) as refused:
        await real(pending.id, 4096, some())
    assert refused.value.status == 409
    assert refused.value.problem["received"] == 0
    with pytest.raises(ApiError) as too_much:
        await real(pending.id, 0, _many(stream.ciphertext_size(1000) + 1))
    assert too_much.value.status == 413
    # Another member cannot touch this upload at all.
    with pytest.raises(ApiError) as hidden:
        await t.bm.client.upload_state(pending.id)
    assert hidden.value.status == 404


async def _many(n: int) -> Any:
    yield b"y" * n


# --- crashes: the same version resumes (issue 9, item 7) -------------------------------------


class _Offsets:
    """Records the offset of every upload attempt a client makes."""

    def __init__(self, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.seen: list[tuple[str, int]] = []
        real = client.upload_content

        async def upload(version_id: str, offset: int, content: Any) -> dict[str, Any]:
            self.seen.append((version_id, offset))
            answer: dict[str, Any] = await real(version_id, offset, content)
            return answer

        monkeypatch.setattr(client, "upload_content", upload)


async def test_an_upload_survives_a_server_crash(
    world: Any, tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server is killed (SIGKILL) at 40 % of an upload; a server started again reports
    what was stored, within one chunk, and the same version resumes to completion."""
    t = await _trio(world)
    source = _file(tmp_path, "big", 40 * stream.CHUNK_SIZE)
    url = f"http://127.0.0.1:{free_port()}"
    process = serve(settings, url)
    auth = {"Authorization": f"Bearer {t.alice.client.token}"}
    try:
        await asyncio.to_thread(wait_until_up, url, process)
        remote = AttacheClient(url, token=t.alice.client.token)
        offsets = _Offsets(remote, monkeypatch)
        recorded: dict[str, int] = {}

        def kill_at_40_percent(done: int, total: int) -> None:
            if recorded or done < 0.4 * total:
                return
            # Once the server has put some of it on record (it runs in another process, so
            # this client may block to look), kill it where it stands.
            version_id = offsets.seen[0][0]
            for _ in range(200):
                state = httpx.get(f"{url}/v1/uploads/{version_id}", headers=auth).json()
                if state["received"] > 0:
                    break
                time.sleep(0.05)
            process.kill()
            process.wait()
            recorded["before"] = state["received"]

        with pytest.raises(ConnectionFailed, match="resume"):
            await Documents(await _messenger(t.alice, remote)).put(
                "liaison", source, progress=kill_at_40_percent
            )
        await remote.aclose()
    finally:
        process.kill()
        process.wait()
    (version_id, _), *_ = offsets.seen
    on_disk = world.app.state.blobs.size(version_id)
    whole = on_disk - on_disk % stream.ENCRYPTED_CHUNK_SIZE
    # The restarted server (the test app, on the same database and disk) reports what was
    # stored, losing at most the chunk in flight; before, it said 0.
    state = await t.am.client.upload_state(version_id)
    assert state["status"] == "uploading"
    assert 0 < recorded["before"] <= state["received"] <= whole
    assert whole - state["received"] <= stream.ENCRYPTED_CHUNK_SIZE
    # Run again, the upload continues the same version from there.
    resumed = _Offsets(t.am.client, monkeypatch)
    version = await Documents(t.am).put("liaison", source)
    assert version["id"] == version_id
    assert version["status"] == "complete"
    assert resumed.seen[0] == (version_id, state["received"])
    async with world.app.state.sessionmaker() as session:
        assert [v.id for v in (await session.execute(select(DocumentVersion))).scalars()] == [
            version_id
        ]
    opened = await Documents(t.bm).get(version_id, tmp_path / "copy")
    assert _sha256(opened.path) == _sha256(source)


async def test_an_upload_survives_a_client_crash(
    world: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The uploading program dies mid-upload, its memory lost; run again (a new Messenger on
    the same keystore), it finds the unfinished version and resumes it."""
    t = await _trio(world)
    source = _file(tmp_path, "big", 6 * stream.CHUNK_SIZE)
    client = t.am.client
    real = client.upload_content

    async def dying(version_id: str, offset: int, content: Any) -> dict[str, Any]:
        async def three_chunks_and_a_half() -> Any:
            sent = 0
            async for piece in content:
                yield piece[: int(3.5 * stream.ENCRYPTED_CHUNK_SIZE) - sent]
                sent += len(piece)
                if sent >= 3.5 * stream.ENCRYPTED_CHUNK_SIZE:
                    break

        await real(version_id, offset, three_chunks_and_a_half())
        raise KeyboardInterrupt  # the program is stopped where it stands

    monkeypatch.setattr(client, "upload_content", dying)
    with pytest.raises(KeyboardInterrupt):
        await Documents(t.am).put("liaison", source, label=REL_USA_GBR)
    monkeypatch.setattr(client, "upload_content", real)
    offsets = _Offsets(client, monkeypatch)
    again = await _messenger(t.alice)
    version = await Documents(again).put("liaison", source, label=REL_USA_GBR)
    assert offsets.seen == [(version["id"], 3 * stream.ENCRYPTED_CHUNK_SIZE)]
    assert version["status"] == "complete"
    async with world.app.state.sessionmaker() as session:
        assert len((await session.execute(select(DocumentVersion))).scalars().all()) == 1
    opened = await Documents(t.bm).get(version["id"], tmp_path / "copy")
    assert _sha256(opened.path) == _sha256(source)
    # Done, nothing is left to resume: the same file again is a new document.
    other = await Documents(again).put("liaison", source, label=REL_USA_GBR)
    assert other["document_id"] != version["document_id"]


async def test_a_changed_file_is_not_resumed_but_begun_again(
    world: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = await _trio(world)
    source = _file(tmp_path, "doc", 3 * stream.CHUNK_SIZE)
    client = t.am.client

    async def dead(version_id: str, offset: int, content: Any) -> dict[str, Any]:
        raise KeyboardInterrupt

    real = client.upload_content
    monkeypatch.setattr(client, "upload_content", dead)
    with pytest.raises(KeyboardInterrupt):
        await Documents(t.am).put("liaison", source)
    monkeypatch.setattr(client, "upload_content", real)
    async with world.app.state.sessionmaker() as session:
        (first,) = (await session.execute(select(DocumentVersion))).scalars().all()
    source.write_bytes(os.urandom(3 * stream.CHUNK_SIZE))  # the same name, other content
    version = await Documents(t.am).put("liaison", source)
    assert version["id"] != first.id
    async with world.app.state.sessionmaker() as session:
        left = (await session.execute(select(DocumentVersion))).scalars().all()
    assert [v.id for v in left] == [version["id"]]  # the unfinished one was discarded
    opened = await Documents(t.bm).get(version["id"], tmp_path / "copy")
    assert opened.path.read_bytes() == source.read_bytes()


async def test_the_cli_resumes_an_unfinished_upload(
    world: Any, live: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``attache doc put`` run again after the program died continues the same version."""
    t = await _trio(world)
    source = _file(tmp_path, "brief.bin", 4 * stream.CHUNK_SIZE)
    client = t.am.client
    real = client.upload_content

    async def dying(version_id: str, offset: int, content: Any) -> dict[str, Any]:
        async def first_chunk() -> Any:
            async for piece in content:
                yield piece
                break

        await real(version_id, offset, first_chunk())
        raise KeyboardInterrupt

    monkeypatch.setattr(client, "upload_content", dying)
    with pytest.raises(KeyboardInterrupt):
        await Documents(t.am).put("liaison", source)
    async with world.app.state.sessionmaker() as session:
        (pending,) = (await session.execute(select(DocumentVersion))).scalars().all()
    assert pending.received == stream.ENCRYPTED_CHUNK_SIZE
    out = await _cli_ok(t.alice, "doc", "put", "--channel", "liaison", str(source))
    assert f"version id {pending.id}" in out
    opened = await Documents(t.bm).get(pending.id, tmp_path / "copy")
    assert _sha256(opened.path) == _sha256(source)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
