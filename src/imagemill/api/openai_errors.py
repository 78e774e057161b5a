"""Errors of the OpenAI-compatible endpoints, as OpenAI answers them.

The official ``openai`` SDK raises by status (400 ``BadRequestError``, 401, 403, 404,
429 ``RateLimitError``, 5xx) and retries 408, 409, 429 and 5xx on its own, unless the
answer says ``x-should-retry: false``. So every imagemill error is answered with the
status OpenAI uses for it, in OpenAI's error shape (``{"error": {"message", "type",
"param", "code"}}``), and an answer that a retry cannot change says so: a retry must
never start a second (paid) generation.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from imagemill.api.errors import validation_problem
from imagemill.boundary import storable_text
from imagemill.domain import JobError
from imagemill.errors import (
    Conflict,
    ContentRejected,
    Forbidden,
    ImagemillError,
    InvalidInput,
    NotFound,
    ProviderInputError,
    RateLimited,
    TooManyRequests,
    Unauthorized,
)

log = logging.getLogger(__name__)

# imagemill's error codes as OpenAI's (status, type); 5xx where the fault is not the caller's.
_BY_CODE: dict[str, tuple[int, str]] = {
    "invalid_input": (400, "invalid_request_error"),
    "provider_invalid_input": (400, "invalid_request_error"),
    "content_rejected": (400, "invalid_request_error"),
    "unauthorized": (401, "invalid_request_error"),
    "forbidden": (403, "invalid_request_error"),
    "not_found": (404, "invalid_request_error"),
    "conflict": (409, "invalid_request_error"),
    "illegal_transition": (409, "invalid_request_error"),
    "rate_limited": (429, "rate_limit_error"),
    # OpenAI's own answer when an account's spend is used up: 429, never retried.
    "budget_exceeded": (429, "insufficient_quota"),
    "rate_limit_exceeded": (429, "rate_limit_error"),
    "deadline_exceeded": (504, "server_error"),
    "provider_timeout": (504, "server_error"),
    "provider_unavailable": (503, "server_error"),
}
# OpenAI's own codes for these.
_CODES = {
    "content_rejected": "content_policy_violation",
    "unauthorized": "invalid_api_key",
    "invalid_input": "invalid_value",
    "budget_exceeded": "insufficient_quota",
}


class OpenAIErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorOut(BaseModel):
    """An error, in the shape OpenAI's API (and so its SDKs) use."""

    error: OpenAIErrorBody


def answer(
    status: int,
    message: str,
    *,
    kind: str,
    code: str | None = None,
    param: str | None = None,
    retry: bool,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    # Never echo what a response could not carry (a param naming a key with NUL in it).
    error = OpenAIErrorBody(
        message=storable_text(message),
        type=kind,
        param=storable_text(param) if param else None,
        code=code,
    )
    body = OpenAIErrorOut(error=error)
    return JSONResponse(
        body.model_dump(),
        status_code=status,
        headers={**(headers or {}), "x-should-retry": "true" if retry else "false"},
    )


def for_job_error(error: JobError) -> JSONResponse:
    """A job that failed. A retry would only find this same job again: never retried."""
    status, kind = _BY_CODE.get(error.code, (500, "server_error"))
    return answer(
        status, error.message, kind=kind, code=_CODES.get(error.code, error.code), retry=False
    )


def for_exception(exc: Exception) -> JSONResponse:
    """What went wrong before or while waiting for the job, as OpenAI would answer it."""
    if isinstance(exc, RequestValidationError):
        field, message = validation_problem(exc, unknown="parameter")
        return answer(
            400,
            message,
            kind="invalid_request_error",
            code=_CODES["invalid_input"],
            param=field or None,
            retry=False,
        )
    if isinstance(exc, ImagemillError):
        status, kind = _BY_CODE.get(exc.code, (500, "server_error"))
        param = exc.field if isinstance(exc, InvalidInput | ProviderInputError) else None
        if param is not None:  # an OpenAI option is a field of its own there, not a param
            param = param.removeprefix("params.")
        if param == "kind":  # what the endpoint asks for is fixed: it is the model that cannot
            param = "model"
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else {}
        if isinstance(exc, RateLimited | TooManyRequests) and exc.retry_after is not None:
            headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        if isinstance(exc, TooManyRequests) and exc.window is not None:
            headers.update(exc.window.headers())
        retry = isinstance(exc, RateLimited) or (
            status >= 500 and not isinstance(exc, ContentRejected) and exc.retryable
        )
        if isinstance(exc, Unauthorized | Forbidden | NotFound | Conflict | InvalidInput):
            retry = False
        if isinstance(exc, TooManyRequests):  # the SDK waits Retry-After, where there is one
            retry = exc.retry_after is not None
        return answer(
            status,
            exc.message,
            kind=kind,
            code=_CODES.get(exc.code, exc.code),
            param=param,
            retry=retry,
            headers=headers,
        )
    if isinstance(exc, HTTPException):
        status = exc.status_code
        kind = "invalid_request_error" if status < 500 else "server_error"
        return answer(status, str(exc.detail), kind=kind, retry=status >= 500)
    log.exception("unhandled error in an OpenAI-compatible call", exc_info=exc)
    return answer(
        500,
        "an internal error occurred; it has been logged",
        kind="server_error",
        retry=True,
    )


RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": OpenAIErrorOut, "description": description}
    for status, description in {
        400: "Invalid request, or refused by the model's safety system (OpenAI's shape).",
        401: "No valid API key.",
        404: "Not found.",
        409: "An Idempotency-Key request still being made.",
        413: "The body is too large.",
        429: "Rate limited; see Retry-After.",
        500: "The generation failed (x-should-retry says whether to retry).",
        503: "The provider is unavailable.",
        504: "Not finished in time; a retry joins the same generation.",
    }.items()
}
