"""Request ids: every HTTP request gets one, its log lines carry it (``logs.REQUEST_ID``)
and its answer echoes it in ``X-Request-Id``. (With tracing on, FastAPI's own telemetry
makes each request a server span: ``telemetry/tracing.py``.) Code handling a request can
add headers to its answer whatever the answer is (``add_answer_headers``: the rate-limit
headers ride on a streamed answer too).

A client's (or a proxy's) ``X-Request-Id`` is kept when it is a sane token (up to 128
characters of letters, digits and ``._:-``), so one id follows a call through every
hop; anything else is replaced by a new id.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagemill.ids import new_id
from imagemill.logs import REQUEST_ID

HEADER = b"x-request-id"
_SANE = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
# Headers the request's handling asked its answer to carry.
_ANSWER_HEADERS: ContextVar[list[tuple[bytes, bytes]] | None] = ContextVar(
    "imagemill_answer_headers", default=None
)


def add_answer_headers(headers: Mapping[str, str]) -> None:
    """Have the answer to the request being handled carry ``headers`` (outside a request:
    nothing)."""
    extra = _ANSWER_HEADERS.get()
    if extra is not None:
        extra += [(name.lower().encode(), value.encode()) for name, value in headers.items()]


class RequestIds:
    """ASGI middleware: the request's id, set for its log lines, echoed in its answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((value for name, value in scope["headers"] if name == HEADER), b"")
        request_id = given.decode() if _SANE.fullmatch(given) else new_id("req")
        extra = [(HEADER, request_id.encode())]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        token, extra_token = REQUEST_ID.set(request_id), _ANSWER_HEADERS.set(extra)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _ANSWER_HEADERS.reset(extra_token)
            REQUEST_ID.reset(token)
