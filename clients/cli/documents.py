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

from clients.cli._common import home_option, show, with_messenger
from clients.cli.terminal import abort, terminal
from clients.sdk import Messenger
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
    terminal.say(opened.banner)


@doc.command("versions")
@click.option("--channel", required=True)
@home_option
def versions(channel: str, home: Path | None) -> None:
    """The document versions in a channel that you may open."""

    async def go(messenger: Messenger) -> list[dict[str, Any]]:
        return await Documents(messenger).versions(channel)

    rows = [
        (
            v["document_id"],
            str(v["number"]),
            v["id"],
            str(v["header"].get("filename", "-")),
            str(v["size"]),
            v["label"],
            show(v["completed_at"]),
        )
        for v in with_messenger(home, go)
    ]
    terminal.table("document", "v", "version id", "file", "bytes", "label", "completed", rows=rows)
