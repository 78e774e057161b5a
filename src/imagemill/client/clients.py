"""The two clients, ``Client`` (sync) and ``AsyncClient`` (async): each operation bound to
a resource, performed over ``httpx.Client`` or ``httpx.AsyncClient``."""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import (
    Any,
    Generic,
    ParamSpec,
    Self,
    TypeVar,
    overload,
)

import httpx
from httpx_sse import aconnect_sse, connect_sse

from imagemill import __version__
from imagemill.client.errors import APIConnectionError, _connection_errors, _raise_for_error
from imagemill.client.operations import (
    Call,
    Notify,
    Op,
    Pause,
    Step,
    _cancel_batch,
    _cancel_job,
    _copy_preset,
    _create_batch,
    _create_group,
    _create_job,
    _create_preset,
    _delete_preset,
    _download_asset,
    _download_thumbnail,
    _generate,
    _get_batch,
    _get_job,
    _get_model,
    _get_preset,
    _job_stream,
    _list_batches,
    _list_jobs,
    _list_models,
    _list_presets,
    _owner_stream,
    _parsed,
    _resume_headers,
    _retry_batch,
    _retry_job,
    _save_asset,
    _save_outputs,
    _Stream,
    _update_preset,
    _upload_asset,
    _wait_batch,
    _wait_job,
)
from imagemill.client.wire import Event, Page

T = TypeVar("T")
P = ParamSpec("P")
DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 60.0  # seconds for one HTTP call
STREAM_IDLE_SECONDS = 45.0  # the server sends a keep-alive every 15 s: silence past this is a drop
STREAM_RECONNECTS = 5  # consecutive drops before an event stream gives up
STREAM_BACKOFF = 0.5


class Sync:
    """Marks a resource bound to the sync ``Client``."""


class Async:
    """Marks a resource bound to the ``AsyncClient``."""


ModeT = TypeVar("ModeT", Sync, Async)
TransportT = TypeVar("TransportT", httpx.BaseTransport, httpx.AsyncBaseTransport)


class _Resource(Generic[ModeT]):
    def __init__(self, runner: _BaseClient[Any, Any]) -> None:
        self._runner = runner


class _Operation(Generic[P, T]):
    """An operation declared once; read from a resource, a method of the sync or async client."""

    def __init__(self, op: Callable[P, Op[T]]) -> None:
        self._op = op
        self.__doc__ = op.__doc__

    @overload
    def __get__(self, resource: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, resource: _Resource[Sync], owner: type[Any]) -> Callable[P, T]: ...
    @overload
    def __get__(
        self, resource: _Resource[Async], owner: type[Any]
    ) -> Callable[P, Awaitable[T]]: ...

    def __get__(self, resource: _Resource[Any] | None, owner: type[Any]) -> Any:
        if resource is None:
            return self
        run, op = resource._runner._run, self._op

        @functools.wraps(op)
        def method(*args: Any, **kwargs: Any) -> Any:
            return run(op(*args, **kwargs))

        return method


class _Paged(Generic[P, T]):
    """Like ``_Operation`` for a paged list: iterates over every item of every page."""

    def __init__(self, op: Callable[P, Op[Page[T]]]) -> None:
        self._op = op
        self.__doc__ = f"Every item across pages, following ``next_cursor``. {op.__doc__ or ''}"

    @overload
    def __get__(self, resource: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, resource: _Resource[Sync], owner: type[Any]) -> Callable[P, Iterator[T]]: ...
    @overload
    def __get__(
        self, resource: _Resource[Async], owner: type[Any]
    ) -> Callable[P, AsyncIterator[T]]: ...

    def __get__(self, resource: _Resource[Any] | None, owner: type[Any]) -> Any:
        if resource is None:
            return self
        runner, op = resource._runner, self._op

        def method(*args: Any, **kwargs: Any) -> Any:
            def page(cursor: str | None) -> Op[Page[T]]:
                return op(*args, **{**kwargs, "cursor": cursor})

            return runner._iterate(page, kwargs.get("cursor"))

        method.__doc__ = self.__doc__
        return method


class _Streamed(Generic[P]):
    """An event stream, read from a resource: an iterator (sync) or async iterator."""

    def __init__(self, make: Callable[P, _Stream]) -> None:
        self._make = make
        self.__doc__ = make.__doc__

    @overload
    def __get__(self, resource: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(
        self, resource: _Resource[Sync], owner: type[Any]
    ) -> Callable[P, Iterator[Event]]: ...
    @overload
    def __get__(
        self, resource: _Resource[Async], owner: type[Any]
    ) -> Callable[P, AsyncIterator[Event]]: ...

    def __get__(self, resource: _Resource[Any] | None, owner: type[Any]) -> Any:
        if resource is None:
            return self
        runner, make = resource._runner, self._make

        @functools.wraps(make)
        def method(*args: Any, **kwargs: Any) -> Any:
            return runner._follow(make(*args, **kwargs))

        return method


class Jobs(_Resource[ModeT]):
    """``/v1/jobs``: submit, read, list, cancel, retry, wait for and follow jobs."""

    create = _Operation(_create_job)
    create_group = _Operation(_create_group)
    get = _Operation(_get_job)
    list = _Operation(_list_jobs)
    iter = _Paged(_list_jobs)
    cancel = _Operation(_cancel_job)
    retry = _Operation(_retry_job)
    wait = _Operation(_wait_job)
    events = _Streamed(_job_stream)
    save_outputs = _Operation(_save_outputs)


class Batches(_Resource[ModeT]):
    """``/v1/batches``: job requests submitted as one; create, read, list, cancel, retry
    and wait for them."""

    create = _Operation(_create_batch)
    get = _Operation(_get_batch)
    list = _Operation(_list_batches)
    cancel = _Operation(_cancel_batch)
    retry = _Operation(_retry_batch)
    wait = _Operation(_wait_batch)


class Assets(_Resource[ModeT]):
    """``/v1/assets``: stored bytes, outputs and uploads."""

    upload = _Operation(_upload_asset)
    download = _Operation(_download_asset)
    thumbnail = _Operation(_download_thumbnail)
    save = _Operation(_save_asset)


class Models(_Resource[ModeT]):
    """``/v1/models``: what each model can do, its params and prices."""

    list = _Operation(_list_models)
    get = _Operation(_get_model)


class Presets(_Resource[ModeT]):
    """``/v1/presets``: your named prompt templates and default params, and the server's
    built-in styles (read-only; ``copy`` one to change it)."""

    create = _Operation(_create_preset)
    list = _Operation(_list_presets)
    get = _Operation(_get_preset)
    update = _Operation(_update_preset)
    copy = _Operation(_copy_preset)
    delete = _Operation(_delete_preset)


# -- the two clients: they differ only in how a step is performed ---------------------------------


class _Config:
    def __init__(
        self, base_url: str | None, api_key: str | None, timeout: float | httpx.Timeout
    ) -> None:
        self.base_url = base_url or os.environ.get("IMAGEMILL_URL") or DEFAULT_URL
        self.api_key = api_key if api_key is not None else os.environ.get("IMAGEMILL_API_KEY")
        self.timeout = httpx.Timeout(timeout)
        self.headers = {
            "User-Agent": f"imagemill-python/{__version__}",
            "Accept": "application/json",
        }
        if self.api_key:
            self.headers["Authorization"] = f"Bearer {self.api_key}"

    def stream_timeout(self) -> httpx.Timeout:
        """An event stream may idle between events, but not past the server's keep-alives."""
        return httpx.Timeout(self.timeout.connect, read=STREAM_IDLE_SECONDS)

    def timeout_for(self, call: Call) -> httpx.Timeout:
        if not call.hold or self.timeout.read is None:
            return self.timeout
        read = self.timeout.read + call.hold
        timeout = self.timeout
        return httpx.Timeout(timeout.connect, read=read, write=timeout.write, pool=timeout.pool)

    def build(self, http: httpx.Client | httpx.AsyncClient, call: Call) -> httpx.Request:
        return http.build_request(
            call.method,
            call.path,
            params=call.params,
            json=call.json,
            files=call.files,
            headers=call.headers,
            timeout=self.timeout_for(call),
        )


class _BaseClient(_Resource[ModeT], Generic[ModeT, TransportT]):
    """What both clients share: configuration, resources, and ``generate``."""

    generate = _Operation(_generate)
    events = _Streamed(_owner_stream)

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        transport: TransportT | None = None,
    ) -> None:
        super().__init__(self)
        self._config = _Config(base_url, api_key, timeout)
        self._http = self._open(self._config, transport)
        self.jobs: Jobs[ModeT] = Jobs(self)
        self.batches: Batches[ModeT] = Batches(self)
        self.assets: Assets[ModeT] = Assets(self)
        self.models: Models[ModeT] = Models(self)
        self.presets: Presets[ModeT] = Presets(self)

    @property
    def base_url(self) -> str:
        return self._config.base_url

    def _open(
        self, config: _Config, transport: TransportT | None
    ) -> httpx.Client | httpx.AsyncClient:
        raise NotImplementedError

    def _run(self, op: Op[T]) -> Any:
        """Perform the operation's steps; its result, or an awaitable of it."""
        raise NotImplementedError

    def _iterate(self, page: Callable[[str | None], Op[Page[T]]], cursor: str | None) -> Any:
        raise NotImplementedError

    def _follow(self, stream: _Stream) -> Any:
        raise NotImplementedError


class Client(_BaseClient[Sync, httpx.BaseTransport]):
    """The sync client. ``base_url`` defaults to ``$IMAGEMILL_URL``, ``api_key`` to
    ``$IMAGEMILL_API_KEY``; ``transport`` replaces the network (tests, in-process use)."""

    _http: httpx.Client

    def _open(self, config: _Config, transport: httpx.BaseTransport | None) -> httpx.Client:
        return httpx.Client(base_url=config.base_url, headers=config.headers, transport=transport)

    def _run(self, op: Op[T]) -> T:
        reply: object = None
        try:
            while True:
                reply = self._perform(op.send(reply))
        except StopIteration as done:
            result: T = done.value
            return result

    def _perform(self, step: Step) -> object:
        if isinstance(step, Pause):
            time.sleep(step.seconds)
            return None
        if isinstance(step, Notify):
            return step.callback()
        with _connection_errors(self._http.base_url):
            return self._http.send(self._config.build(self._http, step))

    def _iterate(
        self, page: Callable[[str | None], Op[Page[T]]], cursor: str | None
    ) -> Iterator[T]:
        while cursor != "":
            current = self._run(page(cursor))
            yield from current.data
            cursor = current.next_cursor or ""

    def _follow(self, stream: _Stream) -> Iterator[Event]:
        last, drops = stream.after, 0
        while True:
            try:
                with connect_sse(
                    self._http,
                    "GET",
                    stream.path,
                    headers=_resume_headers(stream, last),
                    timeout=self._config.stream_timeout(),
                ) as source:
                    if not source.response.is_success:
                        source.response.read()
                        _raise_for_error(source.response)
                    for sse in source.iter_sse():
                        if (event := _parsed(sse)) is None:
                            continue
                        if not event.live:  # a live report has no position of its own
                            last, drops = int(sse.id), 0
                        yield event
                        if stream.until_done and event.type == "done":
                            return
            except httpx.TransportError as exc:
                drops += 1
                if drops > STREAM_RECONNECTS:
                    raise APIConnectionError(f"the event stream kept dropping: {exc}") from exc
                time.sleep(min(STREAM_BACKOFF * drops, 5.0))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncClient(_BaseClient[Async, httpx.AsyncBaseTransport]):
    """The async client: the same resources as ``Client``, each method awaitable.

    ``on_update`` callbacks may be plain functions or coroutine functions.
    """

    _http: httpx.AsyncClient

    def _open(
        self, config: _Config, transport: httpx.AsyncBaseTransport | None
    ) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=config.base_url, headers=config.headers, transport=transport
        )

    async def _run(self, op: Op[T]) -> T:
        reply: object = None
        try:
            while True:
                reply = await self._perform(op.send(reply))
        except StopIteration as done:
            result: T = done.value
            return result

    async def _perform(self, step: Step) -> object:
        if isinstance(step, Pause):
            await asyncio.sleep(step.seconds)
            return None
        if isinstance(step, Notify):
            result = step.callback()
            return await result if inspect.isawaitable(result) else result
        with _connection_errors(self._http.base_url):
            return await self._http.send(self._config.build(self._http, step))

    async def _iterate(
        self, page: Callable[[str | None], Op[Page[T]]], cursor: str | None
    ) -> AsyncIterator[T]:
        while cursor != "":
            current = await self._run(page(cursor))
            for item in current.data:
                yield item
            cursor = current.next_cursor or ""

    async def _follow(self, stream: _Stream) -> AsyncIterator[Event]:
        last, drops = stream.after, 0
        while True:
            try:
                async with aconnect_sse(
                    self._http,
                    "GET",
                    stream.path,
                    headers=_resume_headers(stream, last),
                    timeout=self._config.stream_timeout(),
                ) as source:
                    if not source.response.is_success:
                        await source.response.aread()
                        _raise_for_error(source.response)
                    async for sse in source.aiter_sse():
                        if (event := _parsed(sse)) is None:
                            continue
                        if not event.live:  # a live report has no position of its own
                            last, drops = int(sse.id), 0
                        yield event
                        if stream.until_done and event.type == "done":
                            return
            except httpx.TransportError as exc:
                drops += 1
                if drops > STREAM_RECONNECTS:
                    raise APIConnectionError(f"the event stream kept dropping: {exc}") from exc
                await asyncio.sleep(min(STREAM_BACKOFF * drops, 5.0))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
