"""attache send / read / listen / message show: labelled messages, verified before they are
shown, and who a message of yours was released to."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from clients.cli._common import home_option, show, with_messenger
from clients.cli.history import say_waiting
from clients.cli.terminal import abort, printable, terminal
from clients.sdk import (
    ApiError,
    AttacheClient,
    ConnectionFailed,
    History,
    MessagingError,
    Messenger,
    ReceivedMessage,
    SentMessage,
    Shared,
    Waiting,
)
from clients.sdk.messaging import TEXT_TYPE, StreamStatus, Unanswered
from clients.sdk.outbox import Outbox, OutboxError
from protocol import committees

# What read and listen show: text, and a committee's own content (meetings, agenda items,
# minutes, action items), each as what it is.
SHOWN_TYPES = (TEXT_TYPE, *sorted(committees.CONTENT_TYPES))
_KINDS = {
    committees.MEETING: "meeting",
    committees.AGENDA_ITEM: "agenda item",
    committees.MINUTES: "minutes",
    committees.ACTION_ITEM: "action item",
    committees.ACTION_ITEM_UPDATE: "action item update",
}


def _committee_lines(kind: str, fields: dict[str, str], reply_to: str | None) -> list[str]:
    name = _KINDS[kind]
    if kind == committees.MEETING:
        lines = [f"meeting: {fields['title']}"]
        lines += [f"place: {fields['place']}"] if "place" in fields else []
    elif kind == committees.AGENDA_ITEM:
        lines = [f"agenda item: {fields['title']}"]
        lines += [f"presenter: {fields['presenter']}"] if "presenter" in fields else []
        lines += [f"notes: {fields['notes']}"] if "notes" in fields else []
    elif kind == committees.MINUTES:
        lines = ["minutes:", fields["text"]]
    elif kind == committees.ACTION_ITEM:
        lines = [
            f"action item: {fields['description']}",
            f"owner: {fields['owner']}  due: {fields.get('due', '-')}  status: {fields['status']}",
        ]
    else:
        lines = [f"{name}: status {fields['status']}"]
        lines += [f"note: {fields['note']}"] if "note" in fields else []
        lines += [f"(on action item message {reply_to})"] if reply_to else []
    return lines


def _content(message: ReceivedMessage) -> list[str]:
    """How a verified message's content is shown; ValueError if it is not what its type says."""
    kind = committees.media_type(message.content_type or "")
    if message.text is None:
        return [f"(content of type {message.content_type}, which this client does not show)"]
    if kind in committees.CONTENT_TYPES:
        try:
            fields = committees.decode(kind, message.text.encode("utf-8"))
        except committees.ContentError as exc:
            raise ValueError(f"its {_KINDS[kind]} content is malformed: {exc}") from exc
        return _committee_lines(kind, fields, message.reply_to)
    return [message.text]


def show_message(message: ReceivedMessage, where: str | None = None) -> bool:
    """The banner at the top and the bottom; number, sender, nation, time, where (if given)
    and the message id; then the text or committee content, or a warning in its place when
    the message could not be verified. False when it could not be."""
    terminal.say(message.banner)
    place = f"  in {where}" if where else ""
    lines: list[str] = []
    problem = None if message.verified else message.problem
    if message.verified:
        try:
            lines = _content(message)
        except ValueError as exc:
            problem = str(exc)
    if problem is None:
        when = message.sent_at.strftime("%Y-%m-%d %H:%M:%S UTC") if message.sent_at else "-"
        terminal.say(
            f"#{message.seq}  from {message.sender} ({message.sender_nation})  {when}{place}"
            f"  id {message.message_id}"
        )
        if message.released_by is not None:
            terminal.say(
                f"released to you by {message.released_by} (sent as {message.original_banner})"
            )
        if message.shared_by is not None:
            sent_as = f", sent as {message.original_banner}" if message.original_banner else ""
            terminal.say(f"shared with you by {message.shared_by} when you joined{sent_as}")
        for line in lines:
            terminal.say(line)
    else:
        terminal.say(
            f"#{message.seq}{place}  WARNING: this message could not be verified and is not "
            f"shown: {problem}"
        )
    terminal.say(message.banner)
    terminal.say("")
    return problem is None


def _outbox(messenger: Messenger) -> Outbox:
    return Outbox(messenger.keystore.home / "outbox")


def _say_sent(channel: str, sent: SentMessage) -> None:
    if not sent.created:
        # The server answers a resubmission from what it stored, without the releases.
        how = " (the copy sealed earlier, resent: the first attempt had landed)"
    else:
        how = f", released to {len(sent.released_to)} device(s)"
        if sent.resent:
            how += " (the copy sealed earlier, resent)"
    terminal.say(f"sent #{sent.seq} to {channel} as {sent.banner}{how}")
    for device in sent.excluded:
        terminal.say(
            f"warning: not sealed to device {device.device_id} of {device.username}: "
            f"{device.reason}"
        )


def _say_unanswered(channel: str, earlier: Sequence[Unanswered]) -> None:
    for item in earlier:
        if item.sent is not None:
            terminal.say(f"earlier message {item.message_id}, which had no answer:")
            _say_sent(channel, item.sent)
        else:
            terminal.say(
                f"warning: earlier message {item.message_id}, which had no answer, was not "
                f"sent: {item.problem}"
            )


@click.command("send")
@click.option("--channel", required=True, help="the channel's name")
@click.option(
    "--label",
    default=None,
    help='e.g. "NATO SECRET//REL TO USA, GBR" (default: the channel\'s default label)',
)
@click.option(
    "--resume",
    is_flag=True,
    help="only resend, exactly, the channel's sealed messages that had no answer",
)
@click.argument("text", required=False)
@home_option
def send_command(
    channel: str, label: str | None, resume: bool, text: str | None, home: Path | None
) -> None:
    """Send TEXT (or standard input) to a channel, sealed only for the devices the label
    releases it to. Device passphrase from ATTACHE_PASSPHRASE, or asked.

    The sealed message is kept in the home's outbox until the server answers. If the answer
    is lost, run the same command again: the kept copy is resent exactly, so the server stores
    it once. Any earlier unanswered message to the channel is resent first."""
    if resume:
        if text is not None:
            abort("--resume sends nothing new: give no TEXT")
        _resume(channel, home)
        return
    if text is None:
        text = sys.stdin.read().rstrip("\n")
    if not text.strip():
        abort("nothing to send: the message is empty")
    body = text

    async def go(messenger: Messenger) -> SentMessage:
        messenger.outbox = _outbox(messenger)
        try:
            return await messenger.send(channel, body, label=label)
        except ConnectionFailed as exc:
            raise MessagingError(_lost(exc, messenger, channel)) from exc
        except OutboxError as exc:
            raise MessagingError(str(exc)) from exc

    sent = with_messenger(home, go)
    _say_unanswered(channel, sent.resent_first)
    _say_sent(channel, sent)


def _lost(exc: ConnectionFailed, messenger: Messenger, channel: str) -> str:
    outbox = _outbox(messenger)
    if not outbox.pending():
        return str(exc)
    return (
        f"{exc}; the message may or may not have reached the server. Its sealed copy is kept "
        f"in {outbox.directory}: run the same command again, and exactly that copy is resent "
        f"(the server stores it once), or 'attache send --channel {channel} --resume'"
    )


def _resume(channel: str, home: Path | None) -> None:
    async def go(messenger: Messenger) -> list[Unanswered]:
        messenger.outbox = _outbox(messenger)
        try:
            return await messenger.resend_unanswered(channel)
        except ConnectionFailed as exc:
            raise MessagingError(_lost(exc, messenger, channel)) from exc
        except OutboxError as exc:
            raise MessagingError(str(exc)) from exc

    resent = with_messenger(home, go)
    if not resent:
        terminal.say(f"no unanswered message to {channel}")
    _say_unanswered(channel, resent)


def _unverified(failed: int, total: int) -> None:
    if failed:
        abort(f"{failed} of {total} message(s) could not be verified: see the warnings above")


@click.command("read")
@click.option("--channel", required=True, help="the channel's (or committee's) name")
@click.option("--after", default=0, type=click.IntRange(min=0), help="only after this number")
@home_option
def read_command(channel: str, after: int, home: Path | None) -> None:
    """Show the messages of a channel that were released to you, each verified: text, and a
    committee's meetings, agenda items, minutes and action items. Messages sent before you
    joined that you may read are listed as waiting for a key from a member until a member's
    client shares them. Exits with status 1 when any could not be verified."""

    async def go(messenger: Messenger) -> tuple[list[ReceivedMessage], list[Waiting]]:
        messages = await messenger.read(channel, after=after, content_types=SHOWN_TYPES)
        waiting = [
            w
            for w in await History(messenger).waiting(channel)
            if w.item_type == "message" and w.seq > after
        ]
        return messages, waiting

    messages, waiting = with_messenger(home, go)
    if not messages and not waiting:
        terminal.say(f"no messages for you in {channel}")
    failed = 0
    shown: list[ReceivedMessage | Waiting] = [*messages, *waiting]
    for item in sorted(shown, key=lambda found: found.seq):
        if isinstance(item, Waiting):
            say_waiting(item)
        else:
            failed += not show_message(item)
    _unverified(failed, len(messages))


class _Places:
    """Names channels for the messages shown: "channel liaison", "committee cell"."""

    def __init__(self, client: AttacheClient) -> None:
        self._client = client
        self._names: dict[str, str] = {}
        self._looked_for: set[str] = set()

    async def name(self, channel_id: str) -> str:
        if channel_id not in self._names and channel_id not in self._looked_for:
            # A channel joined since the last look: look again, once per channel.
            self._looked_for.add(channel_id)
            with contextlib.suppress(ApiError, ConnectionFailed):
                await self.load()
        return self._names.get(channel_id, f"channel {channel_id}")

    def known(self, channel_id: str) -> str:
        return self._names.get(channel_id, f"channel {channel_id}")

    async def load(self) -> None:
        found_committees = await self._client.committees()
        of_committees = {str(c["channel_id"]): str(c["name"]) for c in found_committees}
        for found in await self._client.channels():
            channel_id = str(found["id"])
            if channel_id in of_committees:
                self._names[channel_id] = f"committee {of_committees[channel_id]}"
            else:
                self._names[channel_id] = f"channel {found['name']}"


def _say_status(username: str, status: StreamStatus) -> None:
    """Connections and losses go to standard error; standard output carries the messages."""
    if status.connected and not status.resumed:
        terminal.say(f"listening as {username}; Ctrl-C to stop")
    elif status.connected:
        terminal.err.print(
            printable(f"connected again; {status.missed} message(s) sent meanwhile follow")
        )
    else:
        terminal.err.print(
            printable(f"{status.reason}; connecting again in {status.retry_in or 0:.1f} s")
        )


def _say_history(where: str, outcome: object) -> None:
    """What sharing past messages with members who joined later did, on standard error."""
    if isinstance(outcome, list):
        shared = [s for s in outcome if isinstance(s, Shared) and s.created]
        if shared:
            terminal.err.print(
                printable(
                    f"shared {len(shared)} earlier message(s) in {where} with members who "
                    "joined later"
                )
            )
    elif isinstance(outcome, Exception):
        terminal.err.print(printable(f"could not share earlier messages in {where}: {outcome}"))


@click.command("listen")
@click.option(
    "--count",
    default=None,
    type=click.IntRange(min=1),
    help="stop after this many messages (default: until Ctrl-C)",
)
@home_option
def listen_command(count: int | None, home: Path | None) -> None:
    """Show messages as they arrive, in every channel and committee of yours, each with where
    it was sent, until Ctrl-C. A lost stream (a server restart, a network failure) is
    connected again, with growing delays, and what was sent meanwhile is shown first: nothing
    is missed and nothing shown twice. With --count, exits with status 1 when any message
    shown could not be verified."""

    async def go(messenger: Messenger) -> tuple[int, int]:
        places = _Places(messenger.client)
        await places.load()
        # Members who join a channel of ours are given the past messages we hold that their
        # labels admit, in the background, as the stream says that a roster changed.
        History(messenger).share_on_roster_changes()
        messenger.on_history = lambda channel_id, outcome: _say_history(
            places.known(channel_id), outcome
        )
        # Members may have joined while we were away: we heard no notice of it.
        messenger.share_history_soon()
        shown = failed = 0
        live = messenger.follow(
            content_types=SHOWN_TYPES,
            on_status=lambda status: _say_status(messenger.username, status),
        )
        async with contextlib.aclosing(live):
            async for message in live:
                failed += not show_message(message, await places.name(message.channel_id))
                shown += 1
                if count is not None and shown >= count:
                    break
        return shown, failed

    try:
        shown, failed = with_messenger(home, go)
    except KeyboardInterrupt:
        terminal.say("stopped")
        return
    _unverified(failed, shown)


# --- attache message ---------------------------------------------------------------------------


@click.group("message")
def message_group() -> None:
    """A message of yours: who it was released to, and who not."""


def _who(entry: dict[str, Any]) -> str:
    return f"{entry.get('username') or entry.get('user_id')} ({show(entry.get('nation'))})"


def _time(value: str) -> str:
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@message_group.command("show")
@click.argument("message_id")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: the server's answer whole, with every id, for scripts",
)
@home_option
def message_show_command(message_id: str, fmt: str, home: Path | None) -> None:
    """Who MESSAGE_ID (a message you sent; 'attache read' and 'listen' show ids) was released
    to: each device's user and nation, at the send or by a release; the members it was not
    released to, and the deliveries withheld later, with the reasons the server recorded."""

    async def go(messenger: Messenger) -> dict[str, Any]:
        return await messenger.client.message_recipients(message_id)

    found = with_messenger(home, go)
    if fmt == "json":
        terminal.json(found)
        return
    where = "committee" if found["committee"] else "channel"
    terminal.say(
        f"message {found['message_id']}: #{found['seq']} in {where} {found['channel']}, "
        f"sent {_time(str(found['sent_at']))} as {found['sent_label']}"
    )
    if found["label"] != found["sent_label"]:
        terminal.say(f"released since as {found['label']}")
    terminal.say(f"released to {len(found['released_to'])} device(s):")
    for entry in found["released_to"]:
        how = "at the send"
        if entry.get("shared"):
            how = "shared when they joined"
        elif entry.get("grant_id"):
            how = "by a release"
        terminal.say(
            f"  {_who(entry)}  device {entry.get('device_id')}, {how}, as {entry.get('label')}"
        )
    if found["not_released"]:
        terminal.say(f"not released to {len(found['not_released'])} member(s):")
        for entry in found["not_released"]:
            terminal.say(f"  {_who(entry)}: {'; '.join(entry['reasons']) or 'no reason given'}")
    else:
        terminal.say("not released to: no member was refused")
    if found["withheld"]:
        terminal.say(f"withheld at delivery from {len(found['withheld'])} device(s):")
        for entry in found["withheld"]:
            terminal.say(
                f"  {_who(entry)}  device {entry.get('device_id')}: "
                f"{'; '.join(entry['reasons']) or 'no reason given'}"
            )
