"""The route class of every API route: what a request carries is held to the boundary's
rules (``imagemill.boundary``) before FastAPI reads it.

A JSON body is parsed as I-JSON (no lone surrogates, NUL, ``NaN`` or duplicate keys;
integers exact everywhere), and every query and path parameter is checked the same way,
so a value that could not be stored or sent on is a 422 naming it, never a 500 later.

Every body has a size limit, answered 413 in the route's own error shape: before a byte
is read when ``Content-Length`` says so, else as soon as the count passes it. A body is
read up to ``MAX_BODY_BYTES``, except a multipart upload to a route that takes files
(``upload_files``), which streams to disk: its limit is that many files of
``IMAGEMILL_MAX_UPLOAD_BYTES``, plus ``MULTIPART_OVERHEAD`` each.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Callable, Coroutine
from dataclasses import dataclass
from email.message import Message
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin
from urllib.parse import unquote_plus, unquote_to_bytes

from fastapi import Request, Response, params
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.routing import APIRoute
from starlette.datastructures import FormData
from starlette.formparsers import MultiPartException, MultiPartParser

from imagemill import boundary
from imagemill.errors import InvalidInput

_UNREAD = object()
MAX_BODY_BYTES = 1024 * 1024  # a JSON body, or any other that is not a multipart upload
MULTIPART_OVERHEAD = 64 * 1024  # a form's headers and text fields, around each file


class CheckedRequest(Request):
    """A request whose body is read within ``max_bytes`` and whose JSON is parsed by
    ``boundary.loads``, once."""

    max_bytes: int = MAX_BODY_BYTES
    _parsed: Any = _UNREAD

    async def stream(self) -> AsyncGenerator[bytes, None]:
        size = 0
        async for chunk in super().stream():
            size += len(chunk)
            if size > self.max_bytes:
                raise too_large(self.max_bytes)
            yield chunk

    async def json(self) -> Any:
        if self._parsed is _UNREAD:
            self._parsed = boundary.loads(await self.body())
        return self._parsed


def too_large(limit: int) -> HTTPException:
    return HTTPException(413, f"the body is larger than {limit:,} bytes")


class CheckedRoute(APIRoute):
    upload_files = 0  # how many files at the upload limit a multipart body may hold

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        # The parameters the route reads (others are ignored, never stored).
        declared = _declared(self.dependant)
        # A JSON body, not a form (FastAPI's body field of a form is a Form).
        takes_json = self.body_field is not None and not isinstance(
            self.body_field.field_info, params.Form
        )

        async def checked(request: Request) -> Response:
            request = CheckedRequest(request.scope, request.receive)
            request.max_bytes = self._max_bytes(request)
            length = request.headers.get("content-length", "")
            if length.isdigit() and int(length) > request.max_bytes:
                raise too_large(request.max_bytes)
            _check_parameters(request, declared)
            if takes_json and not _is_json(request) and await request.body():
                raise HTTPException(415, "send the body as JSON (Content-Type: application/json)")
            if _is_json(request) and await request.body():
                try:
                    await request.json()
                except boundary.BoundaryError as exc:
                    raise _invalid(("body", *exc.path), exc.message) from exc
            return await handler(request)

        return checked

    def _max_bytes(self, request: Request) -> int:
        if not self.upload_files or not _is_multipart(request):
            return MAX_BODY_BYTES
        upload: int = request.app.state.max_upload_bytes
        return (upload + MULTIPART_OVERHEAD) * self.upload_files


class UploadRoute(CheckedRoute):
    """A route that takes one uploaded file (multipart)."""

    upload_files = 1


class _NotText(MultiPartException):
    def __init__(self, field: str) -> None:
        super().__init__(f"{field} is not UTF-8 text")
        self.field = field


class _UTF8MultiPartParser(MultiPartParser):
    """Starlette's parser, except that a text field that is not UTF-8 is refused (it
    would read it as Latin-1: mojibake, stored as if it had been sent)."""

    def on_part_end(self) -> None:
        part = self._current_part  # the parser's part in progress (Starlette's own)
        if part.file is None:
            try:
                part.data.decode()
            except UnicodeDecodeError as exc:
                raise _NotText(boundary.escaped(part.field_name)) from exc
        super().on_part_end()


async def read_form(request: Request, *, max_files: int, max_part_size: int) -> FormData:
    """A multipart body's fields (close it when done: it holds spooled files). A text
    field that is not UTF-8 is an ``InvalidInput`` naming it, as is a malformed body."""
    if not _is_multipart(request):
        raise InvalidInput("send the form as multipart/form-data")
    parser = _UTF8MultiPartParser(
        request.headers, request.stream(), max_files=max_files, max_part_size=max_part_size
    )
    try:
        return await parser.parse()
    except _NotText as exc:
        raise InvalidInput(exc.message, field=exc.field) from exc
    except MultiPartException as exc:
        raise InvalidInput(f"the form cannot be read: {exc.message}") from exc


@dataclass(frozen=True)
class Declared:
    """The query parameters and headers a route reads: which are integers, which may
    come more than once (lists)."""

    query: frozenset[str] = frozenset()
    integers: frozenset[str] = frozenset()
    repeatable: frozenset[str] = frozenset()
    headers: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()  # families of names (``QueryFamily``)

    def reads(self, name: str) -> bool:
        return name in self.query or name.startswith(self.prefixes)


class QueryFamily:
    """A dependency: the query parameters named ``prefix`` and a key (``metadata.page``),
    as ``{key: value}``, at most ``limit`` of them. The route's checks hold them to the
    rules of the parameters it declares (UTF-8 text without NUL, each given once)."""

    def __init__(self, prefix: str, limit: int) -> None:
        self.prefix = prefix
        self.limit = limit

    def __call__(self, request: Request) -> dict[str, str]:
        found: dict[str, str] = {}
        for name, value in request.query_params.multi_items():
            if name.startswith(self.prefix):
                if name == self.prefix:
                    raise _invalid(("query", name), f"names no key ({self.prefix}KEY=VALUE)")
                found[name.removeprefix(self.prefix)] = value
        if len(found) > self.limit:
            raise _invalid(("query", self.prefix.rstrip(".")), f"takes {self.limit} keys at most")
        return found


def _declared(dependant: Dependant) -> Declared:
    query, integers, repeatable, headers = set(), set(), set(), set()
    prefixes = []
    stack = [dependant]
    while stack:
        here = stack.pop()
        stack.extend(here.dependencies)
        if isinstance(here.call, QueryFamily):
            prefixes.append(here.call.prefix)
        headers |= {param.alias for param in here.header_params}
        for param in here.query_params:
            query.add(param.alias)
            annotation = _bare(param.field_info.annotation)
            if get_origin(annotation) in (list, tuple, set, frozenset):
                repeatable.add(param.alias)
            elif annotation is int:
                integers.add(param.alias)
    return Declared(
        query=frozenset(query),
        integers=frozenset(integers),
        repeatable=frozenset(repeatable),
        headers=frozenset(headers),
        prefixes=tuple(prefixes),
    )


def _bare(annotation: Any) -> Any:
    """``int`` of ``int | None`` or ``Annotated[int, ...]``."""
    while True:
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
        elif get_origin(annotation) in (Union, UnionType):
            rest = [a for a in get_args(annotation) if a is not type(None)]
            if len(rest) != 1:
                return annotation
            annotation = rest[0]
        else:
            return annotation


def _media_type(request: Request) -> tuple[str, str]:
    content_type = request.headers.get("content-type")
    if not content_type:
        return "", ""
    message = Message()
    message["content-type"] = content_type
    return message.get_content_maintype(), message.get_content_subtype()


def _is_json(request: Request) -> bool:
    kind, subtype = _media_type(request)
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


def _is_multipart(request: Request) -> bool:
    return _media_type(request) == ("multipart", "form-data")


NOT_UTF8 = "is not UTF-8 text once its %-escapes are decoded"


INTEGER = re.compile("-?(?:0|[1-9][0-9]*)")  # as JSON writes one: no sign, space or 1_000


def _check_parameters(request: Request, declared: Declared) -> None:
    """Every path parameter, and every query parameter the route reads, is text that can
    be stored: UTF-8 as sent (the server would read bad bytes as U+FFFD), without NUL or
    lone surrogates; given once unless it is a list, and an integer written as JSON
    writes one. A header the route reads is given once."""
    for name in declared.headers:
        if len(request.headers.getlist(name)) > 1:
            raise _invalid(("header", name), "is given more than once")
    if not _utf8(request.scope.get("raw_path", b"")):
        for name, value in request.path_params.items():
            if isinstance(value, str) and "\ufffd" in value:
                raise _invalid(("path", name), NOT_UTF8)
    for name, value in request.path_params.items():
        if isinstance(value, str) and (problem := boundary.text_problem(value)):
            raise _invalid(("path", name), problem)
    for pair in request.scope.get("query_string", b"").split(b"&"):
        raw_name, _, raw_value = pair.partition(b"=")
        name = unquote_plus(raw_name.decode("latin-1"))
        if declared.reads(name) and not _utf8(raw_value.replace(b"+", b" ")):
            raise _invalid(("query", name), NOT_UTF8)
    for name, value in request.query_params.multi_items():
        if not declared.reads(name):
            continue
        if (problem := boundary.text_problem(value)) is not None:
            raise _invalid(("query", name), problem)
        if name not in declared.repeatable and len(request.query_params.getlist(name)) > 1:
            raise _invalid(("query", name), "is given more than once")
        if name in declared.integers and not INTEGER.fullmatch(value):
            raise _invalid(("query", name), "must be a whole number in ASCII digits")


def _utf8(escaped: bytes) -> bool:
    """Whether URL text (``%``-escaped) is UTF-8 once decoded."""
    try:
        unquote_to_bytes(escaped).decode()
    except UnicodeDecodeError:
        return False
    return True


def _invalid(location: tuple[str | int, ...], message: str) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": location, "msg": message, "input": None}]
    )
