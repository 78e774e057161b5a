"""The route class of every API route: what a request carries is held to the boundary's
rules (``imagemill.boundary``) before FastAPI reads it.

A JSON body is parsed as I-JSON (no lone surrogates, NUL, ``NaN`` or duplicate keys;
integers exact everywhere), and every query and path parameter is checked the same way,
so a value that could not be stored or sent on is a 422 naming it, never a 500 later.
A body that is not a multipart upload is read up to ``MAX_BODY_BYTES`` (413 beyond): an
upload streams to disk, everything else is held in memory whole.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from email.message import Message
from typing import Any

from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.routing import APIRoute

from imagemill import boundary

_UNREAD = object()
MAX_BODY_BYTES = 1024 * 1024  # a JSON body, or any other that is not a multipart upload


class CheckedRequest(Request):
    """A request whose body is read within ``MAX_BODY_BYTES`` and whose JSON is parsed by
    ``boundary.loads``, once."""

    _parsed: Any = _UNREAD
    _read: bytes | None = None

    async def body(self) -> bytes:
        if self._read is None:
            chunks, size = [], 0
            async for chunk in self.stream():
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise HTTPException(413, f"the body is larger than {MAX_BODY_BYTES:,} bytes")
                chunks.append(chunk)
            self._read = b"".join(chunks)
        return self._read

    async def json(self) -> Any:
        if self._parsed is _UNREAD:
            self._parsed = boundary.loads(await self.body())
        return self._parsed


class CheckedRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        # The query parameters the route reads (others are ignored, never stored).
        declared = _query_names(self.dependant)

        async def checked(request: Request) -> Response:
            request = CheckedRequest(request.scope, request.receive)
            _check_parameters(request, declared)
            if _is_json(request) and await request.body():
                try:
                    await request.json()
                except boundary.BoundaryError as exc:
                    raise _invalid(("body", *exc.path), exc.message) from exc
            return await handler(request)

        return checked


def _query_names(dependant: Dependant) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for dependency in dependant.dependencies:
        names |= _query_names(dependency)
    return names


def _is_json(request: Request) -> bool:
    content_type = request.headers.get("content-type")
    if not content_type:
        return False
    message = Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def _check_parameters(request: Request, declared: set[str]) -> None:
    for name, value in request.path_params.items():
        if isinstance(value, str) and (problem := boundary.text_problem(value)):
            raise _invalid(("path", name), problem)
    for name, value in request.query_params.multi_items():
        if name in declared and (problem := boundary.text_problem(value)):
            raise _invalid(("query", name), problem)


def _invalid(location: tuple[str | int, ...], message: str) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": location, "msg": message, "input": None}]
    )
