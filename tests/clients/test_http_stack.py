"""What the SDK's HTTP stack needs to stay cheap per request."""

from __future__ import annotations

import importlib.util
import sys

import httpx
import pytest
from httpcore._synchronization import current_async_library

from clients.sdk._client import AttacheClient, ConnectionFailed, InvalidArgument, _segment


async def test_httpcore_finds_its_event_loop_without_an_import_search() -> None:
    # httpcore asks sniffio which event loop runs it several times per request; without
    # sniffio installed each ask is a failed import that searches sys.path again (~95 µs,
    # about 3 V a send in the channel benchmark). A declared dependency (pyproject.toml).
    assert importlib.util.find_spec("sniffio") is not None
    assert current_async_library() == "asyncio"
    assert "sniffio" in sys.modules


async def test_requests_go_out_as_the_httpx_client_would_send_them() -> None:
    # AttacheClient.request hands its requests to the transport directly, past the httpx
    # client's layers: what reaches the wire must be what the client itself would send.
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    client = AttacheClient("https://attache.example/base/", token="t0k", timeout=7.0)
    client._http._transport = client._transport = httpx.MockTransport(answer)
    async with client:
        path = "/v1/channels/a%2Fb/messages"
        body = {"message_id": "é", "n": [1, 2]}
        assert await client.request("POST", path, json=body, headers={"If-Match": "x"}) == {
            "ok": True
        }
        await client._http.request(
            "POST", path, json=body, headers={"If-Match": "x", **client._auth()}
        )
        assert await client.request("GET", "/v1/sync", params={"after": 3}) == {"ok": True}
        await client._http.request("GET", "/v1/sync", params={"after": 3}, headers=client._auth())
    direct_post, through_post, direct_get, through_get = seen
    for direct, through in ((direct_post, through_post), (direct_get, through_get)):
        assert direct.method == through.method
        assert direct.url == through.url
        assert direct.headers.raw == through.headers.raw
        assert direct.content == through.content
        assert direct.extensions["timeout"] == through.extensions["timeout"]
    assert str(direct_post.url) == "https://attache.example/base/v1/channels/a%2Fb/messages"
    assert str(direct_get.url) == "https://attache.example/base/v1/sync?after=3"


def test_requests_take_the_environment_proxy_as_the_httpx_client_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "direct.example")
    proxied = AttacheClient("https://attache.example")
    assert proxied._transport is not proxied._http._transport  # the proxy's
    direct = AttacheClient("https://direct.example")
    assert direct._transport is direct._http._transport


async def test_a_transport_failure_is_a_connection_failure() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = AttacheClient("http://127.0.0.1:9", transport=httpx.MockTransport(refuse))
    async with client:
        with pytest.raises(ConnectionFailed, match="cannot reach"):
            await client.request("GET", "/healthz")


async def test_a_closed_client_sends_nothing() -> None:
    seen: list[httpx.Request] = []
    client = AttacheClient(
        "http://127.0.0.1:9",
        transport=httpx.MockTransport(lambda r: seen.append(r) or httpx.Response(204)),
    )
    await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await client.request("GET", "/healthz")
    assert seen == []


@pytest.mark.parametrize("name", [".", "..", ""])
async def test_a_name_a_url_would_resolve_away_is_refused_before_anything_is_sent(
    name: str,
) -> None:
    # "." and ".." are dot segments: joined into a path they are resolved away, so that
    # user("..") asked for /v1 and channel("..") for the API's root.
    seen: list[httpx.Request] = []
    client = AttacheClient("https://attache.example/", token="t0k")
    client._http._transport = client._transport = httpx.MockTransport(
        lambda request: seen.append(request) or httpx.Response(200, json={})
    )
    async with client:
        for call in (client.user, client.channel, client.roster, client.device):
            with pytest.raises(InvalidArgument):
                await call(name)
    assert seen == []
    for fine in ("...", "a..b", ".x"):
        assert _segment(fine) == fine
