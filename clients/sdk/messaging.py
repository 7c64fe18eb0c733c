"""Labelled, end-to-end encrypted messaging for programs: ``Messenger``.

    async with await Messenger.open(Keystore(), passphrase="...") as m:
        await m.send("liaison", "Meeting moved to 14:00", label="NATO SECRET//REL TO USA, GBR")
        for msg in await m.read("liaison"):
            print(msg.banner, msg.sender, msg.text)

What the client checks, and does not take from the server:

- **Sending.** Every roster device's certificate is verified against the nation authority keys
  pinned in the keystore and must be for that device id and those keys; a device that fails is
  never sealed to, and is reported in ``SentMessage.excluded``. Eligibility for the label is
  computed from the certificates (nationality, clearance) with ``protocol.policy.decide``, so a
  server that lies about a person's nation or clearance cannot get a key for them.
- **Reading.** Each delivered item is verified before anything is shown: the sender's
  certificate against the pins (and that it is for the device and user the message names),
  the audience signed by that device, the message signature, the container and the label.
  Any failure gives ``verified=False`` with ``text=None`` and ``problem`` saying why.
- **The coalition policy.** When this device holds a coalition policy (``clients.sdk.coalition``:
  pinned at enrolment, followed on open only through validly signed successors), a
  certificate verifies only under an authority key that the policy lists for the
  certificate's nation, and the catalog (its nations and groups) is the policy's: a nation or
  a group member the server added on its own does not exist here, so no key is sealed to it.
- **Key transparency.** ``open`` and ``from_client`` set ``transparency``
  (``clients.sdk.transparency``: the audit key pinned in the keystore, the checkpoint kept
  there): a roster device is sealed to only if the key directory shows it registered and
  active with its certified keys at a checkpoint that extends the one held (PROTOCOL.md
  §19.4); checked when a roster is fetched afresh, so a send under an unchanged roster costs
  nothing more. A device not logged yet is waited for briefly, then excluded.
- **Trust on first use, without a policy.** When the server publishes no coalition policy, a
  certificate of a nation not pinned yet (a nation registered after this device enrolled)
  makes the client pin that nation's key from ``GET /v1/nations``, the same trust-on-first-use
  as at enrolment; a nation already pinned is never re-pinned, and a different key offered
  for it is refused. Pin a nation by hand beforehand to avoid relying on the server the first
  time.

Audiences are cached in memory per Messenger and channel, and reused while the eligible
devices (ids and keys) are unchanged, for fewer than ``MAX_AUDIENCE_MESSAGES`` messages and
less than ``MAX_AUDIENCE_AGE``; anything else makes a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import random
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Self

import httpx
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidHandshake, InvalidURI

from clients.sdk._client import ApiError, AttacheClient, ConnectionFailed
from clients.sdk.coalition import HeldPolicy, hold_policy
from clients.sdk.keystore import Keystore
from clients.sdk.outbox import Kept, Outbox, request_tag
from clients.sdk.transparency import CheckpointRefused, DeviceTransparency, TransparencyError
from protocol import envelopes, grants, keys
from protocol.catalog import Catalog, CatalogError
from protocol.labels import Clearance, Label, LabelError, parse_label, render_label
from protocol.policy import Container, Subject, decide

MAX_AUDIENCE_MESSAGES = 100
HISTORY_JITTER = 1.0  # seconds: see Messenger.history_jitter
MAX_AUDIENCE_AGE = timedelta(days=1)
TEXT = "text/plain; charset=utf-8"
TEXT_TYPE = "text/plain"  # TEXT's media type, as ``open_item``'s ``content_types`` name it
# A delivered item carries a body of up to 256 KiB in base64url, plus headers.
MAX_STREAM_FRAME = 1 << 20
# Certificates kept verified per Messenger (a few hundred bytes each).
MAX_VERIFIED_CERTIFICATES = 4096
# Well inside the server's default ws_idle_seconds (60).
STREAM_KEEPALIVE = 20.0
# Close codes after which connecting again cannot help: a frame the server does not accept
# (1003), and a session that is over (4401: signed out, expired, device revoked, account
# disabled; the server's reason says which).
FINAL_CLOSE_CODES = frozenset({1003, 4401})
# How the server's reason for 4401 begins when the session merely expired (PROTOCOL.md §17.7):
# a client holding its device key may sign in again, which it may not after a logout or a
# revocation.
SESSION_EXPIRED = "the session expired"


class MessagingError(Exception):
    """This client refused to go on (and sent nothing); the message says why, in a sentence."""


@dataclass(frozen=True)
class ExcludedDevice:
    """A roster device that was not sealed to, because its certificate did not hold."""

    device_id: str
    username: str  # as the server names it: the certificate did not vouch for it
    reason: str


@dataclass(frozen=True)
class SentMessage:
    seq: int
    message_id: str
    channel_id: str
    banner: str
    released_to: tuple[str, ...]  # device ids the server released the message to
    excluded: tuple[ExcludedDevice, ...]
    created: bool  # False when the server already held this message id
    # True when these are the bytes sealed by an earlier attempt, resent (its answer was lost).
    resent: bool = False
    # With an outbox: the channel's earlier unanswered sends, resent first, oldest first.
    resent_first: tuple[Unanswered, ...] = ()


@dataclass(frozen=True)
class Unanswered:
    """What became of an unanswered submission kept in the outbox, once resent: ``sent``, or,
    if the server refused it, None and the ``problem`` in a sentence (it is dropped either
    way)."""

    message_id: str
    sent: SentMessage | None
    problem: str | None = None


@dataclass(frozen=True)
class ReceivedMessage:
    """A delivered message. Only when ``verified`` are ``text``, ``sender``, ``label`` and
    ``sent_at`` vouched for by the sender's device and its nation; otherwise ``text`` is None,
    ``problem`` says why, and the rest is what the server claims.

    A verified message whose ``content_type`` is not one the reader asked for (``open_item``'s
    ``content_types``) is not a failure: it comes back verified, with ``text`` None."""

    seq: int
    channel_id: str
    message_id: str | None
    sender: str | None
    sender_nation: str | None
    banner: str
    label: Label | None
    text: str | None
    sent_at: datetime | None
    verified: bool
    problem: str | None
    content_type: str | None = None  # as signed; None until verified
    reply_to: str | None = None  # the message id this one replies to, as signed
    # The username of whoever released it to this device by a grant (a label version widening
    # its releasability; ``banner`` and ``label`` are then the granted ones), else None.
    released_by: str | None = None
    original_banner: str | None = None  # the label the sender signed, when released by a grant
    # The username of the member whose client gave this device the key by a history grant (it
    # joined after the message was sent; PROTOCOL.md §16.7), else None.
    shared_by: str | None = None


@dataclass
class _Audience:
    audience_id: str
    key: bytes
    devices: frozenset[tuple[str, bytes, bytes]]
    created: datetime
    messages: int = 0

    def usable_for(self, devices: frozenset[tuple[str, bytes, bytes]], now: datetime) -> bool:
        return (
            self.devices == devices
            and self.messages < MAX_AUDIENCE_MESSAGES
            and now - self.created < MAX_AUDIENCE_AGE
        )


@dataclass
class _Pending:
    """A sealed submission not yet answered by the server."""

    channel_id: str
    sealed: dict[str, Any]
    roster_tag: str | None
    banner: str
    excluded: tuple[ExcludedDevice, ...] = ()
    request: str | None = None  # outbox.request_tag of what was asked, with an outbox
    resent: bool = False

    def sent(self, accepted: Mapping[str, Any]) -> SentMessage:
        return SentMessage(
            seq=int(accepted["seq"]),
            message_id=str(accepted["message_id"]),
            channel_id=self.channel_id,
            banner=self.banner,
            released_to=tuple(accepted["released_to"]),
            excluded=self.excluded,
            created=bool(accepted["created"]),
            resent=self.resent,
        )

    @classmethod
    def of(cls, kept: Kept) -> _Pending:
        return cls(kept.channel_id, kept.sealed, kept.roster_tag, kept.banner, (), kept.request)


@dataclass
class _Roster:
    """A channel's roster as this client checked it, and what it decided from it."""

    etag: str | None
    verified: list[_Verified]
    excluded: list[ExcludedDevice]
    members: frozenset[str]
    eligible: dict[str, list[_Verified]] = field(default_factory=dict)  # label -> devices


@dataclass(frozen=True)
class _Verified:
    """A roster device whose certificate verified, with what the certificate says."""

    device_id: str
    certificate: keys.CertificateBody


@dataclass(frozen=True)
class _Released:
    """An item key opened from a checked grant, with the granted label and the grantor."""

    item_key: bytes
    label: Label
    banner: str
    grantor: str
    history: bool = False  # a history grant: shared with a later member, not released


class _Unverifiable(Exception):
    """A delivered item failed a check; the message is the plain sentence shown for it."""


class StreamClosed(ConnectionFailed):
    """The server closed the stream with ``code`` (None if the connection just dropped)."""

    def __init__(self, message: str, code: int | None) -> None:
        super().__init__(message)
        self.code = code

    @property
    def final(self) -> bool:
        """True when connecting again cannot help (the session is over, or a protocol error)."""
        return self.code in FINAL_CLOSE_CODES


@dataclass(frozen=True)
class StreamStatus:
    """What ``Messenger.follow`` is doing, for a program to tell its user: it is signed in
    (``connected``; after a loss ``resumed``, with the number of messages sent meanwhile,
    ``missed``, which come next), or the stream was lost (not ``connected``, with the
    ``reason`` and the seconds until the next attempt, ``retry_in``)."""

    connected: bool
    resumed: bool = False
    reason: str | None = None
    retry_in: float | None = None
    missed: int = 0


@dataclass(frozen=True)
class Backoff:
    """Delays between attempts to connect again: ``first`` seconds, doubling to ``limit``,
    each taken at random from its upper half, so that the listeners of a restarted server do
    not all come back in the same instant."""

    first: float = 0.5
    limit: float = 30.0

    def delay(self, attempt: int) -> float:
        ceiling = min(self.limit, self.first * float(2 ** min(attempt, 32)))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


class _Seen:
    """The sequence numbers already yielded, the most recent ``keep`` of them: a repeat comes
    from a resync or a resume, which start at the cursor, so older ones cannot recur."""

    def __init__(self, keep: int = 10_000) -> None:
        self._keep = keep
        self._seqs: set[int] = set()

    def __contains__(self, seq: int) -> bool:
        return seq in self._seqs

    def first_time(self, seq: int) -> bool:
        if seq in self._seqs:
            return False
        self._seqs.add(seq)
        if len(self._seqs) > 2 * self._keep:
            self._seqs = set(sorted(self._seqs)[-self._keep :])
        return True


def stream_url_for(server: str) -> str:
    """The websocket address of ``server``: ``ws://`` for ``http://``, ``wss://`` for
    ``https://``."""
    if server.startswith("https://"):
        return "wss://" + server.removeprefix("https://") + "/v1/stream"
    if server.startswith("http://"):
        return "ws://" + server.removeprefix("http://") + "/v1/stream"
    raise ConnectionFailed(f"cannot tell the websocket address of {server}")


class Messenger:
    """One device's messaging session: send, read, sync and listen, verifying everything."""

    def __init__(
        self,
        client: AttacheClient,
        keystore: Keystore,
        device_keys: keys.DeviceKeys,
        *,
        user: Mapping[str, Any],
        catalog: Catalog,
        policy: HeldPolicy | None = None,
        stream_url: str | None = None,
        owns_client: bool = True,
    ) -> None:
        """Prefer ``Messenger.open`` or ``Messenger.from_client``, which fetch ``user``
        (``GET /v1/me``), the coalition ``policy`` held and the ``catalog`` (the policy's)."""
        profile = keystore.profile()
        self.client = client
        self.keystore = keystore
        self.catalog = catalog
        # The coalition policy this device holds to; None when the server publishes none.
        self.policy = policy
        self.device_id = profile.device_id
        self.user_id = str(user["id"])
        self.username = str(user["username"])
        self.nationality: str | None = user.get("nationality")
        self.cursor = 0  # the last sequence number examined by sync or seen live
        self.stream_url = stream_url or stream_url_for(client.server)
        self._device_keys = device_keys
        self._owns_client = owns_client
        self._audiences: dict[str, _Audience] = {}
        self._channels: dict[str, dict[str, Any]] = {}
        self._rosters: dict[str, _Roster] = {}
        self._pending: dict[str, _Pending] = {}  # message id -> unanswered submission
        # Where unanswered submissions are also kept on disk, to survive this process (the CLI
        # sets one in its home); None: in memory only.
        self.outbox: Outbox | None = None
        self._tofu_tried: set[str] = set()
        # With one (``open`` and ``from_client`` set it; PROTOCOL.md §19.4): each device of a
        # roster checked afresh is sealed to only if the key directory shows it active with
        # its certified keys. None: the directory is not checked.
        self.transparency: DeviceTransparency | None = None
        # Certificates verified, by their JSON and the pinned key that verified them.
        self._verified: OrderedDict[tuple[str, bytes | None], keys.CertificateBody] = OrderedDict()
        # Called with a channel id when its roster changed (a member joined, a clearance was
        # raised), to give newcomers the past items they may read: ``History(m).share``, which
        # ``share_history_on_roster_changes`` sets. Runs in the background while this
        # Messenger's stream is read; what each run did or met goes to ``on_history``.
        self.history_sharer: Callable[[str], Awaitable[Any]] | None = None
        self.on_history: Callable[[str, Any], None] | None = None
        # Every online member's client hears the same frame: each waits a random moment up to
        # this many seconds first, so that most find the first one's grant made and nothing
        # left due, rather than all sealing the same items and all but one being refused.
        self.history_jitter = HISTORY_JITTER
        self._sharing: dict[str, asyncio.Task[None]] = {}
        self._share_again: set[str] = set()

    @classmethod
    async def open(
        cls,
        keystore: Keystore,
        *,
        passphrase: str,
        transport: httpx.AsyncBaseTransport | None = None,
        stream_url: str | None = None,
        key_transparency: bool = True,
    ) -> Messenger:
        """Unlock this device's keys, sign in with them and load the label catalog."""
        profile = keystore.profile()
        device_keys = keystore.device_keys(passphrase)
        client = AttacheClient(profile.server, transport=transport)
        try:
            session = await client.login(profile.device_id, device_keys)
            keystore.save_session(session["token"], session["expires_at"])
            return await cls.from_client(
                client,
                keystore,
                device_keys,
                stream_url=stream_url,
                key_transparency=key_transparency,
            )
        except BaseException:
            await client.aclose()
            raise

    @classmethod
    async def from_client(
        cls,
        client: AttacheClient,
        keystore: Keystore,
        device_keys: keys.DeviceKeys,
        *,
        stream_url: str | None = None,
        owns_client: bool = True,
        key_transparency: bool = True,
    ) -> Messenger:
        """A Messenger over a client already signed in as this keystore's device.

        Holds the server to the coalition policy pinned here (``PolicyRefused`` when it
        serves none that follows it); the catalog is then the policy's, else the server's.
        With ``key_transparency`` (the default), seals only to devices the key directory
        shows active, under the audit key pinned here (pinned now if this home has none), and
        accepts a new policy version only once the audit log proves its publication."""
        user = await client.me()
        held = await hold_policy(client, keystore, check_log=key_transparency)
        if held is not None:
            catalog = held.policy.catalog()
        else:
            info = await client.catalog()
            try:
                catalog = Catalog.from_toml(info["toml"]).with_directory(
                    info["nations"], info["groups"]
                )
            except (CatalogError, KeyError, TypeError) as exc:
                raise MessagingError(f"the server's label catalog is unusable: {exc}") from exc
        messenger = cls(
            client,
            keystore,
            device_keys,
            user=user,
            catalog=catalog,
            policy=held,
            stream_url=stream_url,
            owns_client=owns_client,
        )
        if key_transparency:
            try:
                messenger.transparency = await DeviceTransparency.for_keystore(client, keystore)
            except TransparencyError as exc:
                raise MessagingError(f"cannot check the key directory: {exc}") from exc
        return messenger

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for task in self._sharing.values():
            task.cancel()
        await asyncio.gather(*self._sharing.values(), return_exceptions=True)
        self._sharing.clear()
        if self._owns_client:
            await self.client.aclose()

    # --- sending -----------------------------------------------------------------------------

    async def send(
        self,
        channel: str,
        text: str,
        *,
        label: str | None = None,
        reply_to: str | None = None,
        content_type: str = TEXT,
        message_id: str | None = None,
    ) -> SentMessage:
        """Encrypt ``text`` for the devices eligible for ``label`` in ``channel`` and submit it.

        ``label`` is a banner (default: the channel's default label); its originator is this
        user's nation. ``message_id`` (a lower-case UUID; default: a new one) makes a retry
        safe: when a send failed without an answer (``ConnectionFailed``), calling ``send``
        again with the same id resends exactly the bytes sealed the first time, which the
        server stores once (``created`` is False if the first attempt had landed).

        With an ``outbox``, sealed submissions are also kept on disk until answered, so this
        holds across processes too, and a send first resends the channel's earlier unanswered
        submissions, oldest first (``SentMessage.resent_first``). An unanswered submission of
        this very request (same channel, label, content type, reply-to and text) counts as
        this send when no ``message_id`` is given: it is resent, not sealed again, so running
        the same send again after a lost answer never makes a duplicate.

        Raises ``MessagingError`` when this client refuses (a label it cannot parse, or a
        server insisting on devices whose certificates do not verify) and ``ApiError`` with
        the server's plain detail for any refusal of the server's.
        """
        info = await self._channel(channel)
        channel_id = str(info["id"])
        banner = label or str(info["default_label"])
        try:
            parsed = parse_label(banner, self.catalog, originator=self.nationality)
            ceiling = Label.from_canonical(info["ceiling_canonical"], self.catalog)
        except LabelError as exc:
            raise MessagingError(f"label {banner!r}: {exc}") from exc
        request: str | None = None
        earlier: list[Unanswered] = []
        if self.outbox is not None:
            request = request_tag(
                self._device_keys,
                channel_id=channel_id,
                banner=render_label(parsed, self.catalog),
                content_type=content_type,
                reply_to=reply_to,
                text=text,
            )
            # Earlier unanswered sends go first, so that messages keep their order; the one
            # that is this send (its id, or this same request run again) is resent below.
            for kept in self.outbox.pending(channel_id):
                if kept.message_id == message_id or (
                    message_id is None and kept.request == request
                ):
                    message_id = kept.message_id
                    break
                earlier.append(await self._resend_kept(kept))
        message_id = message_id or str(uuid.uuid4())
        resent = await self._resend(message_id)
        if resent is not None:
            return dataclasses.replace(resent, resent_first=tuple(earlier))
        plaintext = text.encode("utf-8")
        if len(plaintext) > envelopes.MAX_MESSAGE_PLAINTEXT:
            limit = envelopes.MAX_MESSAGE_PLAINTEXT // 1024
            raise MessagingError(f"the message is longer than {limit} KiB")
        fresh, incomplete = False, 0
        while True:
            roster = await self._roster(channel_id, fresh=fresh)
            excluded = roster.excluded
            container = Container(id=channel_id, ceiling=ceiling, members=roster.members)
            label_key = json.dumps(parsed.canonical(), sort_keys=True)
            eligible = roster.eligible.get(label_key)
            if eligible is None:
                eligible = self._eligible(roster.verified, parsed, container)
                roster.eligible[label_key] = eligible
            try:
                audience = await self._audience(channel_id, eligible)
                sealed = envelopes.encrypt_message(
                    self._device_keys,
                    audience.key,
                    plaintext,
                    message_id=message_id,
                    container=channel_id,
                    sender_user=self.user_id,
                    sender_device=self.device_id,
                    audience_id=audience.audience_id,
                    sent_at=datetime.now(UTC),
                    label=parsed,
                    content_type=content_type,
                    reply_to=reply_to,
                )
            except envelopes.EnvelopeError as exc:
                raise MessagingError(f"cannot seal the message: {exc}") from exc
            pending = _Pending(
                channel_id,
                sealed.to_json(),
                roster.etag,
                render_label(parsed, self.catalog),
                tuple(excluded),
                request,
            )
            # Kept until the server answers: a retry after a lost answer resends these bytes.
            self._keep(message_id, pending)
            try:
                accepted = await self.client.submit_message(
                    channel_id, pending.sealed, roster_tag=roster.etag
                )
            except ApiError as exc:
                self._answered(message_id)
                if exc.code == "roster-changed" and not fresh:
                    fresh = True  # someone joined, left or was re-certified: look again
                    continue
                # The server disagrees about who may receive it: this audience is of no use.
                self._audiences.pop(channel_id, None)
                if exc.code == "audience-incomplete" and incomplete == 0:
                    incomplete, fresh = 1, True
                    continue  # someone joined (or was certified) since the roster was fetched
                if exc.code == "audience-incomplete":
                    self._check_insistence(exc, excluded)
                    self._check_eligibility(exc, roster.verified, eligible, parsed, container)
                raise
            self._answered(message_id)
            audience.messages += 1
            return dataclasses.replace(pending.sent(accepted), resent_first=tuple(earlier))

    async def _channel(self, channel: str) -> dict[str, Any]:
        info = self._channels.get(channel)
        if info is None:
            # A channel's id, ceiling and label picker never change: fetched once.
            info = await self.client.channel(channel)
            self._channels[channel] = info
        return info

    def _keep(self, message_id: str, pending: _Pending) -> None:
        self._pending[message_id] = pending
        if self.outbox is not None:
            self.outbox.put(
                Kept(
                    message_id=message_id,
                    channel_id=pending.channel_id,
                    sealed=pending.sealed,
                    roster_tag=pending.roster_tag,
                    banner=pending.banner,
                    request=pending.request,
                    saved_at=time.time(),
                )
            )

    def _answered(self, message_id: str) -> None:
        self._pending.pop(message_id, None)
        if self.outbox is not None:
            self.outbox.remove(message_id)

    async def _resend(self, message_id: str) -> SentMessage | None:
        """Resend a submission whose answer was lost, byte for byte; None if there is none,
        or if it never landed and the roster has changed since (then it is sealed afresh)."""
        pending = self._pending.get(message_id)
        if pending is None and self.outbox is not None:
            kept = self.outbox.get(message_id)
            pending = _Pending.of(kept) if kept is not None else None
        if pending is None:
            return None
        try:
            accepted = await self.client.submit_message(
                pending.channel_id, pending.sealed, roster_tag=pending.roster_tag
            )
        except ApiError as exc:
            self._answered(message_id)
            if exc.code in ("roster-changed", "audience-incomplete"):
                return None
            raise
        self._answered(message_id)
        return dataclasses.replace(pending.sent(accepted), resent=True)

    async def _resend_kept(self, kept: Kept) -> Unanswered:
        """Resend a kept submission that is not the current send. Without its text it cannot
        be sealed again: if it never landed and the channel changed since, it is dropped."""
        try:
            sent = await self._resend(kept.message_id)
        except ApiError as exc:
            return Unanswered(kept.message_id, None, exc.detail)
        if sent is None:
            return Unanswered(
                kept.message_id,
                None,
                "it had not reached the server, and the channel's members or devices changed "
                "since it was sealed, so it was not sent; send it again",
            )
        return Unanswered(kept.message_id, sent)

    async def resend_unanswered(self, channel: str) -> list[Unanswered]:
        """Resend, exactly, every submission to ``channel`` kept in the outbox unanswered,
        oldest first; each is dropped from the outbox once the server has answered."""
        if self.outbox is None:
            return []
        channel_id = str((await self._channel(channel))["id"])
        return [await self._resend_kept(kept) for kept in self.outbox.pending(channel_id)]

    def _check_eligibility(
        self,
        exc: ApiError,
        verified: Sequence[_Verified],
        eligible: Sequence[_Verified],
        label: Label,
        container: Container,
    ) -> None:
        """The server wants devices in the audience twice running whose certificates verify
        but whose people this client finds not eligible for ``label`` (a group the server
        widened, say): name them and why (MessagingError); otherwise return."""
        wanted = {str(d) for d in exc.problem.get("devices", [])}
        chosen = {d.device_id for d in eligible}
        named = []
        for device in verified:
            if device.device_id not in wanted or device.device_id in chosen:
                continue
            body = device.certificate
            try:
                clearance: Clearance | None = Clearance.from_canonical(body.clearance, self.catalog)
            except LabelError:
                clearance = None
            subject = Subject(body.user_id, body.nationality, clearance)
            reasons = decide(subject, label, container, self.catalog).reasons
            named.append(
                f"device {device.device_id} of {body.username} ({body.nationality}): "
                f"{'; '.join(reasons)}"
            )
        if named:
            under = (
                f" under coalition policy version {self.policy.policy.policy_version}"
                if self.policy is not None
                else ""
            )
            raise MessagingError(
                f"not sent: the server requires devices not eligible for "
                f"{render_label(label, self.catalog)} here{under} ({'; '.join(named)})"
            ) from exc

    def _check_insistence(self, exc: ApiError, excluded: Sequence[ExcludedDevice]) -> None:
        """The server wants devices in the audience twice running: if they are devices this
        client would not vouch for, say so (MessagingError); otherwise return, and the
        server's refusal stands."""
        wanted = {str(d) for d in exc.problem.get("devices", [])}
        refused = [d for d in excluded if d.device_id in wanted]
        if refused:
            named = "; ".join(f"device {d.device_id} of {d.username}: {d.reason}" for d in refused)
            raise MessagingError(
                f"not sent: the server requires devices this client does not vouch for ({named})"
            ) from exc

    async def _roster(self, channel_id: str, *, fresh: bool) -> _Roster:
        """The channel's roster with each certificate verified, kept from one send to the next
        (with the eligible devices per label) so that sending under an unchanged roster costs
        no request and no public-key work: the submit names the roster's entity tag and the
        server answers 412 if it changed. ``fresh`` fetches it again."""
        held = None if fresh else self._rosters.get(channel_id)
        now = datetime.now(UTC)
        if held is not None and all(v.certificate.expires_at > now for v in held.verified):
            return held
        entries, etag = await self.client.roster_if_changed(channel_id, None)
        entries = entries or []
        verified, excluded = await self._check_roster(entries)
        roster = _Roster(
            etag=etag,
            verified=verified,
            excluded=excluded,
            members=frozenset(str(entry["user_id"]) for entry in entries),
        )
        self._rosters[channel_id] = roster
        return roster

    def roster_changed(
        self, channel_id: str | None = None, *, etag: str | None = None, member: bool = True
    ) -> None:
        """Forget what is kept of ``channel_id``'s roster (None: of every channel), as a stream's
        ``roster-changed`` frame says to, so that the next send fetches it afresh instead of
        being refused with 412 first. A roster already held under ``etag`` (fetched after the
        change) is kept. ``member=False`` (this user was removed) also forgets the channel
        and its audience."""
        if channel_id is None:
            self._rosters.clear()
            self.share_history_soon()  # any channel's roster may have changed
            return
        if member:
            self.share_history_soon(channel_id)
        held = self._rosters.get(channel_id)
        if held is not None and (etag is None or held.etag != etag or not member):
            del self._rosters[channel_id]
        if not member:
            self._audiences.pop(channel_id, None)
            for ref in [r for r, info in self._channels.items() if info.get("id") == channel_id]:
                del self._channels[ref]

    def share_history_soon(self, channel_id: str | None = None) -> None:
        """Run ``history_sharer`` for ``channel_id`` (None: for every channel of this user) in
        the background, if one is set: once at a time per channel, and once more after if the
        roster changed again meanwhile. The stream's roster notices call this; a client that
        was offline calls it when it comes back, since it heard nothing meanwhile."""
        if self.history_sharer is None:
            return
        key = channel_id or "*"
        running = self._sharing.get(key)
        if running is not None and not running.done():
            self._share_again.add(key)
            return
        work = self._run_share(channel_id) if channel_id else self._share_everywhere()
        self._sharing[key] = asyncio.get_running_loop().create_task(work)

    async def _share_everywhere(self) -> None:
        while True:
            self._share_again.discard("*")
            await asyncio.sleep(random.uniform(0, self.history_jitter))
            try:
                found = await self.client.channels()
            except (ApiError, ConnectionFailed) as exc:
                if self.on_history is not None:
                    self.on_history("*", exc)
                return
            for channel in found:
                self.share_history_soon(str(channel["id"]))
            if "*" not in self._share_again:
                return

    async def _run_share(self, channel_id: str) -> None:
        while self.history_sharer is not None:
            self._share_again.discard(channel_id)
            await asyncio.sleep(random.uniform(0, self.history_jitter))
            try:
                outcome: Any = await self.history_sharer(channel_id)
            except (ApiError, ConnectionFailed, MessagingError) as exc:
                outcome = exc  # another member's client may share instead; said, not raised
            if self.on_history is not None:
                self.on_history(channel_id, outcome)
            if channel_id not in self._share_again:
                return

    async def _check_roster(
        self, roster: Sequence[Mapping[str, Any]]
    ) -> tuple[list[_Verified], list[ExcludedDevice]]:
        """Each roster device's certificate, verified against the pins and against the device
        id and keys the server gives; the rest excluded with the reason."""
        verified: list[_Verified] = []
        excluded: list[ExcludedDevice] = []
        now = datetime.now(UTC)
        if self.transparency is not None:
            self.transparency.forget()  # a roster checked afresh: its devices' status too
        for entry in roster:
            device_id = str(entry.get("device_id"))
            try:
                body = await self._verify_certificate(entry.get("certificate"), now)
                if body.device_id != device_id or body.user_id != entry.get("user_id"):
                    raise _Unverifiable("its certificate is for another device or user")
                listed = keys.DevicePublicKeys(
                    keys.b64u_decode(entry["signing_key"]),
                    keys.b64u_decode(entry["encryption_key"]),
                )
                if listed != body.device_keys:
                    raise _Unverifiable("the server lists keys other than the certified ones")
                if self.transparency is not None:
                    await self._check_transparency(body)
            except (_Unverifiable, KeyError, TypeError, ValueError) as exc:
                reason = str(exc) if isinstance(exc, _Unverifiable) else f"malformed entry: {exc}"
                excluded.append(ExcludedDevice(device_id, str(entry.get("username")), reason))
                continue
            verified.append(_Verified(device_id, body))
        return verified, excluded

    async def _check_transparency(self, body: keys.CertificateBody) -> None:
        assert self.transparency is not None
        try:
            await self.transparency.check(body)
        except CheckpointRefused as exc:
            # Not one device but the whole log is in doubt: nothing is sealed to anyone.
            raise MessagingError(
                f"not sent: the server's key directory is refused: {exc} (PROTOCOL.md §19.4)"
            ) from exc
        except (TransparencyError, ApiError) as exc:
            raise _Unverifiable(f"the key directory does not vouch for it: {exc}") from exc

    def _eligible(
        self, verified: Sequence[_Verified], label: Label, container: Container
    ) -> list[_Verified]:
        """The devices whose certified person may receive ``label`` in ``container``.

        None at all means this device may not have it either: say why, as the server would.
        """
        eligible = []
        mine: tuple[str, ...] = ("this device's certificate does not verify",)
        for device in verified:
            body = device.certificate
            try:
                clearance: Clearance | None = Clearance.from_canonical(body.clearance, self.catalog)
            except LabelError:
                clearance = None  # a clearance this catalog cannot read: denied
            subject = Subject(body.user_id, body.nationality, clearance)
            decision = decide(subject, label, container, self.catalog)
            if decision.allowed:
                eligible.append(device)
            elif device.device_id == self.device_id:
                mine = decision.reasons
        if not eligible:
            banner = render_label(label, self.catalog)
            raise MessagingError(f"you may not send {banner} here: {'; '.join(mine)}")
        return eligible

    async def _audience(self, channel_id: str, eligible: Sequence[_Verified]) -> _Audience:
        """The cached audience if it fits ``eligible`` still, else a new one, stored."""
        devices = frozenset(
            (
                d.device_id,
                d.certificate.device_keys.signing_key,
                d.certificate.device_keys.encryption_key,
            )
            for d in eligible
        )
        now = datetime.now(UTC)
        cached = self._audiences.get(channel_id)
        if cached is not None and cached.usable_for(devices, now):
            return cached
        sealed, key = envelopes.create_audience(
            self._device_keys,
            audience_id=str(uuid.uuid4()),
            container=channel_id,
            creator_user=self.user_id,
            creator_device=self.device_id,
            recipients=[
                envelopes.Recipient(d.device_id, d.certificate.device_keys) for d in eligible
            ],
            created_at=now,
        )
        created = await self.client.create_audience(channel_id, sealed.to_json())
        audience = _Audience(str(created["audience_id"]), key, devices, now)
        self._audiences[channel_id] = audience
        return audience

    # --- certificates and pins ---------------------------------------------------------------

    async def _verify_certificate(self, value: Any, now: datetime) -> keys.CertificateBody:
        """The certificate's body, verified against the pins. A certificate verified before
        under the same pinned key is not verified again (only its validity period is checked
        again): a roster fetched afresh after a change costs public-key work only for the
        certificates that are new, and a sender's certificate is verified once, not per
        message."""
        if value is None:
            raise _Unverifiable("the device has no certificate")
        try:
            certificate = keys.DeviceCertificate.from_json(value)
            nation = certificate.body.get("nation")
            trusted: Mapping[str, bytes] | bytes
            pinned: bytes | None
            if self.policy is not None:
                trusted = pinned = self._policy_key(certificate.body)
            else:
                pins = await self._pins_for(nation)
                trusted, pinned = pins, pins.get(nation) if isinstance(nation, str) else None
            key = (json.dumps(value, sort_keys=True), pinned)
            held = self._verified.get(key)
            if held is not None and held.issued_at <= now < held.expires_at:
                self._verified.move_to_end(key)
                return held
            body = keys.verify_certificate(certificate, trusted, now=now)
        except keys.CertificateError as exc:
            raise _Unverifiable(f"its certificate does not verify: {exc}") from exc
        self._verified[key] = body
        while len(self._verified) > MAX_VERIFIED_CERTIFICATES:
            self._verified.popitem(last=False)
        return body

    def _policy_key(self, body: Mapping[str, Any]) -> bytes:
        """The authority key the coalition policy held lists for the certificate's nation
        under the key id it names; a nation or key the policy does not list is refused."""
        assert self.policy is not None
        policy = self.policy.policy
        nation, key_id = body.get("nation"), body.get("authority_key_id")
        entry = policy.nations.get(nation) if isinstance(nation, str) else None
        if entry is None:
            raise _Unverifiable(
                f"its certificate is of nation {nation}, which coalition policy version "
                f"{policy.policy_version} does not list: the coalition has not admitted it"
            )
        listed = entry.authority_keys.get(key_id) if isinstance(key_id, str) else None
        if listed is None:
            raise _Unverifiable(
                f"its certificate names authority key {key_id}, which coalition policy version "
                f"{policy.policy_version} does not list for {nation}"
            )
        return listed

    async def _pins_for(self, nation: object) -> dict[str, bytes]:
        """The pinned authority keys, first pinning ``nation`` from the server if it is not
        pinned yet (trust on first use, as at enrolment; at most one attempt per nation)."""
        pins = self.keystore.pins()
        if not isinstance(nation, str) or nation in pins or nation in self._tofu_tried:
            return pins
        self._tofu_tried.add(nation)
        for entry in await self.client.nations():
            if entry.get("code") == nation:
                try:
                    self.keystore.pin(nation, keys.b64u_decode(entry["authority_key"]))
                except (KeyError, ValueError):
                    return pins  # a malformed key pins nothing; the certificate fails
        return self.keystore.pins()

    # --- reading -----------------------------------------------------------------------------

    async def read(
        self, channel: str, after: int = 0, *, content_types: Sequence[str] = (TEXT_TYPE,)
    ) -> list[ReceivedMessage]:
        """This device's messages in ``channel`` after sequence number ``after``, verified;
        those of ``content_types`` (media types) decoded into ``text``."""
        found: list[ReceivedMessage] = []
        while True:
            page = await self.client.channel_messages(channel, after=after)
            found += [await self.open_item(i, content_types=content_types) for i in page["items"]]
            after = int(page["cursor"])
            if not page["more"]:
                return found

    async def sync(
        self, after: int | None = None, *, content_types: Sequence[str] = (TEXT_TYPE,)
    ) -> list[ReceivedMessage]:
        """This device's messages in every channel after ``after`` (default: ``cursor``),
        verified (those of ``content_types`` decoded into ``text``); advances ``cursor``."""
        after = self.cursor if after is None else after
        found: list[ReceivedMessage] = []
        while True:
            page = await self.client.sync(after=after)
            found += [await self.open_item(i, content_types=content_types) for i in page["items"]]
            after = int(page["cursor"])
            self.cursor = max(self.cursor, after)
            if not page["more"]:
                return found

    async def open_item(
        self, item: Mapping[str, Any], *, content_types: Sequence[str] = (TEXT_TYPE,)
    ) -> ReceivedMessage:
        """Verify and decrypt one delivered item (as ``/v1/sync`` and the stream give it).

        Only items of ``content_types`` (media types, without parameters) are decoded into
        ``text``; one of another type that verifies comes back verified with ``text`` None
        (its type is in ``content_type``), for the caller to say what it is. Never raises for
        a bad item: it comes back with ``verified=False`` and the reason.
        """
        seq = item.get("seq")
        channel_id = item.get("channel_id")
        claimed = item.get("label")
        message = item.get("message")
        header = message.get("header") if isinstance(message, Mapping) else None
        base: dict[str, Any] = {
            "seq": seq if isinstance(seq, int) else -1,
            "channel_id": str(channel_id),
            "message_id": None,
            "sender": None,
            "sender_nation": None,
            "banner": str(claimed) if isinstance(claimed, str) else "(no label)",
            "label": None,
            "text": None,
            "sent_at": None,
        }
        if isinstance(header, Mapping):
            # Claims until verified; kept so that a warning can say which message it is.
            for field, name in (("message_id", "message_id"), ("sender", "sender_user")):
                value = header.get(name)
                base[field] = value if isinstance(value, str) else None
        try:
            opened = await self._open(item, content_types)
        except _Unverifiable as exc:
            return ReceivedMessage(**base, verified=False, problem=str(exc))
        except (KeyError, TypeError, ValueError) as exc:
            problem = f"the delivered item is malformed: {exc}"
            return ReceivedMessage(**base, verified=False, problem=problem)
        return ReceivedMessage(**{**base, **opened}, verified=True, problem=None)

    async def _open(self, item: Mapping[str, Any], content_types: Sequence[str]) -> dict[str, Any]:
        channel_id = item["channel_id"]
        try:
            sealed = envelopes.SealedMessage.from_json(item["message"])
            header = envelopes.check_message_header(sealed.header)
        except envelopes.EnvelopeError as exc:
            raise _Unverifiable(f"the message is malformed: {exc}") from exc
        try:
            body = await self._verify_certificate(item.get("sender_certificate"), datetime.now(UTC))
        except _Unverifiable as exc:
            raise _Unverifiable(f"the sender's device cannot be trusted: {exc}") from exc
        if body.device_id != header.sender_device or body.user_id != header.sender_user:
            raise _Unverifiable(
                "the sender's certificate is for another device or user than the message names"
            )
        audience = item["audience"]
        try:
            audience_header = envelopes.check_audience_header(audience["header"])
        except envelopes.EnvelopeError as exc:
            raise _Unverifiable(f"the message's audience is malformed: {exc}") from exc
        if (
            audience_header.audience_id != header.audience_id
            or audience_header.creator_device != header.sender_device
            or audience_header.creator_user != header.sender_user
            or audience_header.container != header.container
        ):
            raise _Unverifiable("the message came with an audience its sender did not make for it")
        signing_key = body.device_keys.signing_key
        grant = item.get("grant")
        released: _Released | None = None
        try:
            if grant is not None:
                released = await self._open_grant(grant, sealed.header, header.label)
                plaintext = envelopes.decrypt_with_item_key(sealed, released.item_key, signing_key)
            else:
                audience_key = envelopes.open_audience_envelope(
                    self._device_keys,
                    self.device_id,
                    audience["header"],
                    keys.b64u_decode(audience["signature"]),
                    keys.b64u_decode(audience["envelope"]),
                    signing_key,
                )
                plaintext = envelopes.decrypt_message(sealed, audience_key, signing_key)
        except envelopes.EnvelopeError as exc:
            raise _Unverifiable(f"the message does not verify or decrypt: {exc}") from exc
        if header.container != channel_id:
            raise _Unverifiable("the message was sent to another channel than it was delivered in")
        try:
            label = Label.from_canonical(header.label, self.catalog)
            banner = render_label(label, self.catalog)
        except LabelError as exc:
            raise _Unverifiable(f"the message's label is not one this client knows: {exc}") from exc
        if label.originator != body.nationality:
            raise _Unverifiable(
                f"the label names originator {label.originator}, but the sender is of "
                f"{body.nationality}"
            )
        signed_banner = banner
        if released is not None:
            label, banner = released.label, released.banner
        if item.get("label") != banner:
            signer = f"{released.grantor} released it as" if released else "the sender signed"
            raise _Unverifiable(
                f"the server shows the label {item.get('label')!r}, but {signer} {banner}"
            )
        media_type = header.content_type.split(";", 1)[0].strip().lower()
        text: str | None = None
        if media_type in content_types:
            try:
                text = plaintext.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _Unverifiable("the message text is not valid UTF-8") from exc
        return {
            "message_id": header.message_id,
            "sender": body.username,
            "sender_nation": body.nationality,
            "banner": banner,
            "label": label,
            "text": text,
            "sent_at": header.sent_at,
            "content_type": header.content_type,
            "reply_to": header.reply_to,
            "released_by": released.grantor if released and not released.history else None,
            "original_banner": signed_banner if released and banner != signed_banner else None,
            "shared_by": released.grantor if released and released.history else None,
        }

    async def _open_grant(
        self, grant: Mapping[str, Any], item_header: Mapping[str, Any], item_label: Any
    ) -> _Released:
        """The item key from a grant delivered with an item, checked (PROTOCOL.md §16.6): the
        grantor's certificate against the pins and for the device and user the grant names,
        its signature and envelope, that it names this item, and that its label is the item's
        own label (as the sender signed it) with releasability widened. Raises _Unverifiable or
        EnvelopeError."""
        try:
            header = grants.check_grant_header(grant["header"])
        except envelopes.EnvelopeError as exc:
            raise _Unverifiable(f"the grant is malformed: {exc}") from exc
        try:
            grantor = await self._verify_certificate(
                grant.get("grantor_certificate"), datetime.now(UTC)
            )
        except _Unverifiable as exc:
            raise _Unverifiable(f"the grantor's device cannot be trusted: {exc}") from exc
        if grantor.device_id != header.grantor_device or grantor.user_id != header.grantor_user:
            raise _Unverifiable(
                "the grantor's certificate is for another device or user than the grant names"
            )
        item_key = grants.open_grant(
            self._device_keys,
            self.device_id,
            grant["header"],
            keys.b64u_decode(grant["signature"]),
            keys.b64u_decode(grant["envelope"]),
            grantor.device_keys.signing_key,
        )
        grants.check_grant_item(header, item_header)
        if header.is_history:
            label = grants.check_history_labels(header, item_label, self.catalog)
            banner = render_label(label, self.catalog)
            return _Released(item_key, label, banner, grantor.username, history=True)
        if dict(header.previous_label) != dict(item_label):
            raise _Unverifiable("the grant widens a label other than the one the sender signed")
        _, wider = grants.check_label_widening(header.previous_label, header.label, self.catalog)
        return _Released(item_key, wider, render_label(wider, self.catalog), grantor.username)

    # --- live --------------------------------------------------------------------------------

    def stream(
        self, *, keepalive: float = STREAM_KEEPALIVE, content_types: Sequence[str] = (TEXT_TYPE,)
    ) -> MessageStream:
        """The live stream, as an async context manager that is signed in (the server holds
        a subscription) once entered, and an async iterator of ``ReceivedMessage`` (those of
        ``content_types`` decoded into ``text``)."""
        return MessageStream(self, keepalive=keepalive, content_types=content_types)

    async def follow(
        self,
        *,
        content_types: Sequence[str] = (TEXT_TYPE,),
        keepalive: float = STREAM_KEEPALIVE,
        backoff: Backoff = Backoff(),
        on_status: Callable[[StreamStatus], None] | None = None,
    ) -> AsyncGenerator[ReceivedMessage, None]:
        """Live messages, verified, for as long as the caller iterates, across lost streams.

        When the stream is lost (the server restarts or closes it, the network fails), this
        connects again after a ``backoff`` delay, as many times as it takes, and once signed
        in fetches what was sent meanwhile with ``sync`` from ``cursor`` before going on live:
        no message is lost, and none is yielded twice. It starts from ``cursor`` if this
        Messenger has one (it has synced), else from now (``GET /v1/sync/head``).
        ``on_status`` hears of each connection and each loss.

        A session that expires while it follows is renewed: the server closes the stream
        saying so, and this signs in again with the device key and goes on (on_status hears
        of it as a loss); so is a session this client knows has expired before it connects
        again after a loss.

        Raises ``StreamClosed`` when the server ends the session otherwise (signed out, device
        revoked, account disabled), ``ApiError`` when it refuses a request for another reason
        than a fault of its own (a sign-in refused included), and ``ConnectionFailed`` when
        the first connection fails.
        """
        seen = _Seen()
        first, attempt = True, 0
        while True:
            try:
                if not first and self.client.session_expired():
                    await self.client.login(self.device_id, self._device_keys)
                async with self.stream(keepalive=keepalive, content_types=content_types) as live:
                    # Signed in, so everything committed from now on is pushed: what was sent
                    # before is fetched after, and a message that comes both ways once.
                    missed: list[ReceivedMessage] = []
                    if first and self.cursor == 0:
                        self.cursor = await self.client.sync_head()
                    else:
                        missed = await self.sync(content_types=content_types)
                    if not first:
                        self.roster_changed()  # what the stream said while it was lost
                    if on_status is not None:
                        fresh = sum(1 for m in missed if m.seq not in seen)
                        on_status(StreamStatus(connected=True, resumed=not first, missed=fresh))
                    first, attempt = False, 0
                    for message in missed:
                        if seen.first_time(message.seq):
                            yield message
                    async for message in live:
                        if seen.first_time(message.seq):
                            yield message
                reason = "the server closed the stream"
            except StreamClosed as exc:
                renewable = exc.code == 4401 and SESSION_EXPIRED in str(exc)
                if first or (exc.final and not renewable):
                    raise
                if renewable:
                    # Signed in again before the next attempt; refused (the device revoked
                    # meanwhile, say), the ApiError ends this.
                    await self.client.login(self.device_id, self._device_keys)
                reason = str(exc)
            except ConnectionFailed as exc:
                if first:
                    raise
                reason = str(exc)
            except ApiError as exc:
                if first or (exc.status < 500 and exc.status != 429):
                    raise
                reason = exc.detail
            delay = backoff.delay(attempt)
            attempt += 1
            if on_status is not None:
                on_status(StreamStatus(connected=False, reason=reason, retry_in=delay))
            await asyncio.sleep(delay)

    async def listen(self) -> AsyncIterator[ReceivedMessage]:
        """Live messages as they arrive, verified, until the server closes the stream."""
        async with self.stream() as live:
            async for message in live:
                yield message


class MessageStream:
    """``/v1/stream``: authenticates with the session token, answers pings, and on ``resync``
    fetches what it missed with ``sync`` from the Messenger's cursor (for a Messenger that has
    not synced, that is everything this device may read; each sequence number is yielded once
    per stream).

    A ``roster-changed`` frame makes the Messenger forget that channel's roster (every roster,
    without a channel, and on ``resync``), so that a send after it fetches the roster afresh
    rather than being refused with 412 first. Frames are read while the stream is iterated:
    a stream left unread tells the Messenger nothing, and the 412 remains the safety net.

    The server pings only when it has nothing to send, yet closes a connection that has sent
    nothing for its idle time: on a busy line the client must speak first, so a task pings
    every ``keepalive`` seconds while the stream is open.
    """

    def __init__(
        self,
        messenger: Messenger,
        *,
        keepalive: float = STREAM_KEEPALIVE,
        content_types: Sequence[str] = (TEXT_TYPE,),
    ) -> None:
        self._messenger = messenger
        self._keepalive = keepalive
        self._content_types = tuple(content_types)
        self._ws: ClientConnection | None = None
        self._pending: deque[ReceivedMessage] = deque()
        self._seen: set[int] = set()
        self._pinger: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        messenger = self._messenger
        if messenger.client.token is None:
            raise ConnectionFailed("not signed in")
        try:
            # No per-message deflate: frames carry ciphertext, which does not compress.
            self._ws = await ws_connect(
                messenger.stream_url, max_size=MAX_STREAM_FRAME, compression=None
            )
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
            raise ConnectionFailed(f"cannot reach {messenger.stream_url}: {exc}") from exc
        try:
            # "messages": pushes queued together may come as one frame (PROTOCOL.md §17.7).
            await self._send(
                {"type": "auth", "token": messenger.client.token, "accept": ["messages"]}
            )
            ready = await self._receive()
        except BaseException:
            await self._ws.close()
            raise
        if ready is None or ready.get("type") != "ready":
            await self._ws.close()
            raise ConnectionFailed("the server did not accept the stream's sign-in")
        self._pinger = asyncio.create_task(self._keep_alive())
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pinger
        if self._ws is not None:
            await self._ws.close()

    async def _keep_alive(self) -> None:
        """Ping every ``keepalive`` seconds, however busy the line and however slow the
        reader, until the connection closes."""
        assert self._ws is not None
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(self._keepalive)
                await self._ws.send(json.dumps({"type": "ping"}))

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ReceivedMessage:
        while not self._pending:
            frame = await self._receive()
            if frame is None:
                raise StopAsyncIteration
            kind = frame.get("type")
            if kind == "ping":
                await self._send({"type": "pong"})
            elif kind == "resync":
                # What was dropped may have held roster-changed frames too.
                self._messenger.roster_changed()
                self._queue(await self._messenger.sync(content_types=self._content_types))
            elif kind == "roster-changed":
                self._roster_changed(frame)
            elif kind == "message":
                await self._open_pushed(frame)
            elif kind == "messages":
                items = frame.get("items")
                for pushed in items if isinstance(items, list) else ():
                    if isinstance(pushed, dict) and pushed.get("type") == "message":
                        await self._open_pushed(pushed)
            # anything else (a pong, a frame type from a newer server) is ignored
        return self._pending.popleft()

    async def _open_pushed(self, frame: Mapping[str, Any]) -> None:
        item = {k: v for k, v in frame.items() if k != "type"}
        opened = await self._messenger.open_item(item, content_types=self._content_types)
        self._queue([opened])
        if isinstance(item.get("seq"), int):
            self._messenger.cursor = max(self._messenger.cursor, item["seq"])

    def _roster_changed(self, frame: Mapping[str, Any]) -> None:
        channel_id, etag = frame.get("channel_id"), frame.get("etag")
        if channel_id is None:
            self._messenger.roster_changed()
        elif isinstance(channel_id, str):
            self._messenger.roster_changed(
                channel_id,
                etag=etag if isinstance(etag, str) else None,
                member=frame.get("member") is not False,
            )

    def _queue(self, messages: Sequence[ReceivedMessage]) -> None:
        for message in messages:
            if message.seq not in self._seen:
                self._seen.add(message.seq)
                self._pending.append(message)

    async def _send(self, frame: Mapping[str, Any]) -> None:
        assert self._ws is not None
        try:
            await self._ws.send(json.dumps(frame))
        except ConnectionClosed as exc:
            raise _closed(exc) from exc

    async def _receive(self) -> dict[str, Any] | None:
        """The next JSON frame; None when the server closed the stream normally."""
        assert self._ws is not None
        try:
            raw = await self._ws.recv()
        except ConnectionClosedOK:
            return None
        except ConnectionClosed as exc:
            raise _closed(exc) from exc
        with contextlib.suppress(ValueError):
            frame = json.loads(raw)
            if isinstance(frame, dict):
                return frame
        raise ConnectionFailed("the server sent a frame that is not a JSON object")


# What a close without a reason means, for the codes a server closes with on its own.
_CLOSE_MEANINGS = {1001: "the server is going away", 1012: "the server is restarting"}


def _closed(exc: ConnectionClosed) -> StreamClosed:
    code = exc.rcvd.code if exc.rcvd is not None else None
    reason = exc.rcvd.reason if exc.rcvd is not None else ""
    reason = reason or _CLOSE_MEANINGS.get(code or 0, "no reason given")
    return StreamClosed(f"the server closed the stream: {reason}", code)
