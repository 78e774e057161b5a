"""Every operation, written once as a sans-IO generator: it yields the steps it needs
(an HTTP call, a pause, a callback) and returns the parsed result; each client performs
the steps its own way. Event streams are described here too (``_Stream``).
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import (
    Any,
    TypeVar,
    Unpack,
)
from urllib.parse import quote

import httpx
from httpx_sse import ServerSentEvent
from pydantic import BaseModel

from imagemill.client.errors import JobFailed, WaitTimeout, _raise_for_error
from imagemill.client.wire import (
    Asset,
    Batch,
    BatchPage,
    Event,
    Group,
    Job,
    JobFilters,
    JobPage,
    ModelInfo,
    Page,
    Preset,
    PresetChanges,
    PresetFields,
    SubmissionFields,
    _ModelList,
    _PresetList,
)
from imagemill.domain import JobStatus

T = TypeVar("T")
ModelT = TypeVar("ModelT", bound=BaseModel)
DEFAULT_WAIT_TIMEOUT = 600.0  # seconds ``wait`` and ``generate`` wait for a job
DEFAULT_POLL_INTERVAL = 0.5
MAX_HOLD_SECONDS = 60.0  # longest ``Prefer: wait`` asked for: proxies cut idle calls near here


@dataclass(frozen=True, slots=True)
class Call:
    """One HTTP call. ``hold`` is how long the server may keep it open (``Prefer: wait``)."""

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    json: Any = None
    headers: Mapping[str, str] | None = None
    hold: float = 0.0
    files: Mapping[str, tuple[str, bytes]] | None = None  # a multipart upload


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
    models: list[str | dict[str, Any]],
    *,
    idempotency_key: str | None = None,
    wait: float | None = None,
    **fields: Unpack[SubmissionFields],
) -> Op[Group]:
    """Submit one request to several models side by side: one job each, one group. A
    model is an id, or ``{"model": id, "params": {...}}`` with params of its own."""
    response = yield from _submit({**fields, "models": models}, idempotency_key, wait)
    return Group.model_validate(response.json())


def _get_job(job_id: str) -> Op[Job]:
    """One job, with its outputs, cost, timings and error."""
    return (yield from _fetch(Job, "GET", f"/v1/jobs/{_segment(job_id)}"))


def _list_jobs(*, cursor: str | None = None, **filters: Unpack[JobFilters]) -> Op[Page[Job]]:
    """One page of your jobs, newest first; pass ``next_cursor`` as ``cursor`` for the next.
    ``metadata={"story_id": 42}``: jobs whose metadata has each of those top-level values."""
    metadata = filters.pop("metadata", None) or {}
    params = _given(cursor=cursor, **filters)
    for key, value in metadata.items():
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        params[f"metadata.{key}"] = text
    return (yield from _fetch(JobPage, "GET", "/v1/jobs", params=params))


def _cancel_job(job_id: str) -> Op[Job]:
    """Cancel a queued or running job; ``ConflictError`` if it already finished."""
    return (yield from _fetch(Job, "POST", f"/v1/jobs/{_segment(job_id)}/cancel"))


def _retry_job(job_id: str) -> Op[Job]:
    """Run a failed or canceled job again (same id, queued); ``ConflictError`` otherwise."""
    return (yield from _fetch(Job, "POST", f"/v1/jobs/{_segment(job_id)}/retry"))


def _create_batch(
    requests: list[SubmissionFields],
    *,
    concurrency: int = 5,
    metadata: dict[str, Any] | None = None,
    webhook_url: str | None = None,
    deadline_seconds: float | None = None,
) -> Op[Batch]:
    """Submit job requests as one, at most ``concurrency`` running at once; every request
    is checked first (``InvalidRequestError`` naming ``requests.N.<field>``, or
    ``webhook_url``). ``webhook_url`` gets one signed ``batch.done`` each time every item
    has ended; ``deadline_seconds`` is the deadline of each item that gives none."""
    body: dict[str, Any] = {
        "requests": list(requests),
        "concurrency": concurrency,
        "metadata": metadata or {},
        **_given(webhook_url=webhook_url, deadline_seconds=deadline_seconds),
    }
    return (yield from _fetch(Batch, "POST", "/v1/batches", json=body))


def _get_batch(batch_id: str) -> Op[Batch]:
    """One batch: status, counts per item status, progress, its jobs in order."""
    return (yield from _fetch(Batch, "GET", f"/v1/batches/{_segment(batch_id)}"))


def _list_batches(*, cursor: str | None = None, limit: int | None = None) -> Op[Page[Batch]]:
    """One page of your batches, newest first."""
    params = _given(cursor=cursor, limit=limit)
    return (yield from _fetch(BatchPage, "GET", "/v1/batches", params=params))


def _cancel_batch(batch_id: str) -> Op[Batch]:
    """Cancel every item not finished yet."""
    return (yield from _fetch(Batch, "POST", f"/v1/batches/{_segment(batch_id)}/cancel"))


def _retry_batch(batch_id: str) -> Op[Batch]:
    """Run the failed and canceled items again (each the same job)."""
    return (yield from _fetch(Batch, "POST", f"/v1/batches/{_segment(batch_id)}/retry"))


def _wait_batch(
    batch_id: str,
    *,
    timeout: float | None = None,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    on_update: Callable[[Batch], object] | None = None,
) -> Op[Batch]:
    """Poll the batch until every item finished and return it; ``WaitTimeout`` after
    ``timeout`` s (``None``: as long as it takes). ``on_update(batch)`` is called with
    the first state seen and whenever its counts or progress change."""
    return (
        yield from _poll(
            lambda: _get_batch(batch_id),
            lambda b: (b.status, b.progress, tuple(sorted(b.counts.items()))),
            timeout,
            poll_interval,
            on_update,
        )
    )


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
    return (
        yield from _poll(
            lambda: _get_job(job_id),
            lambda j: (j.status, j.progress, j.progress_message),
            timeout,
            poll_interval,
            on_update,
        )
    )


Polled = TypeVar("Polled", Job, Batch)


def _poll(
    get: Callable[[], Op[Polled]],
    state: Callable[[Polled], object],
    timeout: float | None,
    poll_interval: float,
    on_update: Callable[[Polled], object] | None,
) -> Op[Polled]:
    """Get the thing until it is ``done``; ``on_update`` with the first state seen and
    each change of ``state``; ``WaitTimeout`` after ``timeout`` s (``None``: no limit)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    seen: object = None
    first = True
    while True:
        current = yield from get()
        now = state(current)
        if on_update is not None and (first or now != seen):
            yield Notify(functools.partial(on_update, current))
        seen, first = now, False
        if current.done:
            return current
        remaining = float("inf") if deadline is None else deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(current)
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


def _upload_asset(file: bytes | str | os.PathLike[str], filename: str | None = None) -> Op[Asset]:
    """Store an image (bytes, or the path of a file) to use as an input or mask."""
    if isinstance(file, bytes):
        data, name = file, filename or "upload"
    else:
        data, name = Path(file).read_bytes(), filename or Path(file).name
    response = yield from _call("POST", "/v1/assets", files={"file": (name, data)})
    return Asset.model_validate(response.json())


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


def _copy_preset(preset: str, name: str | None = None) -> Op[Preset]:
    """A copy of a preset (a built-in style, say) as your own; ``name`` defaults to its."""
    body = {"name": name} if name is not None else None
    return (yield from _fetch(Preset, "POST", f"/v1/presets/{_segment(preset)}/copy", json=body))


def _delete_preset(preset: str) -> Op[None]:
    yield from _call("DELETE", f"/v1/presets/{_segment(preset)}")


@dataclass(frozen=True, slots=True)
class _Stream:
    """An event stream to follow: where, where to resume, and whether ``done`` ends it."""

    path: str
    after: int | None
    until_done: bool


def _job_stream(job_id: str, after: int = 0) -> _Stream:
    """The job's events from the start (or after ``after``), until its ``done`` event;
    the connection is resumed where it broke (``Last-Event-ID``) if it drops."""
    return _Stream(f"/v1/jobs/{_segment(job_id)}/events", after, until_done=True)


def _owner_stream(after: int | None = None) -> _Stream:
    """Every event of all your jobs from now on (or after event id ``after``), including
    jobs submitted later; it does not end. Resumed where it broke if it drops."""
    return _Stream("/v1/events", after, until_done=False)


def _parsed(sse: ServerSentEvent) -> Event | None:
    """The event an SSE message carries (keep-alive comments and bare fields carry none)."""
    return Event.model_validate_json(sse.data) if sse.data else None


def _resume_headers(stream: _Stream, last: int | None) -> dict[str, str]:
    headers = {"Accept": "text/event-stream"}
    if last is not None:
        headers["Last-Event-ID"] = str(last)
    return headers
