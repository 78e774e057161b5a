"""The route class of every API route: what a request carries is held to the boundary's
rules (``imagemill.boundary``) before FastAPI reads it.

A JSON body is parsed as I-JSON (no lone surrogates, NUL, ``NaN`` or duplicate keys;
integers exact everywhere), and every query and path parameter is checked the same way,
so a value that could not be stored or sent on is a 422 naming it, never a 500 later.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from email.message import Message
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from imagemill import boundary

_UNREAD = object()


class CheckedRequest(Request):
    """A request whose JSON body is parsed by ``boundary.loads``, once."""

    _parsed: Any = _UNREAD

    async def json(self) -> Any:
        if self._parsed is _UNREAD:
            self._parsed = boundary.loads(await self.body())
        return self._parsed


class CheckedRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            request = CheckedRequest(request.scope, request.receive)
            _check_parameters(request)
            if _is_json(request) and await request.body():
                try:
                    await request.json()
                except boundary.BoundaryError as exc:
                    raise _invalid(("body", *exc.path), exc.message) from exc
            return await handler(request)

        return checked


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


def _check_parameters(request: Request) -> None:
    for name, value in request.path_params.items():
        if isinstance(value, str) and (problem := boundary.text_problem(value)):
            raise _invalid(("path", name), problem)
    for name, value in request.query_params.multi_items():
        problem = boundary.text_problem(name) or boundary.text_problem(value)
        if problem:
            raise _invalid(("query", name), problem)


def _invalid(location: tuple[str | int, ...], message: str) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": location, "msg": message, "input": None}]
    )
