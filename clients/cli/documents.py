"""attache doc: put, get and list labelled, end-to-end encrypted documents."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from clients.cli._common import format_option, home_option, show, with_messenger
from clients.cli.terminal import Column, abort, printable, terminal
from clients.sdk import History, Messenger, Waiting
from clients.sdk.documents import Documents, OpenedDocument
from clients.sdk.documents import Progress as ProgressFn


@click.group("doc")
def doc() -> None:
    """Documents: versioned, labelled, end-to-end encrypted files of any size."""


@contextlib.contextmanager
def _bar(what: str) -> Iterator[ProgressFn]:
    with Progress(
        TextColumn(what),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=terminal.err,
        transient=True,
    ) as bar:
        task = bar.add_task(what, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@doc.command("put")
@click.option("--channel", required=True, help="the channel or committee")
@click.option("--label", default=None, help="default: the channel's default label")
@click.option("--document", "document_id", default=None, help="add a version to this document")
@click.option("--type", "content_type", default="application/octet-stream")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@home_option
def put(
    channel: str,
    label: str | None,
    document_id: str | None,
    content_type: str,
    path: Path,
    home: Path | None,
) -> None:
    """Upload PATH, sealed only for the devices its label releases it to. An interrupted
    upload resumes by itself; if it stopped (this program or the server died), running the
    same command again continues the same version, provided PATH is unchanged."""

    async def go(messenger: Messenger) -> dict[str, Any]:
        with _bar("uploading") as progress:
            return await Documents(messenger).put(
                channel,
                path,
                label=label,
                document_id=document_id,
                content_type=content_type,
                progress=progress,
            )

    version = with_messenger(home, go)
    terminal.say(
        f"{path.name}: version {version['number']} of document {version['document_id']} "
        f"({version['size']} bytes) as {version['label']}"
    )
    terminal.say(f"version id {version['id']}")


@doc.command("get")
@click.argument("version_id")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None)
@home_option
def get(version_id: str, out: Path | None, home: Path | None) -> None:
    """Download, verify and decrypt a version (to --out, or its own file name here)."""

    async def go(messenger: Messenger) -> OpenedDocument:
        documents = Documents(messenger)
        access = await messenger.client.open_document_version(version_id)
        target = out or Path(str(access["version"]["header"].get("filename", version_id))).name
        if Path(target).exists():
            abort(f"{target} exists; choose another with --out")
        with _bar("downloading") as progress:
            return await documents.get(version_id, Path(target), progress=progress)

    opened = with_messenger(home, go)
    terminal.say(opened.banner)
    terminal.say(
        f"{opened.path}: {opened.filename}, version {opened.number}, {opened.size} bytes, "
        f"from {opened.sender} ({opened.sender_nation}), verified"
    )
    if opened.shared_by is not None:
        terminal.say(f"shared with you by {opened.shared_by} when you joined")
    terminal.say(opened.banner)


VERSION_COLUMNS: tuple[Column, ...] = (
    ("document", lambda v: v["document_id"]),
    ("v", lambda v: str(v["number"])),
    ("version id", lambda v: v["id"]),
    ("file", lambda v: str(v["header"].get("filename", "-"))),
    ("bytes", lambda v: str(v["size"])),
    ("label", lambda v: v["label"]),
    ("completed", lambda v: show(v["completed_at"])),
)

DOCUMENT_COLUMNS: tuple[Column, ...] = (
    ("document", lambda d: d["document_id"]),
    ("file", lambda d: str(d["latest"]["header"].get("filename", "-"))),
    ("versions", lambda d: str(len(d["versions"]))),
    ("latest", lambda d: str(d["latest"]["number"])),
    ("latest version id", lambda d: d["latest"]["id"]),
    ("label", lambda d: d["latest"]["label"]),
)


def _versions(channel: str, home: Path | None) -> list[dict[str, Any]]:
    async def go(messenger: Messenger) -> tuple[list[dict[str, Any]], list[Waiting]]:
        waiting = await History(messenger).waiting(channel)
        found = await Documents(messenger).versions(channel)
        return found, [w for w in waiting if w.item_type == "document_version"]

    found, waiting = with_messenger(home, go)
    # Versions shared before you joined that you may open, until a member's client shares
    # their keys: on standard error, so that a table, CSV or JSON stays the versions you hold.
    for item in waiting:
        terminal.err.print(
            printable(
                f"version {item.item_id} ({item.label}, as the server says): waiting for a key "
                "from a member"
            )
        )
    return found


@doc.command("versions")
@click.option("--channel", required=True)
@format_option
@home_option
def versions(channel: str, fmt: str, home: Path | None) -> None:
    """The document versions in a channel that you may open."""
    terminal.listing(fmt, _versions(channel, home), VERSION_COLUMNS)


@doc.command("list")
@click.option("--channel", required=True)
@format_option
@home_option
def list_documents(channel: str, fmt: str, home: Path | None) -> None:
    """The documents in a channel, each with its latest complete version that you may open."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for version in _versions(channel, home):
        grouped.setdefault(version["document_id"], []).append(version)
    records = []
    for document_id, found in grouped.items():
        found.sort(key=lambda v: int(v["number"]))
        complete = [v for v in found if v["completed_at"]] or found
        records.append({"document_id": document_id, "latest": complete[-1], "versions": found})
    terminal.listing(fmt, records, DOCUMENT_COLUMNS)
