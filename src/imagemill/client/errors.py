"""The SDK's errors, and the translation of HTTP answers and transport failures into them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import (
    TYPE_CHECKING,
)

import httpx

if TYPE_CHECKING:
    from imagemill.client.wire import Batch, Job


class ClientError(Exception):
    """Base of every error the SDK raises on purpose."""


class APIError(ClientError):
    """The server answered ``{"error": {code, message, field?}}`` with ``status_code``."""

    def __init__(self, status_code: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message if field is None else f"{message} (field: {field})")
        self.status_code = status_code
        self.code = code
        self.message = message
        self.field = field


class InvalidRequestError(APIError):
    """400 or 422: the request was malformed; ``field`` names the part, when known."""


class AuthenticationError(APIError):
    """401: no API key, or one the server does not know."""


class PermissionDeniedError(APIError):
    """403."""


class NotFoundError(APIError):
    """404: no such job, asset, model or preset (or it belongs to someone else)."""


class ConflictError(APIError):
    """409: e.g. canceling a finished job, or a preset name already taken."""


class RateLimitError(APIError):
    """429; ``retry_after`` is the server's ``Retry-After`` in seconds, when sent."""

    retry_after: float | None = None


class ServerError(APIError):
    """5xx: a bug or an outage on the server's side."""


class APIConnectionError(ClientError):
    """The server could not be reached, or did not answer within the timeout."""


class JobFailed(ClientError):
    """The job ended ``failed`` or ``canceled``; ``job.error`` says why."""

    def __init__(self, job: Job) -> None:
        reason = f": {job.error.message}" if job.error else ""
        super().__init__(f"job {job.id} {job.status}{reason}")
        self.job = job


class WaitTimeout(ClientError, TimeoutError):
    """``wait`` gave up; ``job`` is the job's (or batch's) last known state, and it goes
    on running."""

    def __init__(self, job: Job | Batch) -> None:
        kind = "batch" if hasattr(job, "job_ids") else "job"
        super().__init__(f"{kind} {job.id} is still {job.status} ({job.progress:.0%})")
        self.job = job


_ERRORS_BY_STATUS: dict[int, type[APIError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: InvalidRequestError,
    429: RateLimitError,
}


def _raise_for_error(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body = response.json()["error"]
        code, message, field = str(body["code"]), str(body["message"]), body.get("field")
    except (ValueError, KeyError, TypeError):  # not our error shape: a proxy's page, say
        code, message, field = "http_error", response.text[:500] or response.reason_phrase, None
    status = response.status_code
    error_class = _ERRORS_BY_STATUS.get(status, ServerError if status >= 500 else APIError)
    error = error_class(status, code, message, field)
    if isinstance(error, RateLimitError):
        with suppress(ValueError):  # Retry-After may also be an HTTP date: then unknown
            error.retry_after = float(response.headers.get("Retry-After", ""))
    raise error


@contextmanager
def _connection_errors(url: httpx.URL) -> Iterator[None]:
    """Translate httpx's transport errors, the SDK's one foreign exception family."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise APIConnectionError(f"{url} did not answer in time ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise APIConnectionError(f"could not reach {url}: {exc or type(exc).__name__}") from exc
