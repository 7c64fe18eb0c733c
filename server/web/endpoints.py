"""The browser client's page and its static files, under a strict Content-Security-Policy.

The page at ``/`` and the files under ``/static/`` are the committed build in ``static/``. What
may be served is fixed when this module loads (the files of that directory, by name), so no
request path ever reaches the file system. These routes are not part of the API and stay out
of its OpenAPI description.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import APIRouter
from fastapi.responses import FileResponse
from starlette.exceptions import HTTPException

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"

#: Scripts, styles and connections from this origin only: no inline script or style, no eval
#: (WebAssembly may be compiled: 'wasm-unsafe-eval', for Argon2id),
#: no third-party origin, no plugins, no framing; DOM sinks such as innerHTML refuse strings
#: (Trusted Types with no policy), so text from the server can only ever be set as text.
CONTENT_SECURITY_POLICY: Final = "; ".join(
    [
        "default-src 'none'",
        # 'wasm-unsafe-eval' lets the page compile WebAssembly (hash-wasm's Argon2id, which
        # seals the device keys); it does not allow eval or any other JavaScript from strings.
        "script-src 'self' 'wasm-unsafe-eval'",
        "style-src 'self'",
        "img-src 'self'",
        "font-src 'self'",
        "connect-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    ]
)

SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    # Revalidate every time (the ETag makes that cheap), so a new build is never mixed with
    # an old one held in a cache.
    "Cache-Control": "no-cache",
}

_MEDIA_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}

#: Every file the build wrote, by name; nothing else is served.
FILES: Final = {
    path.name: path
    for path in (sorted(STATIC_DIR.iterdir()) if STATIC_DIR.is_dir() else [])
    if path.is_file() and path.suffix in _MEDIA_TYPES
}

router = APIRouter(include_in_schema=False)


def _file(name: str) -> FileResponse:
    path = FILES.get(name)
    if path is None:
        raise HTTPException(404, "no such file")
    return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix], headers=SECURITY_HEADERS)


@router.api_route("/", methods=["GET", "HEAD"])
async def page() -> FileResponse:
    return _file("index.html")


@router.api_route("/static/{name}", methods=["GET", "HEAD"])
async def static_file(name: str) -> FileResponse:
    return _file(name)
