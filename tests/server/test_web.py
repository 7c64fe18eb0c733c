"""The browser client's page: served at / by the app itself, under a strict Content-Security-
Policy, with no inline script or style and nothing from another origin."""

from __future__ import annotations

from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from server.app import create_app
from server.settings import Settings
from server.web.endpoints import STATIC_DIR


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    # Built, never started: the page needs no database.
    data = tmp_path_factory.mktemp("web") / "var"
    return create_app(Settings(data_dir=data, public_url="http://127.0.0.1:8600"))


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def _directives(policy: str) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    for directive in policy.split(";"):
        name, *values = directive.split()
        assert name not in parsed, f"{name} given twice"
        parsed[name] = values
    return parsed


def _assert_strict_policy(response: httpx.Response) -> None:
    csp = _directives(response.headers["content-security-policy"])
    assert csp["default-src"] == ["'none'"]
    # Scripts from this origin, and WebAssembly compiled by them: hash-wasm runs Argon2id,
    # which seals the device keys under the passphrase, as WebAssembly. 'wasm-unsafe-eval'
    # allows exactly that, and neither eval nor any other JavaScript made from a string.
    assert csp["script-src"] == ["'self'", "'wasm-unsafe-eval'"]
    for name in ("style-src", "connect-src", "img-src", "font-src"):
        assert csp[name] == ["'self'"], name
    assert csp["base-uri"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["require-trusted-types-for"] == ["'script'"]
    values = " ".join(
        value for values in csp.values() for value in values if value != "'wasm-unsafe-eval'"
    )
    for loophole in ("unsafe-", "nonce-", "sha256-", "*", "http", "data:", "blob:"):
        assert loophole not in values
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"


class _Page(HTMLParser):
    """Every element with its attributes, and the text inside script and style elements."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.inline: list[str] = []
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        self._open = tag if tag in ("script", "style") else None

    def handle_data(self, data: str) -> None:
        if self._open is not None and data.strip():
            self.inline.append(data)

    def handle_endtag(self, tag: str) -> None:
        self._open = None


async def test_the_page_is_served_at_the_root_under_a_strict_policy(
    http: httpx.AsyncClient,
) -> None:
    response = await http.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "<title>Attaché</title>" in response.text
    _assert_strict_policy(response)
    head = await http.head("/")
    assert head.status_code == 200
    _assert_strict_policy(head)


async def test_the_page_has_no_inline_code_and_nothing_from_elsewhere(
    http: httpx.AsyncClient,
) -> None:
    page = _Page()
    page.feed((await http.get("/")).text)
    assert page.inline == []
    assert [tag for tag, _ in page.elements if tag == "style"] == []
    references = []
    for tag, attrs in page.elements:
        assert not [name for name in attrs if name.startswith("on") or name == "style"], tag
        if tag == "script":
            assert attrs.get("src"), "a script without src is inline"
        for name in ("src", "href", "action"):
            value = attrs.get(name)
            if value is not None:
                assert value.startswith("/static/"), value
                references.append(value)
    assert {"/static/app.js", "/static/app.css"} <= set(references)
    for reference in references:
        response = await http.get(reference)
        assert response.status_code == 200, reference
        _assert_strict_policy(response)


@pytest.mark.parametrize(
    ("name", "media_type"),
    [("app.js", "text/javascript; charset=utf-8"), ("app.css", "text/css; charset=utf-8")],
)
async def test_the_bundle_is_the_committed_build(
    http: httpx.AsyncClient, name: str, media_type: str
) -> None:
    response = await http.get(f"/static/{name}")
    assert response.headers["content-type"] == media_type
    assert response.content == (STATIC_DIR / name).read_bytes()


@pytest.mark.parametrize(
    "path",
    [
        "/static/nothing.js",
        "/static/..%2F__init__.py",
        "/static/%2E%2E%2Fendpoints.py",
        "/static/../endpoints.py",
        "/static/",
        "/index.html",
    ],
)
async def test_only_the_built_files_are_served(http: httpx.AsyncClient, path: str) -> None:
    response = await http.get(path)
    assert response.status_code == 404
    assert not response.content.startswith(Path(__file__).read_bytes()[:20])


def test_the_page_is_not_part_of_the_api(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    assert "/" not in paths
    assert not [path for path in paths if path.startswith("/static")]
