"""The error tree: codes, HTTP statuses, retryable flags, and the docstring that draws it."""

from __future__ import annotations

import re

import pytest

from imagemill import errors
from imagemill.errors import (
    AuthError,
    Conflict,
    ContentRejected,
    DeadlineExceeded,
    Forbidden,
    IllegalTransition,
    ImagemillError,
    InvalidInput,
    LeaseLost,
    NotFound,
    ProviderError,
    ProviderInputError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    Unauthorized,
)

DRAWN = re.compile(r"[├└]── (\w+)")


def _tree() -> list[type[ImagemillError]]:
    found: list[type[ImagemillError]] = []
    pending: list[type[ImagemillError]] = [ImagemillError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return [c for c in found if c.__module__ == errors.__name__]


def test_to_dict() -> None:
    assert NotFound("no job 'x'").to_dict() == {
        "code": "not_found",
        "message": "no job 'x'",
        "retryable": False,
    }
    assert InvalidInput("too big", field="size").to_dict() == {
        "code": "invalid_input",
        "message": "too big",
        "retryable": False,
        "field": "size",
    }
    assert "field" not in InvalidInput("bad").to_dict()
    assert RateLimited("slow down", retry_after=3).to_dict()["retryable"] is True


@pytest.mark.parametrize(
    ("error", "code", "status", "retryable"),
    [
        (InvalidInput("x"), "invalid_input", 422, False),
        (Unauthorized("x"), "unauthorized", 401, False),
        (Forbidden("x"), "forbidden", 403, False),
        (NotFound("x"), "not_found", 404, False),
        (Conflict("x"), "conflict", 409, False),
        (IllegalTransition("x"), "illegal_transition", 409, False),
        (LeaseLost("x"), "lease_lost", 409, False),
        (DeadlineExceeded("x"), "deadline_exceeded", 504, False),
        (ProviderError("x"), "provider_error", 502, False),
        (ProviderError("x", retryable=True), "provider_error", 502, True),
        (RateLimited("x"), "rate_limited", 429, True),
        (ProviderTimeout("x"), "provider_timeout", 504, True),
        (ProviderUnavailable("x"), "provider_unavailable", 503, True),
        (AuthError("x"), "provider_auth", 502, False),
        (ContentRejected("x"), "content_rejected", 422, False),
        (ProviderInputError("x", field="prompt"), "provider_invalid_input", 422, False),
    ],
)
def test_the_tree(error: ImagemillError, code: str, status: int, retryable: bool) -> None:
    assert (error.code, error.status_code, error.retryable) == (code, status, retryable)
    assert error.to_dict()["code"] == code
    assert str(error) == error.message == "x"


def test_the_hierarchy() -> None:
    assert issubclass(IllegalTransition, Conflict)
    for cls in (
        RateLimited,
        ProviderTimeout,
        ProviderUnavailable,
        AuthError,
        ContentRejected,
        ProviderInputError,
    ):
        assert issubclass(cls, ProviderError)
    assert RateLimited("x", retry_after=2.5).retry_after == 2.5
    assert RateLimited("x").retry_after is None
    assert ProviderInputError("x", field="size").field == "size"


def test_every_error_is_drawn_in_the_module_docstring() -> None:
    doc = errors.__doc__ or ""
    for cls in _tree():
        assert cls.__name__ in doc, cls
        assert cls.code in doc, cls


def test_every_error_drawn_in_the_docstring_exists() -> None:
    drawn = DRAWN.findall(errors.__doc__ or "")
    assert len(drawn) >= 10
    missing = [name for name in drawn if not isinstance(getattr(errors, name, None), type)]
    assert missing == []


@pytest.mark.parametrize(
    ("exc", "plain"),
    [
        (
            OSError(
                "Cannot connect to host api.example:443 ssl:<ssl.SSLContext object at 0x7f2a1c3b> "
                "[Connect call failed]"
            ),
            "Cannot connect to host api.example:443 ssl: [Connect call failed]",
        ),
        (
            OSError("cannot identify image file <_io.BytesIO object at 0x7fdb7fcdfba0>"),
            "cannot identify image file",
        ),
        (TimeoutError(), "no answer in time"),
        (ConnectionRefusedError(111, "Connection refused"), "the connection was refused"),
        (KeyError("oops"), "key error: 'oops'"),
        (
            ValueError("Pipeline <class 'diffusers.pipelines.TinyPipeline'> expected 3 inputs"),
            "Pipeline TinyPipeline expected 3 inputs",
        ),
        (InvalidInput("already plain"), "already plain"),
        (type("APIConnectionError", (Exception,), {})("down"), "api connection error: down"),
        (OSError("Connect call failed ('127.0.0.1', 9)"), "Connect call failed 127.0.0.1:9"),
    ],
)
def test_describe_gives_plain_words_never_a_python_repr(exc: BaseException, plain: str) -> None:
    text = errors.describe(exc)
    assert plain in text
    assert " at 0x" not in text and "<" not in text


def test_a_message_is_storable_and_of_a_sane_length() -> None:
    error = ProviderError("provider said: cut \ud83d and \x00 " + "x" * 10_000)
    assert "\x00" not in error.message and "\ud83d" not in error.message
    assert len(error.message) <= errors.MAX_MESSAGE_CHARS
    error.message.encode("utf-8")
