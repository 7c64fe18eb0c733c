"""The documentation stands on its own and says what the code does, where that is cheap to
check: every route of the server is in PROTOCOL.md's API section and every route named there
exists; every problem code is listed; the worked example's sizes are the vector's; and no
page points outside the repository (``../shared``) or to a file that is not there."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIWebSocketRoute

import server.errors
from server.app import create_app
from server.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL = ROOT / "docs" / "PROTOCOL.md"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# A route as the docs name it: `POST /v1/channels/{channel}/messages`, maybe with a query.
NAMED_ROUTE = re.compile(r"`(" + "|".join(METHODS) + r") (/[^`?\s]*)")


def _pages() -> list[Path]:
    return [ROOT / "README.md", ROOT / "keys" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    # Built, never started: the routes and their OpenAPI need no database.
    data = tmp_path_factory.mktemp("docs") / "var"
    return create_app(Settings(data_dir=data, public_url="http://127.0.0.1:8600"))


def _routes(app: FastAPI) -> set[tuple[str, str]]:
    paths = app.openapi()["paths"]
    return {(method.upper(), path) for path, item in paths.items() for method in item}


def _api_section() -> str:
    text = PROTOCOL.read_text(encoding="utf-8")
    start = text.index("\n## 17. The REST API")
    following = text.find("\n## ", start + 1)
    return text[start:] if following < 0 else text[start:following]


def _names(text: str, method: str, path: str) -> bool:
    return re.search(re.escape(f"{method} {path}") + r"[`?\s]", text) is not None


def test_every_route_is_in_the_api_section(app: FastAPI) -> None:
    api = _api_section()
    missing = sorted(
        f"{method} {path}"
        for method, path in _routes(app)
        if path.startswith("/v1/") and not _names(api, method, path)
    )
    assert not missing, f"describe {missing} in docs/PROTOCOL.md §17 (request, answer, errors)"


def test_every_operational_route_is_documented(app: FastAPI) -> None:
    # Routes outside the API (liveness, readiness, metrics) are for operators: in §17 or in
    # docs/operations.md.
    where = _api_section() + (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    missing = sorted(
        f"{method} {path}"
        for method, path in _routes(app)
        if not path.startswith("/v1/") and not _names(where, method, path)
    )
    assert not missing, f"describe {missing} in docs/operations.md or docs/PROTOCOL.md §17"


def _leaf_routes(routes: Iterable[Any]) -> Iterator[Any]:
    # FastAPI keeps an included router whole (``original_router``) rather than copying its
    # routes into the app's; the stream's router has no prefix, so its paths are the app's.
    for route in routes:
        inner = getattr(getattr(route, "original_router", None), "routes", None)
        if inner is not None:
            yield from _leaf_routes(inner)
        else:
            yield route


def test_every_websocket_route_is_in_the_api_section(app: FastAPI) -> None:
    sockets = [r.path for r in _leaf_routes(app.routes) if isinstance(r, APIWebSocketRoute)]
    assert sockets, "the app has a websocket stream"
    api = _api_section()
    assert [p for p in sockets if f"`{p}`" not in api] == []


def _shape(path: str) -> str:
    """A path with its parameters unnamed: the subsystem pages write `{id}` for `{user_id}`."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def test_every_route_the_docs_name_exists(app: FastAPI) -> None:
    routes = {(method, _shape(path)) for method, path in _routes(app)}
    # The API's own description, which the docs point to.
    routes |= {("GET", url) for url in (app.openapi_url, app.docs_url) if url is not None}
    named = {
        (method, _shape(path))
        for page in _pages()
        for method, path in NAMED_ROUTE.findall(page.read_text(encoding="utf-8"))
    }
    assert named, "the docs name routes"
    assert sorted(named - routes) == []


def _service_errors(
    kind: type[server.errors.ServiceError],
) -> Iterator[type[server.errors.ServiceError]]:
    for sub in kind.__subclasses__():
        yield sub
        yield from _service_errors(sub)


def test_every_problem_code_is_listed(app: FastAPI) -> None:
    # create_app imported every domain, so every ServiceError subclass is defined by now.
    codes = {error.code for error in _service_errors(server.errors.ServiceError)}
    codes |= {code for code, _ in server.errors._HTTP_ERRORS.values()}
    codes |= {"internal-error", "request-header-fields-too-large", "http-error"}
    api = _api_section()
    unlisted = sorted(c for c in codes if f"`{c}`" not in api)
    assert not unlisted, f"list the problem codes {unlisted} in docs/PROTOCOL.md §17.1"


def test_the_worked_example_body_has_the_vectors_length() -> None:
    vector = json.loads(
        (ROOT / "tests" / "protocol" / "vectors" / "message_v1.json").read_text(encoding="utf-8")
    )
    body = bytes.fromhex(vector["message"]["body_hex"])
    plaintext = vector["message"]["plaintext_utf8"].encode("utf-8")
    assert len(body) == len(plaintext) + 60
    text = PROTOCOL.read_text(encoding="utf-8")
    step = text[text.index("**Step 8, body.**") : text.index("**Step 9, signature.**")]
    assert f"= {len(body)} bytes" in step


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_page_points_outside_the_repository(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert "../shared" not in text
    assert "DESIGN.md" not in text


MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    broken = [
        target
        for target in MARKDOWN_LINK.findall(text)
        if not re.match(r"[a-z]+:|#", target)
        and not (page.parent / target.split("#", 1)[0]).resolve().exists()
    ]
    assert broken == []
