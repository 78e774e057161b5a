"""The imagemill error tree.

Every error that crosses a module boundary is one of these. Foreign exceptions
(SDK errors, HTTP errors, database errors) are translated at the boundary where
they occur, always with ``raise ... from exc``.

::

    ImagemillError                    code            HTTP   retryable
    ├── InvalidInput(field)           invalid_input   422    no
    ├── Unauthorized                  unauthorized    401    no
    ├── BudgetExceeded(budget)        budget_exceeded 402    no   (the caller's spend limit)
    ├── TooManyRequests(retry_after)  rate_limit_exceeded 429 no  (the caller's rate limit)
    ├── Forbidden                     forbidden       403    no
    ├── NotFound                      not_found       404    no
    ├── Conflict                      conflict        409    no
    │   └── IllegalTransition         illegal_transition
    ├── LeaseLost                     lease_lost      409    no   (a worker lost its claim)
    ├── DeadlineExceeded              deadline_exceeded 504  no   (the job's own deadline)
    └── ProviderError(retryable)      provider_error  502    as given
        ├── RateLimited(retry_after)  rate_limited    429    yes
        ├── ProviderTimeout           provider_timeout 504   yes
        ├── ProviderUnavailable       provider_unavailable 503 yes
        │   └── CircuitOpen(retry_after) circuit_open   503    yes  (skipped: failing lately)
        ├── AuthError                 provider_auth   502    no
        ├── ContentRejected           content_rejected 422   no
        ├── UnusableAnswer            unusable_answer 502    yes  (a text breaking its brief)
        └── ProviderInputError(field) provider_invalid_input 422 no

A job that fails records ``error = {code, message, retryable}``; the worker
retries a job only when ``retryable`` is true and attempts remain. Messages are plain
words for people: a foreign exception's text goes through ``describe`` first.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from imagemill.boundary import storable_text

MAX_MESSAGE_CHARS = 2000


class ImagemillError(Exception):
    """Base of every error imagemill raises on purpose."""

    code: ClassVar[str] = "error"
    status_code: ClassVar[int] = 500
    retryable: bool = False

    def __init__(self, message: str) -> None:
        # A message may quote a provider: keep it storable and of a sane length.
        message = storable_text(message, MAX_MESSAGE_CHARS)
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "retryable": self.retryable}


class InvalidInput(ImagemillError):
    """The request is malformed; ``field`` names the offending part (dotted path)."""

    code = "invalid_input"
    status_code = 422

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        if self.field:
            data["field"] = self.field
        return data


class Unauthorized(ImagemillError):
    code = "unauthorized"
    status_code = 401


class BudgetExceeded(ImagemillError):
    """A request would take its caller past a budget (``spend/budgets.py``).

    ``budget`` is what the caller may know of it: ``scope`` (``"key"`` or ``"owner"``),
    ``period``, ``limit``, ``spent``, ``reserved`` (held by jobs still running) and
    ``remaining`` in USD, ``requested`` (what the request would hold) and ``resets_at``
    (ISO 8601, or ``None`` for a total budget)."""

    code = "budget_exceeded"
    status_code = 402

    def __init__(self, message: str, budget: dict[str, Any]) -> None:
        super().__init__(message)
        self.budget = budget

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), **self.budget}


class TooManyRequests(ImagemillError):
    """The caller passed one of its API key's rate limits (``spend/limits.py``):
    ``policy`` names it (``requests``, ``images``, ``jobs``), ``retry_after`` is seconds
    until it has room (``None``: waiting will not help, or cannot be told), ``window``
    the IETF headers' values where known."""

    code = "rate_limit_exceeded"
    status_code = 429

    def __init__(
        self,
        message: str,
        *,
        policy: str,
        retry_after: float | None,
        window: Any = None,
    ) -> None:
        super().__init__(message)
        self.policy = policy
        self.retry_after = retry_after
        self.window = window

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "policy": self.policy}


class Forbidden(ImagemillError):
    code = "forbidden"
    status_code = 403


class NotFound(ImagemillError):
    code = "not_found"
    status_code = 404


class Conflict(ImagemillError):
    """The request clashes with what is stored; ``field`` names what clashes, if one does."""

    code = "conflict"
    status_code = 409

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class IllegalTransition(Conflict):
    """A state change that the job state machine does not allow (or that lost a race)."""

    code = "illegal_transition"


class LeaseLost(ImagemillError):
    """The worker no longer holds the job: it was canceled or claimed by another worker."""

    code = "lease_lost"
    status_code = 409


class DeadlineExceeded(ImagemillError):
    """The job was not done by its deadline (``deadline_seconds``), retries included."""

    code = "deadline_exceeded"
    status_code = 504


class ProviderError(ImagemillError):
    """A provider failed; ``retryable`` says whether trying again may succeed."""

    code = "provider_error"
    status_code = 502

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class RateLimited(ProviderError):
    code = "rate_limited"
    status_code = 429

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message, retryable=True)
        self.retry_after = retry_after


class ProviderTimeout(ProviderError):
    code = "provider_timeout"
    status_code = 504

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class ProviderUnavailable(ProviderError):
    """The provider cannot be called now (down, or, not retryable, not set up here)."""

    code = "provider_unavailable"
    status_code = 503

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message, retryable=retryable)


class CircuitOpen(ProviderUnavailable):
    """The provider failed too often lately; it is not called for ``retry_after`` seconds
    (``providers/circuits.py``)."""

    code = "circuit_open"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, retryable=True)
        self.retry_after = retry_after


class AuthError(ProviderError):
    code = "provider_auth"

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class UnusableAnswer(ProviderError):
    """The provider answered, but not what was asked (too few captions, a caption short
    of its hashtags, no JSON): another attempt may do better. The provider is up: this
    counts nothing against its circuit."""

    code = "unusable_answer"

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class ContentRejected(ProviderError):
    code = "content_rejected"
    status_code = 422

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class ProviderInputError(ProviderError):
    """The provider refused the input; ``field`` names it when the provider says."""

    code = "provider_invalid_input"
    status_code = 422

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message, retryable=False)
        self.field = field


_OBJECT_REPR = re.compile(r"<[^<>]*\bat 0x[0-9a-fA-F]+>")
_CLASS_REPR = re.compile(r"<class '(?:[\w.]+\.)?(\w+)'>")  # <class 'pkg.mod.Name'>: Name
_ADDRESS_REPR = re.compile(r"\('([^']+)', (\d+)\)")  # ('127.0.0.1', 9): 127.0.0.1:9
# Where a class name breaks into words: before a capital after a lower-case letter or
# digit, and before the last capital of an acronym (APIConnectionError: API Connection Error).
_WORD_BREAK = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_PHRASES: tuple[tuple[type[BaseException], str], ...] = (
    (TimeoutError, "no answer in time"),
    (ConnectionRefusedError, "the connection was refused"),
    (ConnectionResetError, "the connection was reset"),
    (ConnectionError, "the connection failed"),
    (MemoryError, "out of memory"),
)


def describe(exc: BaseException) -> str:
    """A foreign exception in plain words, for a message a person reads: its own text
    with any Python object repr (``<_io.BytesIO object at 0x…>``) taken out; failing
    that, what kind of failure it was. Never a traceback or a repr."""
    if isinstance(exc, ImagemillError):
        return exc.message
    text = _ADDRESS_REPR.sub(r"\1:\2", _CLASS_REPR.sub(r"\1", _OBJECT_REPR.sub("", str(exc))))
    text = storable_text(text, MAX_MESSAGE_CHARS).strip(" :;,")
    text = re.sub(r"\s{2,}", " ", text)
    for kind, phrase in _PHRASES:
        if isinstance(exc, kind):
            return f"{phrase} ({text})" if text and phrase not in text else phrase
    name = _WORD_BREAK.sub(" ", type(exc).__name__).lower()
    return f"{name}: {text}" if text else name
