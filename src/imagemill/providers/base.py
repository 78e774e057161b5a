"""The provider contract: everything a provider author needs to read.

A provider is an object with a ``name``, a list of the models it serves, and one
method that matters::

    class Provider(Protocol):
        name: str
        def models(self) -> list[ModelSpec]: ...
        async def run(self, task: Task, ctx: RunContext) -> list[Output]: ...

``run`` gets a validated ``Task`` (params already checked against the model's JSON
Schema, size resolved) and returns one ``Output`` per image: bytes, or a URL that
imagemill downloads and stores at once. It raises errors from ``imagemill.errors``
(``RateLimited``, ``ProviderTimeout``, ``ContentRejected``, ...), translating the
foreign ones in one place. ``RunContext`` is all it may touch besides its own
client: progress, the provider-side request id for resuming, previews, an httpx
client, the deadline, and wake-ups (``nudged``) when the provider calls back.

An answer that carries images is read with ``await read_body(response, ctx)`` (an httpx
response opened with ``stream``, or an SDK's streaming response): it waits, before the
body is read, while the answers this process holds fill ``IMAGEMILL_RESPONSE_BUDGET_BYTES``
(``imagemill.memory``), so a burst of large images is read a share at a time rather than
all at once. An adapter whose SDK reads the body itself calls ``ctx.hold_memory(n)`` as
soon as it knows the size.

A provider that can call back (a webhook when its work ends) asks ``ctx.webhook_url``
for where to call, and defines ``async def webhook(headers, body)``: it verifies the
call (signature, age) and raises ``Unauthorized`` when that does not hold. A verified
call nudges the job the URL names, in whichever process runs it: the adapter's waiting
loop, ``await ctx.nudged(poll_interval)``, returns ``True`` at once and the adapter
asks the provider for its work then (a nudge carries no result, so what a job records
always comes from the provider's own API, once). Polling stays the safety net: a
nudge is not stored, and one that reaches no running attempt is dropped.

A provider whose work runs on this machine (CPU or GPU: local models) sets ``device =
True``: its jobs share the process's ``worker_concurrency`` slots. Any other is taken for
a hosted one, whose jobs mostly wait on the network: up to ``hosted_concurrency`` of them
are in flight at once (and ``provider_concurrency`` bounds each provider).

Providers are found through the entry-point group ``imagemill.providers``; each
entry point names a factory called with the ``Settings``. Built-ins register the
same way. A provider holding clients may define ``async def aclose()``; it is called
when the service stops.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Protocol, TypeVar, runtime_checkable

import httpx

from imagemill.boundary import storable_text
from imagemill.config import Settings
from imagemill.domain import InputImage, Output, Task, TaskKind
from imagemill.memory import HoldMemory, expected_bytes, unbounded
from imagemill.specs import InputLimits, ModelSpec, Pricing, SizeRange

# What a provider module imports, from here: the contract in one place.
__all__ = [
    "ENTRY_POINT_GROUP",
    "InputImage",
    "InputLimits",
    "ModelSpec",
    "Output",
    "Pricing",
    "Provider",
    "ProviderFactory",
    "RunContext",
    "SizeRange",
    "Task",
    "TaskKind",
    "read_body",
    "redact",
    "retry_after_seconds",
    "side_by_side",
]

ENTRY_POINT_GROUP = "imagemill.providers"
MAX_PROGRESS_MESSAGE_CHARS = 500
T = TypeVar("T")


@runtime_checkable
class Provider(Protocol):
    name: str

    def models(self) -> list[ModelSpec]: ...

    async def run(self, task: Task, ctx: RunContext) -> list[Output]: ...


ProviderFactory = Callable[[Settings], Provider]


class RunContext:
    """What a running provider may touch. Created by the worker for one attempt."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        deadline: float,
        attempt: int,
        provider_ref: str | None,
        on_progress: Callable[[float, str | None], Awaitable[None]],
        on_provider_ref: Callable[[str], Awaitable[None]],
        on_preview: Callable[[bytes], Awaitable[None]],
        abandoned: Callable[[], bool] = lambda: False,
        webhook_url: Callable[[str], str | None] = lambda provider: None,
        nudged: Callable[[float], Awaitable[bool]] | None = None,
        hold_memory: HoldMemory = unbounded,
    ) -> None:
        self.http = http
        self.deadline = deadline  # time.monotonic() value
        self.attempt = attempt
        self._provider_ref = provider_ref
        self._on_progress = on_progress
        self._on_provider_ref = on_provider_ref
        self._on_preview = on_preview
        self._abandoned = abandoned
        self._webhook_url = webhook_url
        self._nudged = nudged or _never_nudged
        self._hold_memory = hold_memory

    @property
    def provider_ref(self) -> str | None:
        """The request id a previous attempt saved: resume it instead of paying again."""
        return self._provider_ref

    async def save_provider_ref(self, ref: str) -> None:
        """Record the provider's request id before waiting on it."""
        await self._on_provider_ref(ref)
        self._provider_ref = ref

    async def progress(self, fraction: float, message: str | None = None) -> None:
        """How far the provider is (0 to 1), with a short message of its own if it has one."""
        if message is not None:
            message = storable_text(message, MAX_PROGRESS_MESSAGE_CHARS)
        await self._on_progress(min(1.0, max(0.0, fraction)), message)

    async def preview(self, image: bytes) -> None:
        """A small intermediate image (partial image, denoising step)."""
        await self._on_preview(image)

    @property
    def abandoned(self) -> bool:
        """Why ``run`` was canceled: no later attempt will resume the provider's work (the
        owner canceled the job, or its deadline passed), so stop it and its billing;
        ``False`` when the worker is only shutting down or the attempt timed out (a later
        attempt resumes it from ``provider_ref``)."""
        return self._abandoned()

    def webhook_url(self, provider: str) -> str | None:
        """Where ``provider`` may call back about this job (``POST
        /v1/providers/{provider}/webhook?job=…``); ``None`` when the server has no public
        URL to give out (then: poll)."""
        return self._webhook_url(provider)

    async def nudged(self, within: float) -> bool:
        """Wait up to ``within`` seconds (the adapter's poll interval) for the provider to
        call back about this job. ``True`` as soon as it does, or at once if it did since
        the last call (a callback during a poll is not lost): look at the provider's
        work now. ``False`` after ``within`` seconds without one: poll as usual."""
        return await self._nudged(within)

    def time_left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    async def hold_memory(self, nbytes: int) -> None:
        """Count ``nbytes`` of an answer this attempt holds in memory against the process's
        response budget, first waiting while it is full (only this attempt's first call
        waits). Held until the attempt's outputs are stored."""
        await self._hold_memory(nbytes)


class StreamedResponse(Protocol):
    """An HTTP response whose body is not read yet: httpx's, or the one an SDK wraps."""

    @property
    def headers(self) -> Mapping[str, str]: ...

    async def aread(self) -> bytes: ...


async def read_body(response: StreamedResponse, ctx: RunContext) -> bytes:
    """The body of a ``response`` opened as a stream, read once ``ctx.hold_memory`` has
    room for its ``Content-Length`` (``memory.expected_bytes``); the rest counted once
    read, if it came out longer (decompressed, or over the guess)."""
    counted = expected_bytes(response.headers)
    await ctx.hold_memory(counted)
    content = await response.aread()
    if len(content) > counted:
        await ctx.hold_memory(len(content) - counted)  # held already: this does not wait
    return content


async def side_by_side(calls: Iterable[Awaitable[T]]) -> list[T]:
    """The results of ``calls`` run at once, in order (one image per call, say). When one
    fails, the others are canceled and waited for before its error is raised: none goes
    on calling, reading an answer or holding memory after its attempt has ended."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _never_nudged(within: float) -> bool:
    """A context nobody can nudge (no worker behind it): the whole interval passes."""
    await asyncio.sleep(within)
    return False


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with every given secret blanked out, for messages that may echo a request."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header's delay: seconds, or an HTTP date; ``None`` if absent or bad."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
