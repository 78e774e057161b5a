"""The Python SDK: ``Client`` (sync) and ``AsyncClient`` (async) over the HTTP API.

Every operation is written once, as a sans-IO generator: it yields the steps it needs
(an HTTP call, a pause, a callback) and returns the parsed result. The two clients
differ only in how they perform a step (``httpx.Client`` and ``time.sleep``, or
``httpx.AsyncClient`` and ``asyncio.sleep``), so each resource is declared once and is
typed for both::

    with imagemill.Client() as client:          # IMAGEMILL_URL, IMAGEMILL_API_KEY
        job = client.generate("a lighthouse at dusk", size="640x480", seed=7)
        client.jobs.save_outputs(job, "out/")

    async with imagemill.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        job = await client.jobs.create(model="placeholder", prompt="a fox")
        job = await client.jobs.wait(job.id, on_update=print)

Everything the SDK raises on purpose::

    ClientError
    ├── APIError(status_code, code, message, field)   the server answered with an error
    │   ├── InvalidRequestError      400, 422
    │   ├── AuthenticationError      401
    │   ├── PermissionDeniedError    403
    │   ├── NotFoundError            404
    │   ├── ConflictError            409
    │   ├── RateLimitError           429 (retry_after)
    │   └── ServerError              5xx
    ├── APIConnectionError           the server could not be reached, or did not answer in time
    ├── JobFailed(job)               the job ended failed or canceled (``generate``)
    └── WaitTimeout(job)             ``wait`` ran out of time; the job itself goes on
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import mimetypes
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, ParamSpec, Self, TypedDict, TypeVar, Unpack, overload
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict

from imagemill import __version__
from imagemill.domain import JobStatus, ModelSpec, Request, TaskKind

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 60.0  # seconds for one HTTP call
DEFAULT_WAIT_TIMEOUT = 600.0  # seconds ``wait`` and ``generate`` wait for a job
DEFAULT_POLL_INTERVAL = 0.5
MAX_HOLD_SECONDS = 60.0  # longest ``Prefer: wait`` asked for: proxies cut idle calls near here
EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "video/mp4": ".mp4"}

T = TypeVar("T")
P = ParamSpec("P")
ModelT = TypeVar("ModelT", bound=BaseModel)


# -- errors ---------------------------------------------------------------------------------


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
    """``wait`` gave up; ``job`` is its last known state, and it goes on running."""

    def __init__(self, job: Job) -> None:
        super().__init__(f"job {job.id} is still {job.status} ({job.progress:.0%})")
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


# -- what the server sends back ---------------------------------------------------------------


class _Wire(BaseModel):
    # Unknown fields are ignored, so an older SDK keeps working against a newer server.
    model_config = ConfigDict(extra="ignore", frozen=True)


class Output(_Wire):
    """One stored image (or video) of a job."""

    index: int
    asset_id: str
    url: str
    thumbnail_url: str
    content_type: str
    width: int | None = None
    height: int | None = None
    requested_width: int | None = None
    requested_height: int | None = None
    byte_size: int
    sha256: str
    seed: int | None = None
    model: str
    fallback: bool = False
    cached: bool = False
    cost_usd: float = 0.0
    revised_prompt: str | None = None

    @property
    def extension(self) -> str:
        """File extension for the content type, with the dot: ``.png``."""
        return (
            EXTENSIONS.get(self.content_type)
            or mimetypes.guess_extension(self.content_type)
            or ".bin"
        )


class JobError(_Wire):
    code: str
    message: str
    retryable: bool


class Timings(_Wire):
    queued_seconds: float | None = None
    running_seconds: float | None = None
    total_seconds: float | None = None


class Job(_Wire):
    """A job as ``GET /v1/jobs/{id}`` returns it."""

    id: str
    status: JobStatus
    kind: TaskKind
    model: str
    group_id: str | None = None
    request: Request
    progress: float = 0.0
    progress_message: str | None = None
    attempt: int = 0
    max_attempts: int = 1
    error: JobError | None = None
    cached: bool = False
    cost_usd: float = 0.0
    outputs: list[Output] = []
    metadata: dict[str, Any] = {}
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    timings: Timings = Timings()

    @property
    def done(self) -> bool:
        """Finished: succeeded, failed or canceled."""
        return self.status.terminal


class Group(_Wire):
    """The jobs of one side-by-side submission (``models=[...]``)."""

    group_id: str
    jobs: list[Job]


class Page(_Wire, Generic[T]):
    data: list[T]
    next_cursor: str | None = None


JobPage = Page[Job]


class Preset(_Wire):
    id: str
    name: str
    description: str = ""
    model: str | None = None
    prompt_template: str = "{prompt}"
    negative_prompt: str | None = None
    size: str | None = None
    params: dict[str, Any] = {}
    created_at: datetime
    updated_at: datetime


ModelInfo = ModelSpec  # the server sends the domain's model description as is


class _ModelList(_Wire):
    data: list[ModelInfo]


class _PresetList(_Wire):
    data: list[Preset]


# -- what callers send ------------------------------------------------------------------------


class SubmissionFields(TypedDict, total=False):
    """The fields of ``POST /v1/jobs`` (see ``imagemill.domain.Submission``), except ``models``."""

    kind: str
    model: str
    prompt: str
    negative_prompt: str
    n: int
    size: str
    aspect_ratio: str
    seed: int
    preset: str
    params: dict[str, Any]
    input_assets: list[str]
    mask: str
    cache: str
    metadata: dict[str, Any]


class JobFilters(TypedDict, total=False):
    status: str
    model: str
    kind: str
    q: str
    group_id: str
    limit: int


class PresetFields(TypedDict, total=False):
    description: str
    model: str | None
    prompt_template: str
    negative_prompt: str | None
    size: str | None
    params: dict[str, Any]


class PresetChanges(PresetFields, total=False):
    name: str


# -- operations, written once -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call:
    """One HTTP call. ``hold`` is how long the server may keep it open (``Prefer: wait``)."""

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    json: Any = None
    headers: Mapping[str, str] | None = None
    hold: float = 0.0


@dataclass(frozen=True, slots=True)
class Pause:
    seconds: float


@dataclass(frozen=True, slots=True)
class Notify:
    """Run a caller's callback; the async client awaits it if it returns an awaitable."""

    callback: Callable[[], object]


Step = Call | Pause | Notify
Op = Generator[Step, Any, T]


def _call(method: str, path: str, **options: Any) -> Op[httpx.Response]:
    response: httpx.Response = yield Call(method, path, **options)
    _raise_for_error(response)
    return response


def _fetch(model: type[ModelT], method: str, path: str, **options: Any) -> Op[ModelT]:
    response = yield from _call(method, path, **options)
    return model.model_validate(response.json())


def _segment(value: str) -> str:
    return quote(value, safe="")


def _given(**values: Any) -> dict[str, Any]:
    """The values that are not ``None``: unset fields stay out of a request."""
    return {name: value for name, value in values.items() if value is not None}


def _submit(
    body: Mapping[str, Any], idempotency_key: str | None, wait: float | None
) -> Op[httpx.Response]:
    headers = {}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    if wait:
        headers["Prefer"] = f"wait={wait:g}"
    return (
        yield from _call("POST", "/v1/jobs", json=dict(body), headers=headers, hold=wait or 0.0)
    )


def _create_job(
    *,
    idempotency_key: str | None = None,
    wait: float | None = None,
    **fields: Unpack[SubmissionFields],
) -> Op[Job]:
    """Submit a request for one model. With ``wait=N`` the server holds the call up to N s."""
    response = yield from _submit(fields, idempotency_key, wait)
    return Job.model_validate(response.json())


def _create_group(
    models: list[str],
    *,
    idempotency_key: str | None = None,
    wait: float | None = None,
    **fields: Unpack[SubmissionFields],
) -> Op[Group]:
    """Submit one request to several models side by side: one job each, one group."""
    response = yield from _submit({**fields, "models": models}, idempotency_key, wait)
    return Group.model_validate(response.json())


def _get_job(job_id: str) -> Op[Job]:
    """One job, with its outputs, cost, timings and error."""
    return (yield from _fetch(Job, "GET", f"/v1/jobs/{_segment(job_id)}"))


def _list_jobs(*, cursor: str | None = None, **filters: Unpack[JobFilters]) -> Op[Page[Job]]:
    """One page of your jobs, newest first; pass ``next_cursor`` as ``cursor`` for the next."""
    params = _given(cursor=cursor, **filters)
    return (yield from _fetch(JobPage, "GET", "/v1/jobs", params=params))


def _cancel_job(job_id: str) -> Op[Job]:
    """Cancel a queued or running job; ``ConflictError`` if it already finished."""
    return (yield from _fetch(Job, "POST", f"/v1/jobs/{_segment(job_id)}/cancel"))


def _wait_job(
    job_id: str,
    *,
    timeout: float | None = DEFAULT_WAIT_TIMEOUT,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    on_update: Callable[[Job], object] | None = None,
) -> Op[Job]:
    """Poll the job until it finishes and return it; ``WaitTimeout`` after ``timeout`` s.

    ``on_update(job)`` is called with the first state seen and whenever the status or
    progress changes. ``timeout=None`` waits for as long as it takes.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    seen: tuple[object, ...] | None = None
    while True:
        job = yield from _get_job(job_id)
        state = (job.status, job.progress, job.progress_message)
        if on_update is not None and state != seen:
            yield Notify(functools.partial(on_update, job))
        seen = state
        if job.done:
            return job
        remaining = float("inf") if deadline is None else deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(job)
        yield Pause(min(poll_interval, remaining))


def _generate(
    prompt: str,
    *,
    model: str = "placeholder",
    n: int = 1,
    size: str | None = None,
    seed: int | None = None,
    params: dict[str, Any] | None = None,
    negative_prompt: str | None = None,
    cache: str | None = None,
    timeout: float | None = DEFAULT_WAIT_TIMEOUT,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    on_update: Callable[[Job], object] | None = None,
) -> Op[Job]:
    """Submit, wait and return the succeeded job; ``JobFailed`` if it failed or was canceled.

    Without ``on_update`` the server holds the submit until the job is done (``Prefer:
    wait``), so a fast job costs one call; with it, the job is polled for progress.
    """
    started = time.monotonic()
    body = _given(
        model=model,
        prompt=prompt,
        n=n,
        size=size,
        seed=seed,
        params=params,
        negative_prompt=negative_prompt,
        cache=cache,
    )
    hold = None if on_update is not None else min(MAX_HOLD_SECONDS, timeout or MAX_HOLD_SECONDS)
    job = Job.model_validate((yield from _submit(body, None, hold)).json())
    if not job.done or on_update is not None:
        remaining = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
        job = yield from _wait_job(
            job.id, timeout=remaining, poll_interval=poll_interval, on_update=on_update
        )
    if job.status is not JobStatus.SUCCEEDED:
        raise JobFailed(job)
    return job


def _download_asset(asset_id: str) -> Op[bytes]:
    """The asset's bytes."""
    return (yield from _call("GET", f"/v1/assets/{_segment(asset_id)}")).content


def _download_thumbnail(asset_id: str) -> Op[bytes]:
    """A small WebP of the asset."""
    return (yield from _call("GET", f"/v1/assets/{_segment(asset_id)}/thumbnail")).content


def _save_asset(asset_id: str, path: str | os.PathLike[str]) -> Op[Path]:
    """Download the asset into the file ``path`` (created or replaced) and return it."""
    target = Path(path)
    target.write_bytes((yield from _download_asset(asset_id)))
    return target


def _save_outputs(job: Job, directory: str | os.PathLike[str] = ".") -> Op[list[Path]]:
    """Download every output of ``job`` into ``directory`` as ``<job_id>-<index>.<ext>``."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for output in job.outputs:
        name = f"{job.id}-{output.index}{output.extension}"
        paths.append((yield from _save_asset(output.asset_id, folder / name)))
    return paths


def _list_models() -> Op[list[ModelInfo]]:
    """Every model the server knows, available or not (with the reason)."""
    return (yield from _fetch(_ModelList, "GET", "/v1/models")).data


def _get_model(model_id: str) -> Op[ModelInfo]:
    """One model, by id (``openai/gpt-image-1``) or alias."""
    return (yield from _fetch(ModelInfo, "GET", f"/v1/models/{quote(model_id, safe='/')}"))


def _create_preset(name: str, **fields: Unpack[PresetFields]) -> Op[Preset]:
    """A named prompt template (``{prompt}`` is replaced), negative prompt and default params."""
    return (yield from _fetch(Preset, "POST", "/v1/presets", json={"name": name, **fields}))


def _list_presets() -> Op[list[Preset]]:
    return (yield from _fetch(_PresetList, "GET", "/v1/presets")).data


def _get_preset(preset: str) -> Op[Preset]:
    """A preset by id or name."""
    return (yield from _fetch(Preset, "GET", f"/v1/presets/{_segment(preset)}"))


def _update_preset(preset: str, **changes: Unpack[PresetChanges]) -> Op[Preset]:
    """Change the fields given; the others stay."""
    return (
        yield from _fetch(Preset, "PATCH", f"/v1/presets/{_segment(preset)}", json=dict(changes))
    )


def _delete_preset(preset: str) -> Op[None]:
    yield from _call("DELETE", f"/v1/presets/{_segment(preset)}")


# -- resources: each operation bound to a client ------------------------------------------------


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


class Jobs(_Resource[ModeT]):
    """``/v1/jobs``: submit, read, list, cancel and wait for jobs."""

    create = _Operation(_create_job)
    create_group = _Operation(_create_group)
    get = _Operation(_get_job)
    list = _Operation(_list_jobs)
    iter = _Paged(_list_jobs)
    cancel = _Operation(_cancel_job)
    wait = _Operation(_wait_job)
    save_outputs = _Operation(_save_outputs)


class Assets(_Resource[ModeT]):
    """``/v1/assets``: the stored bytes of outputs."""

    download = _Operation(_download_asset)
    thumbnail = _Operation(_download_thumbnail)
    save = _Operation(_save_asset)


class Models(_Resource[ModeT]):
    """``/v1/models``: what each model can do, its params and prices."""

    list = _Operation(_list_models)
    get = _Operation(_get_model)


class Presets(_Resource[ModeT]):
    """``/v1/presets``: your named prompt templates and default params."""

    create = _Operation(_create_preset)
    list = _Operation(_list_presets)
    get = _Operation(_get_preset)
    update = _Operation(_update_preset)
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
            headers=call.headers,
            timeout=self.timeout_for(call),
        )


class _BaseClient(_Resource[ModeT], Generic[ModeT, TransportT]):
    """What both clients share: configuration, resources, and ``generate``."""

    generate = _Operation(_generate)

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

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
