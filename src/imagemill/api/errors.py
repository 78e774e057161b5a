"""Every error leaves the API as ``{"error": {"code", "message", "field"?}}`` with its status."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

from imagemill.boundary import BoundaryError, escaped, quoted, storable_text
from imagemill.errors import (
    BudgetExceeded,
    ImagemillError,
    RateLimited,
    TooManyRequests,
    Unauthorized,
)

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
}


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
    details: dict[str, Any] | None = None,
) -> JSONResponse:
    """``details``: more of what went wrong, beside ``code`` and ``message`` (a budget's
    limit and what is left of it)."""
    # Never echo what a response could not carry (a field naming a key with NUL in it).
    body: dict[str, Any] = {"code": code, "message": storable_text(message)}
    if field:
        body["field"] = storable_text(field)
    body.update(details or {})
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [escaped(str(p)) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts)


def validation_problem(exc: RequestValidationError, unknown: str = "field") -> tuple[str, str]:
    """The first problem of a failed validation as (field, message) in plain words: the
    field dotted (``metadata.note``, ``""`` for the whole body), the message naming it
    where it would not read alone; ``unknown`` is what a name the schema lacks is called."""
    first = exc.errors()[0]
    field = _field(tuple(first.get("loc", ())))
    message = str(first.get("msg", "invalid input")).removeprefix("Value error, ")
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, BoundaryError):  # inside a free-form value: name the exact spot
        field = cause.field(*([field] if field else []))
        message = cause.message
    if first.get("type") == "extra_forbidden":
        message = f"unknown {unknown} {quoted(field)}"
    elif message.startswith("Expected UploadFile"):  # a form part sent without a filename
        message = f"{field} must be a file (a form part with a filename)"
    elif message.startswith(("contains ", "is ", "names ")):  # the boundary's predicates
        message = f"{field or 'the body'} {message}"
    return field, message


async def _imagemill_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ImagemillError)
    if (runtime := getattr(request.app.state, "runtime", None)) is not None:
        runtime.metrics.refused(exc)
    headers = {}
    if isinstance(exc, RateLimited) and exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    details = exc.budget if isinstance(exc, BudgetExceeded) else None
    if isinstance(exc, TooManyRequests):
        details = {"policy": exc.policy}
        if exc.retry_after is not None:
            headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        if exc.window is not None:
            headers.update(exc.window.headers())
    return error_response(
        exc.status_code, exc.code, exc.message, getattr(exc, "field", None), headers, details
    )


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    field, message = validation_problem(exc)
    return error_response(422, "invalid_input", message, field or None)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    headers = dict(exc.headers) if exc.headers else {}
    if exc.status_code == 405:  # the router names only the first route of the path
        headers["Allow"] = ", ".join(_methods_of(request))
    return error_response(exc.status_code, code, str(exc.detail), headers=headers or None)


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _methods_of(request: Request) -> list[str]:
    """Every method some route of the app serves at the request's path (each route is
    asked whether it would take the request with that method)."""
    allowed = []
    for method in HTTP_METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return allowed


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "an internal error occurred; it has been logged")


def install(app: FastAPI) -> None:
    app.add_exception_handler(ImagemillError, _imagemill_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
