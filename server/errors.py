"""Service errors with stable codes, and their single mapping to RFC 9457 problem details.

Services raise ``ServiceError`` subclasses; only ``problem_response`` knows about HTTP. The
problem ``type`` is ``urn:attache:problem:<code>``, so clients can branch on a stable code.
"""

from __future__ import annotations

from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"


class ServiceError(Exception):
    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"

    def __init__(self, detail: str, *, keep_changes: bool = False, **fields: Any) -> None:
        """``keep_changes`` commits the unit of work before the error reaches the caller.

        Only for changes that must outlive a refusal: a consumed single-use challenge and the
        audit event of a failed login. Everything else is rolled back, so a failed request
        leaves no partial rows.
        """
        clash = RESERVED_FIELDS & fields.keys()
        if clash:
            raise ValueError(f"problem fields may not be named {sorted(clash)}")
        super().__init__(detail)
        self.detail = detail
        self.keep_changes = keep_changes
        self.fields = fields

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers that belong with this problem (none but for a few kinds)."""
        return {}


class InvalidInput(ServiceError):
    status = 422
    code = "invalid-input"
    title = "Invalid input"


class AuthenticationRequired(ServiceError):
    status = 401
    code = "authentication-required"
    title = "Authentication required"


class PermissionDenied(ServiceError):
    status = 403
    code = "permission-denied"
    title = "Permission denied"


class NotFound(ServiceError):
    """Also what a caller sees for something that exists but that they may not access."""

    status = 404
    code = "not-found"
    title = "Not found"


class Conflict(ServiceError):
    status = 409
    code = "conflict"
    title = "Conflict"


class Expired(ServiceError):
    status = 410
    code = "expired"
    title = "Expired or already used"


class PreconditionFailed(ServiceError):
    status = 412
    code = "precondition-failed"
    title = "Precondition failed"


class PayloadTooLarge(ServiceError):
    status = 413
    code = "payload-too-large"
    title = "Payload too large"


class RequestTimeout(ServiceError):
    """The request body stalled: nothing arrived within the body read timeout."""

    status = 408
    code = "request-timeout"
    title = "Request timeout"


class TooManyRequests(ServiceError):
    """A limit refused the request for now; ``retry_after`` whole seconds is when to try again
    (sent also as the ``Retry-After`` header, RFC 9110 section 10.2.3)."""

    status = 429
    code = "too-many-requests"
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after: int, **fields: Any) -> None:
        super().__init__(detail, retry_after=max(1, retry_after), **fields)

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.fields["retry_after"])}


class Unavailable(ServiceError):
    """What the server needs to serve (its database, Redis) cannot be reached now."""

    status = 503
    code = "unavailable"
    title = "Service unavailable"


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> JSONResponse:
    # Extension members never override the standard ones.
    body: dict[str, Any] = {
        **fields,
        "type": f"urn:attache:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc if part not in ("body",)) or "body"


async def _service_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return service_problem(exc)


def service_problem(exc: ServiceError) -> JSONResponse:
    """The problem document of a refusal, with its headers and fields."""
    return problem_response(
        exc.status, exc.code, exc.title, exc.detail, headers=exc.headers, **exc.fields
    )


RESERVED_FIELDS = frozenset(
    {"type", "title", "status", "detail", "code", "keep_changes", "headers"}
)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return validation_problem(exc)


def validation_problem(exc: RequestValidationError) -> JSONResponse:
    """The 422 problem document of invalid input, each error with its field."""
    errors = [
        {"field": _location(err.get("loc", ())), "message": str(err.get("msg", ""))}
        for err in exc.errors()
    ]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid request"
    return problem_response(422, "invalid-input", "Invalid input", detail, errors=errors)


_HTTP_ERRORS = {
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    408: ("request-timeout", "Request timeout"),
    413: ("payload-too-large", "Payload too large"),
}


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = str(exc.detail)
    code, title = _HTTP_ERRORS.get(exc.status_code, ("http-error", detail))
    return problem_response(exc.status_code, code, title, detail)


async def _internal_error(_: Request, exc: Exception) -> JSONResponse:
    # The traceback goes to the server log (uvicorn logs it); the client learns nothing of it.
    return problem_response(
        500, "internal-error", "Internal error", "the server failed; nothing was changed"
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Exception, _internal_error)
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
