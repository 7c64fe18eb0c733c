"""Async HTTP client for the Attaché API. Errors arrive as ``ApiError`` with the problem details."""

from __future__ import annotations

import functools
import ssl
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any, Self
from urllib.parse import quote

import httpx

from protocol import enrolment, keys


class ApiError(Exception):
    """The server refused a request; ``problem`` holds its RFC 9457 problem details."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        self.code = str(problem.get("code", "error"))
        self.detail = str(problem.get("detail") or problem.get("title") or f"HTTP {status}")
        super().__init__(self.detail)


class RateLimited(ApiError):
    """The server refused the request for now (429): wait ``retry_after`` seconds, then retry.

    Nothing was done, so the same request may be sent again as it is."""

    def __init__(self, status: int, problem: dict[str, Any], retry_after: int) -> None:
        super().__init__(status, problem)
        self.retry_after = retry_after


def _retry_after(response: httpx.Response, problem: dict[str, Any]) -> int:
    """Whole seconds from the Retry-After header (or the problem's ``retry_after``); a date
    or anything unreadable counts as one second."""
    for value in (response.headers.get("retry-after"), problem.get("retry_after")):
        try:
            return max(1, int(str(value)))
        except ValueError:
            continue
    return 1


class ConnectionFailed(Exception):
    """The server could not be reached."""


class InvalidArgument(ValueError):
    """A name or id given to a request cannot be one (nothing was sent)."""


@functools.cache
def _tls() -> ssl.SSLContext:
    """httpx's own default (certifi's CA bundle, or SSL_CERT_FILE or SSL_CERT_DIR), made once
    a process: loading the bundle takes ~35 ms, which every client paid when httpx made it."""
    return httpx.create_ssl_context()


class AttacheClient:
    """One server, optionally one session token. Use as ``async with AttacheClient(url) as c``."""

    def __init__(
        self,
        server: str,
        *,
        token: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.server = server.rstrip("/")
        self.token = token
        # When the session this client signed in to ends (None: a token given, or none).
        self.token_expires_at: datetime | None = None
        self._http = httpx.AsyncClient(
            base_url=self.server, transport=transport, timeout=timeout, verify=_tls()
        )
        # ``request`` hands its requests straight to the transport that this client would
        # route them to (its own, or an environment proxy's; the server's address decides
        # which), skipping the client's layers: URL merging, cookie jar, auth flow, redirect
        # loop, response wrapper. They cost a third of the SDK's CPU per send (docs/client.md),
        # and the API uses none of them: a bearer token, no cookies, no redirect followed.
        self._transport = self._http._transport_for_url(self._http.base_url)
        self._extensions = {"timeout": self._http.timeout.as_dict()}
        self._urls: dict[str, httpx.URL] = {}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        if self._http.is_closed:
            raise RuntimeError("this client is closed")  # as the httpx client would refuse
        merged = self._http.headers.copy()  # httpx's defaults (Accept, User-Agent, ...)
        merged.update({**(headers or {}), **self._auth()})
        request = httpx.Request(
            method,
            self._url(path),
            json=json,
            params=params,
            headers=merged,
            extensions=self._extensions,
        )
        try:
            response = await self._transport.handle_async_request(request)
            try:
                await response.aread()
            finally:
                await response.aclose()
        except httpx.TransportError as exc:
            raise ConnectionFailed(f"cannot reach {self.server}: {exc}") from exc
        return self._checked(response)

    def _url(self, path: str) -> httpx.URL:
        """``path`` under the server's address, as the httpx client would join them; the few
        hundred most recent are kept, parsed (a channel's submit path is one per send)."""
        url = self._urls.get(path)
        if url is None:
            if len(self._urls) >= 512:
                self._urls.clear()
            base = self._http.base_url  # ends in "/"
            raw_path = base.raw_path + httpx.URL(path).raw_path.lstrip(b"/")
            url = self._urls[path] = base.copy_with(raw_path=raw_path)
        return url

    @staticmethod
    def _checked(response: httpx.Response) -> Any:
        """The JSON of a successful response; ApiError with the problem details otherwise."""
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"detail": response.text[:500] or response.reason_phrase}
            if not isinstance(problem, dict):
                problem = {"detail": str(problem)}
            if response.status_code == 429:
                raise RateLimited(429, problem, _retry_after(response, problem))
            raise ApiError(response.status_code, problem)
        if response.is_redirect:
            # The API never redirects; this client follows none (a bearer token must not
            # travel to wherever a redirect points), so it is said, not taken for an answer.
            where = response.headers.get("location", "elsewhere")
            raise ApiError(
                response.status_code,
                {"detail": f"the server answered {response.status_code}, a redirect to {where}"},
            )
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    # --- authentication ----------------------------------------------------------------------

    async def login(self, device_id: str, device_keys: keys.DeviceKeys) -> dict[str, Any]:
        """Challenge-response with the device's signing key; keeps the token for later calls."""
        challenge = await self.request("POST", "/v1/auth/challenges", json={"device_id": device_id})
        if challenge["server"].rstrip("/") != self.server:
            # The signed payload names the server, so a proof cannot be relayed elsewhere;
            # refuse to sign for a name other than the one we meant to talk to.
            raise ApiError(
                400,
                {
                    "detail": f"the server calls itself {challenge['server']}, not {self.server}; "
                    "use that address"
                },
            )
        payload = keys.login_payload(
            device_id=device_id, challenge=challenge["challenge"], server_origin=self.server
        )
        signature = keys.sign_login(device_keys, payload)
        session = await self.request(
            "POST",
            "/v1/auth/sessions",
            json={
                "challenge_id": challenge["challenge_id"],
                "signature": keys.b64u_encode(signature),
            },
        )
        self.token = session["token"]
        self.token_expires_at = datetime.fromisoformat(session["expires_at"])
        return dict(session)

    def session_expired(self) -> bool:
        """Whether the session this client signed in to has expired by its own clock (False
        when it did not sign in itself: a token given, or none)."""
        expires = self.token_expires_at
        return self.token is not None and expires is not None and datetime.now(UTC) >= expires

    async def logout(self) -> None:
        await self.request("DELETE", "/v1/auth/sessions/current")
        self.token = None
        self.token_expires_at = None

    async def me(self) -> dict[str, Any]:
        return dict(await self.request("GET", "/v1/me"))

    # --- directory ---------------------------------------------------------------------------

    async def nations(self) -> list[dict[str, Any]]:
        return list(await self.request("GET", "/v1/nations"))

    async def policy(self, policy_version: int | None = None) -> bytes | None:
        """The coalition policy's latest published version (or ``policy_version``) as the
        bytes served, for ``protocol.coalition`` to parse and verify; None when there is none
        (404). Public, like ``nations``."""
        path = "/v1/policy" if policy_version is None else f"/v1/policy/{int(policy_version)}"
        try:
            response = await self._http.request("GET", path, headers=self._auth())
        except httpx.TransportError as exc:
            raise ConnectionFailed(f"cannot reach {self.server}: {exc}") from exc
        if response.status_code == 404:
            return None
        self._checked(response)
        return response.content

    async def propose_policy(self, signed: dict[str, Any]) -> dict[str, Any]:
        """Propose the next coalition policy version, or add the signatures ``signed`` (a
        signed policy's wire form) carries to the stored proposal of the same version: the
        proposal as stored, with its signers, threshold and whether it is ready."""
        return dict(await self.request("POST", "/v1/policy/proposals", json=signed))

    async def policy_proposals(self) -> list[dict[str, Any]]:
        """The proposals for the version after the latest published one, with their signers."""
        return list(await self.request("GET", "/v1/policy/proposals"))

    async def policy_proposal(self, digest: str) -> bytes:
        """The proposal ``digest`` with the signatures collected so far, as the bytes served."""
        try:
            response = await self._http.request(
                "GET", f"/v1/policy/proposals/{_segment(digest)}", headers=self._auth()
            )
        except httpx.TransportError as exc:
            raise ConnectionFailed(f"cannot reach {self.server}: {exc}") from exc
        self._checked(response)
        return response.content

    async def create_nation(self, code: str, name: str, authority_key: bytes) -> dict[str, Any]:
        body = {"code": code, "name": name, "authority_key": keys.b64u_encode(authority_key)}
        return dict(await self.request("POST", "/v1/nations", json=body))

    async def groups(self) -> list[dict[str, Any]]:
        return list(await self.request("GET", "/v1/groups"))

    async def create_group(
        self, name: str, members: list[str], description: str = ""
    ) -> dict[str, Any]:
        body = {"name": name, "members": members, "description": description}
        return dict(await self.request("POST", "/v1/groups", json=body))

    async def offices(self, nation: str | None = None) -> list[dict[str, Any]]:
        params = {"nation": nation} if nation else None
        return list(await self.request("GET", "/v1/offices", params=params))

    async def create_office(self, nation: str, name: str, host: str = "") -> dict[str, Any]:
        body = {"nation": nation, "name": name, "host": host}
        return dict(await self.request("POST", "/v1/offices", json=body))

    async def users(self, nation: str | None = None) -> list[dict[str, Any]]:
        params = {"nation": nation} if nation else None
        return list(await self.request("GET", "/v1/users", params=params))

    async def user(self, user: str) -> dict[str, Any]:
        """A user by id or username."""
        return dict(await self.request("GET", f"/v1/users/{_segment(user)}"))

    async def create_user(self, **fields: Any) -> dict[str, Any]:
        return dict(await self.request("POST", "/v1/users", json=fields))

    async def update_user(self, user: str, **fields: Any) -> dict[str, Any]:
        return dict(await self.request("PATCH", f"/v1/users/{_segment(user)}", json=fields))

    async def set_clearance(
        self, user: str, clearance: str, certificates: list[dict[str, Any]]
    ) -> dict[str, Any]:
        body = {"clearance": clearance, "certificates": certificates}
        return dict(await self.request("PUT", f"/v1/users/{_segment(user)}/clearance", json=body))

    # --- devices -----------------------------------------------------------------------------

    async def issue_enrolment_code(self, user: str) -> dict[str, Any]:
        return dict(await self.request("POST", f"/v1/users/{_segment(user)}/enrolment-codes"))

    async def enrol(
        self, *, username: str, code: str, name: str, device_keys: keys.DeviceKeys
    ) -> dict[str, Any]:
        """Register this device's public keys with a one-time code; it starts pending."""
        public = device_keys.public()
        proof = keys.sign_registration(
            device_keys,
            user=username,
            nonce=keys.b64u_encode(enrolment.code_digest(code)),
            server=self.server,
        )
        body = {
            "username": username,
            "code": code,
            "name": name,
            "signing_key": keys.b64u_encode(public.signing_key),
            "encryption_key": keys.b64u_encode(public.encryption_key),
            "proof": keys.b64u_encode(proof),
        }
        return dict(await self.request("POST", "/v1/devices", json=body))

    async def devices(self, status: str | None = None) -> list[dict[str, Any]]:
        params = {"status": status} if status else None
        return list(await self.request("GET", "/v1/devices", params=params))

    async def device(self, device_id: str) -> dict[str, Any]:
        return dict(await self.request("GET", f"/v1/devices/{_segment(device_id)}"))

    async def submit_certificate(
        self, device_id: str, certificate: dict[str, Any]
    ) -> dict[str, Any]:
        body = {"certificate": certificate}
        path = f"/v1/devices/{_segment(device_id)}/certificate"
        return dict(await self.request("PUT", path, json=body))

    async def revoke_device(self, device_id: str, reason: str = "") -> dict[str, Any]:
        body = {"reason": reason}
        path = f"/v1/devices/{_segment(device_id)}/revoke"
        return dict(await self.request("POST", path, json=body))

    # --- channels and messages ---------------------------------------------------------------

    async def catalog(self) -> dict[str, Any]:
        """The label catalog in force: ``toml``, ``version``, the directory's ``nations`` and
        ``groups`` (``Catalog.from_toml(toml).with_directory(nations, groups)``)."""
        return dict(await self.request("GET", "/v1/catalog"))

    async def create_channel(
        self,
        name: str,
        ceiling: str,
        labels: Sequence[str] = (),
        default_label: str | None = None,
    ) -> dict[str, Any]:
        body = {
            "name": name,
            "ceiling": ceiling,
            "labels": list(labels),
            "default_label": default_label,
        }
        return dict(await self.request("POST", "/v1/channels", json=body))

    async def channels(self) -> list[dict[str, Any]]:
        """The channels the caller is a member of."""
        return list(await self.request("GET", "/v1/channels"))

    async def channel(self, ref: str) -> dict[str, Any]:
        """A channel of the caller's, by id or name."""
        return dict(await self.request("GET", f"/v1/channels/{_segment(ref)}"))

    async def add_member(self, channel: str, user: str) -> dict[str, Any]:
        """Add ``user`` (id or username); returns the channel with its members."""
        path = f"/v1/channels/{_segment(channel)}/members"
        return dict(await self.request("POST", path, json={"user": user}))

    async def remove_member(self, channel: str, user: str) -> None:
        await self.request("DELETE", f"/v1/channels/{_segment(channel)}/members/{_segment(user)}")

    async def roster(self, channel: str) -> list[dict[str, Any]]:
        """Members' active devices with their keys and certificates, as the server sees them:
        verify each certificate before sealing anything to it."""
        return list(await self.request("GET", f"/v1/channels/{_segment(channel)}/roster"))

    async def roster_if_changed(
        self, channel: str, etag: str | None
    ) -> tuple[list[dict[str, Any]] | None, str | None]:
        """The roster and its entity tag, or ``(None, etag)`` when the roster tagged ``etag``
        still holds (the server answered 304)."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if etag is not None:
            headers["If-None-Match"] = etag
        path = f"/v1/channels/{_segment(channel)}/roster"
        try:
            response = await self._http.request("GET", path, headers=headers)
        except httpx.TransportError as exc:
            raise ConnectionFailed(f"cannot reach {self.server}: {exc}") from exc
        if response.status_code == 304:
            return None, etag
        return list(self._checked(response)), response.headers.get("etag")

    async def create_audience(self, channel: str, sealed: dict[str, Any]) -> dict[str, Any]:
        """Store an audience (``SealedAudience.to_json()``)."""
        path = f"/v1/channels/{_segment(channel)}/audiences"
        return dict(await self.request("POST", path, json=sealed))

    async def submit_message(
        self, channel: str, sealed: dict[str, Any], *, roster_tag: str | None = None
    ) -> dict[str, Any]:
        """Submit a message (``SealedMessage.to_json()``); idempotent on its message id.
        With ``roster_tag`` (the ETag of the roster it was sealed for), a roster changed since
        is refused with 412 ``roster-changed`` before anything is decided."""
        path = f"/v1/channels/{_segment(channel)}/messages"
        headers = {"If-Match": roster_tag} if roster_tag else None
        return dict(await self.request("POST", path, json=sealed, headers=headers))

    async def channel_messages(
        self, channel: str, after: int = 0, limit: int = 100
    ) -> dict[str, Any]:
        """This device's deliveries in one channel after ``after``: ``items``, ``cursor``,
        ``more``."""
        path = f"/v1/channels/{_segment(channel)}/messages"
        params = {"after": after, "limit": limit}
        return dict(await self.request("GET", path, params=params))

    async def sync(self, after: int = 0, limit: int = 100) -> dict[str, Any]:
        """This device's deliveries in every channel after ``after``: ``items``, ``cursor``,
        ``more``."""
        params = {"after": after, "limit": limit}
        return dict(await self.request("GET", "/v1/sync", params=params))

    async def sync_head(self) -> int:
        """The cursor of now: a sync from it later gives only what is sent from now on."""
        return int((await self.request("GET", "/v1/sync/head"))["cursor"])

    async def message_recipients(self, message_id: str) -> dict[str, Any]:
        """Who a message of yours was released to, and the members it was not, with why."""
        path = f"/v1/messages/{_segment(message_id)}/recipients"
        return dict(await self.request("GET", path))

    # --- committees and meetings -------------------------------------------------------------

    async def create_committee(
        self,
        name: str,
        ceiling: str,
        *,
        chair: str,
        secretary: str,
        labels: Sequence[str] = (),
        default_label: str | None = None,
    ) -> dict[str, Any]:
        """A committee and its channel; ``chair`` and ``secretary`` are ids or usernames."""
        body = {
            "name": name,
            "ceiling": ceiling,
            "chair": chair,
            "secretary": secretary,
            "labels": list(labels),
            "default_label": default_label,
        }
        return dict(await self.request("POST", "/v1/committees", json=body))

    async def committees(self) -> list[dict[str, Any]]:
        """The committees the caller is a member of."""
        return list(await self.request("GET", "/v1/committees"))

    async def committee(self, ref: str) -> dict[str, Any]:
        """A committee of the caller's, by id or name."""
        return dict(await self.request("GET", f"/v1/committees/{_segment(ref)}"))

    async def add_committee_member(self, committee: str, user: str) -> dict[str, Any]:
        path = f"/v1/committees/{_segment(committee)}/members"
        return dict(await self.request("POST", path, json={"user": user}))

    async def remove_committee_member(self, committee: str, user: str) -> None:
        path = f"/v1/committees/{_segment(committee)}/members/{_segment(user)}"
        await self.request("DELETE", path)

    async def schedule_meeting(
        self, committee: str, starts_at: str, info_message_id: str
    ) -> dict[str, Any]:
        """Link a meeting message already sent in the committee's channel; ``starts_at`` is
        ISO 8601 with a time zone."""
        path = f"/v1/committees/{_segment(committee)}/meetings"
        body = {"starts_at": starts_at, "info_message_id": info_message_id}
        return dict(await self.request("POST", path, json=body))

    async def meetings(
        self, committee: str, since: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if since is not None:
            params["since"] = since
        path = f"/v1/committees/{_segment(committee)}/meetings"
        return list(await self.request("GET", path, params=params))

    async def meeting(self, meeting_id: str) -> dict[str, Any]:
        """A meeting's structure: agenda, minutes and action items, as message ids."""
        return dict(await self.request("GET", f"/v1/meetings/{_segment(meeting_id)}"))

    async def cancel_meeting(self, meeting_id: str) -> dict[str, Any]:
        path = f"/v1/meetings/{_segment(meeting_id)}/cancel"
        return dict(await self.request("POST", path))

    async def add_agenda_item(self, meeting_id: str, message_id: str) -> dict[str, Any]:
        path = f"/v1/meetings/{_segment(meeting_id)}/agenda"
        return dict(await self.request("POST", path, json={"message_id": message_id}))

    async def reorder_agenda(self, meeting_id: str, item_ids: Sequence[str]) -> dict[str, Any]:
        path = f"/v1/meetings/{_segment(meeting_id)}/agenda/order"
        return dict(await self.request("PUT", path, json={"item_ids": list(item_ids)}))

    async def remove_agenda_item(self, meeting_id: str, item_id: str) -> None:
        path = f"/v1/meetings/{_segment(meeting_id)}/agenda/{_segment(item_id)}"
        await self.request("DELETE", path)

    async def attach_document(
        self, meeting_id: str, item_id: str, version_id: str
    ) -> dict[str, Any]:
        path = f"/v1/meetings/{_segment(meeting_id)}/agenda/{_segment(item_id)}/documents"
        return dict(await self.request("POST", path, json={"version_id": version_id}))

    async def record_minutes(self, meeting_id: str, message_id: str) -> dict[str, Any]:
        path = f"/v1/meetings/{_segment(meeting_id)}/minutes"
        return dict(await self.request("PUT", path, json={"message_id": message_id}))

    async def add_action_item(self, meeting_id: str, message_id: str) -> dict[str, Any]:
        path = f"/v1/meetings/{_segment(meeting_id)}/action-items"
        return dict(await self.request("POST", path, json={"message_id": message_id}))

    async def action_item(self, item_id: str) -> dict[str, Any]:
        return dict(await self.request("GET", f"/v1/action-items/{_segment(item_id)}"))

    async def update_action_item(self, item_id: str, message_id: str) -> dict[str, Any]:
        path = f"/v1/action-items/{_segment(item_id)}/updates"
        return dict(await self.request("POST", path, json={"message_id": message_id}))

    # --- documents ---------------------------------------------------------------------------

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def begin_document_version(self, channel: str, header: dict[str, Any]) -> dict[str, Any]:
        path = f"/v1/channels/{_segment(channel)}/documents"
        return dict(await self.request("POST", path, json={"header": header}))

    async def document_versions(self, channel: str) -> list[dict[str, Any]]:
        return list(await self.request("GET", f"/v1/channels/{_segment(channel)}/documents"))

    async def upload_state(self, version_id: str) -> dict[str, Any]:
        return dict(await self.request("GET", f"/v1/uploads/{_segment(version_id)}"))

    async def upload_content(
        self, version_id: str, offset: int, content: AsyncIterator[bytes]
    ) -> dict[str, Any]:
        """Stream ciphertext from ``offset``; raises ConnectionFailed if the line drops."""
        try:
            response = await self._http.put(
                f"/v1/uploads/{_segment(version_id)}/content",
                params={"offset": offset},
                content=content,
                headers={**self._auth(), "Content-Type": "application/octet-stream"},
                timeout=None,
            )
        except httpx.TransportError as exc:
            raise ConnectionFailed(f"the upload was interrupted: {exc}") from exc
        return dict(self._checked(response))

    async def complete_upload(self, version_id: str, trailer: dict[str, Any]) -> dict[str, Any]:
        path = f"/v1/uploads/{_segment(version_id)}/complete"
        return dict(await self.request("POST", path, json={"trailer": trailer}))

    async def discard_upload(self, version_id: str) -> None:
        await self.request("DELETE", f"/v1/uploads/{_segment(version_id)}")

    async def open_document_version(self, version_id: str) -> dict[str, Any]:
        return dict(await self.request("GET", f"/v1/documents/versions/{_segment(version_id)}"))

    async def download_content(self, version_id: str) -> AsyncIterator[bytes]:
        """The stored ciphertext of a version, as it streams in."""
        path = f"/v1/documents/versions/{_segment(version_id)}/content"
        try:
            async with self._http.stream(
                "GET", path, headers=self._auth(), timeout=None
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    self._checked(response)
                async for piece in response.aiter_bytes():
                    yield piece
        except httpx.TransportError as exc:
            raise ConnectionFailed(f"the download was interrupted: {exc}") from exc

    # --- release requests --------------------------------------------------------------------

    async def request_release(
        self, item_type: str, item_id: str, add: Sequence[str], reason: str = ""
    ) -> dict[str, Any]:
        """Ask the item's originator nation to release it to the nations ``add`` too."""
        body = {"item_type": item_type, "item_id": item_id, "add": list(add), "reason": reason}
        return dict(await self.request("POST", "/v1/releases", json=body))

    async def releases(self, status: str | None = None) -> list[dict[str, Any]]:
        """Your release requests and, for a disclosure officer, those of your nation's items."""
        params = {"status": status} if status else None
        return list(await self.request("GET", "/v1/releases", params=params))

    async def decide_release(
        self, request_id: str, *, approve: bool, reason: str = ""
    ) -> dict[str, Any]:
        verb = "approve" if approve else "refuse"
        path = f"/v1/releases/{_segment(request_id)}/{verb}"
        return dict(await self.request("POST", path, json={"reason": reason}))

    async def grant_release(self, request_id: str, grant: dict[str, Any]) -> dict[str, Any]:
        """Submit the grant (``SealedGrant.to_json()``) carrying out an approved request."""
        path = f"/v1/releases/{_segment(request_id)}/grant"
        return dict(await self.request("POST", path, json={"grant": grant}))

    async def history(self, channel: str, after: int = 0, limit: int = 100) -> dict[str, Any]:
        """A page of a channel's history window (PROTOCOL.md §17.9.1): ``due`` (items this
        device holds that members eligible now lack) and ``waiting`` (items this device's user
        may read but holds no key to), with ``cursor`` and ``more``."""
        path = f"/v1/channels/{_segment(channel)}/history"
        return dict(await self.request("GET", path, params={"after": after, "limit": limit}))

    async def grant_history(self, channel: str, grant: dict[str, Any]) -> dict[str, Any]:
        """Submit a history grant (``SealedGrant.to_json()`` with ``request_id`` null)."""
        path = f"/v1/channels/{_segment(channel)}/history"
        return dict(await self.request("POST", path, json={"grant": grant}))

    async def set_history_window(self, channel: str, days: int) -> dict[str, Any]:
        """How many days back a history grant reaches in ``channel`` (its creator only)."""
        path = f"/v1/channels/{_segment(channel)}/history-window"
        return dict(await self.request("PUT", path, json={"days": days}))


def _segment(value: str) -> str:
    """One URL path segment: a name typed by a user must not reach another route, and an
    empty one (which would name the collection instead) is refused before anything is sent,
    as are ``.`` and ``..``, which a URL resolves away (RFC 3986 §5.2.4: ``user("..")`` would
    ask for ``/v1``); no name or id the server gives out is either."""
    if not value:
        raise InvalidArgument("an empty name or id names nothing: give one")
    if value in (".", ".."):
        raise InvalidArgument(f"{value!r} is not a name or id: a URL would resolve it away")
    return quote(value, safe="")
