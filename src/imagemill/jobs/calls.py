"""An attempt's calls of its job's models: the prompt enhanced first if the request asks,
then the model and each fallback in order until one makes the outputs, stored.

Each call runs in its provider's slot (``holding.py``), counted by its circuit
(``providers/circuits.py``), within the job's deadline and the attempt's timeout
(``job_timeout_seconds``, stopped while the call waits for the response budget:
``imagemill.memory``), with a ``RunContext`` of its own (``contexts.py``). The worker
claims the job, and records, retries or fails what comes of these calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
from collections.abc import Callable
from typing import Any

import httpx

from imagemill.boundary import storable_text
from imagemill.config import Settings
from imagemill.db.records import StoredOutput
from imagemill.db.repository import Repository
from imagemill.db.slots import ProviderSlots
from imagemill.domain import Job, Output, Task
from imagemill.errors import CircuitOpen, ProviderError, ProviderUnavailable
from imagemill.fields import MAX_PROMPT_CHARS
from imagemill.jobs import tasks
from imagemill.jobs.contexts import Nudges, run_context
from imagemill.jobs.holding import Held, slot_for
from imagemill.jobs.progress import ProgressLog
from imagemill.jobs.service import utcnow
from imagemill.memory import Reservation, WeightedSemaphore
from imagemill.providers.base import Provider, RunContext
from imagemill.providers.circuits import Circuits
from imagemill.providers.registry import Registry
from imagemill.specs import ModelSpec
from imagemill.storage.assets import AssetWriter
from imagemill.telemetry.journal import provider_call


class ModelCalls:
    def __init__(
        self,
        settings: Settings,
        repo: Repository,
        registry: Registry,
        assets: AssetWriter,
        http: httpx.AsyncClient,
        *,
        worker_id: str,
        slots: ProviderSlots,
        circuits: Circuits,
        nudges: Nudges,
        progress: ProgressLog,
        canceled: set[str],
        on_call: Callable[[str, str], object] | None = None,
    ) -> None:
        """``canceled``: the worker's jobs whose owner canceled them while running;
        ``on_call`` is told the model and outcome of each provider call (the metrics)."""
        self.on_call = on_call
        self.settings = settings
        self.repo = repo
        self.registry = registry
        self.assets = assets
        self.http = http
        self.worker_id = worker_id
        self.slots = slots
        self.circuits = circuits
        self.nudges = nudges
        self.progress = progress
        self._canceled = canceled
        # Providers' answers held at once, in bytes, however many hosted jobs are in flight.
        self.answers = WeightedSemaphore(settings.response_budget_bytes)

    def time_left(self, job: Job) -> float:
        """Seconds this attempt may take: the attempt timeout, cut by the job's deadline."""
        limit = self.settings.job_timeout_seconds
        if job.deadline_at is not None:
            limit = min(limit, (job.deadline_at - utcnow()).total_seconds())
        return limit

    def until_deadline(self, job: Job) -> float | None:
        if job.deadline_at is None:
            return None
        return max(0.0, (job.deadline_at - utcnow()).total_seconds())

    async def enhanced(self, job: Job, holding: Held | None = None) -> Job:
        """The job with its prompt enhanced, if its request asks for that: by the text
        model named, once (recorded, so a later attempt renders the same prompt), fitted
        to the prompt limits of its models."""
        enhance = job.request.enhance
        if enhance is None or job.enhanced_prompt is not None:
            return job
        provider, spec = self.registry.resolve(enhance.model)
        if not spec.available:
            raise ProviderUnavailable(
                f"{spec.id} (enhance) is unavailable: {spec.unavailable_reason}", retryable=False
            )
        task = tasks.enhancing(job, spec, enhance.params)
        deadline = asyncio.timeout(self.until_deadline(job))
        self.circuits.check(provider.name)
        async with deadline, slot_for(provider.name, holding, self.slots):
            with self.circuits.counted(provider.name), Reservation(self.answers) as memory:
                async with asyncio.timeout(self.time_left(job)) as clock:
                    context = self._context(job, spec.id, deadline, memory, clock)
                    with self._logged(job, spec):
                        results = await provider.run(task, context)
        models = [job.model, *(f.model for f in job.request.fallback)]
        chain = [self.registry.resolve(model)[1] for model in models]
        text = tasks.fitted(storable_text(results[0].text or "", MAX_PROMPT_CHARS), chain)
        if not text:
            raise ProviderError(f"{spec.id} answered with no enhanced prompt")
        cost = results[0].cost_usd
        if cost is None:
            cost = spec.pricing.per_image
        await self.repo.save_enhanced_prompt(job.id, self.worker_id, text, spec.id, cost, utcnow())
        return dataclasses.replace(job, enhanced_prompt=text, enhance_cost_usd=cost)

    async def chain(self, job: Job, holding: Held | None = None) -> list[StoredOutput]:
        """The job's model, then each fallback in order, until one succeeds."""
        chain = [
            (job.model, job.request.params),
            *((f.model, f.params) for f in job.request.fallback),
        ]
        failures: list[tuple[str, ProviderError]] = []
        reason = None  # why the model before did not make it: the next one is a fallback
        for position, (model_id, params) in enumerate(chain):
            provider, spec = self.registry.resolve(model_id)
            try:
                if not spec.available:  # no credentials here, say: the fallback's case too
                    raise ProviderUnavailable(
                        f"{spec.id} is unavailable: {spec.unavailable_reason}", retryable=False
                    )
                self.circuits.check(provider.name)  # failing lately: skip it
                return await self._run_model(
                    job, provider, spec, params, fallback_reason=reason, holding=holding
                )
            except ProviderError as exc:
                failures.append((spec.id, exc))
                reason = (
                    exc.message
                    if isinstance(exc, CircuitOpen)
                    or (isinstance(exc, ProviderUnavailable) and not exc.retryable)
                    else f"{spec.id} failed ({exc.code}: {exc.message})"
                )
                if position + 1 < len(chain):
                    message = f"{reason}; trying {chain[position + 1][0]}"
                    await self.repo.record_event(
                        job.id, self.worker_id, "log", {"message": message}, utcnow()
                    )
        skipped = [exc for _, exc in failures if isinstance(exc, CircuitOpen)]
        uncalled = all(
            isinstance(exc, CircuitOpen)
            or (isinstance(exc, ProviderUnavailable) and not exc.retryable)
            for _, exc in failures
        )
        if skipped and uncalled:  # circuits open (or no credentials): nothing was called
            raise min(skipped, key=lambda exc: exc.retry_after)
        raise _chain_error(failures)

    async def _run_model(
        self,
        job: Job,
        provider: Provider,
        spec: ModelSpec,
        params: dict[str, Any],
        *,
        fallback_reason: str | None,
        holding: Held | None = None,
    ) -> list[StoredOutput]:
        """The outputs of one model of the chain (a fallback when ``fallback_reason``
        says why the model asked for did not make them), stored."""
        task = await tasks.for_model(job, spec, params, self.repo, self.assets.blobs)
        # Waiting for the provider's slot counts against the job's deadline, not against
        # the attempt's time: that starts once the provider is actually called.
        deadline = asyncio.timeout(self.until_deadline(job))
        # The answer's megabytes count against the process's budget until stored (memory.py).
        memory = Reservation(self.answers)
        async with deadline, slot_for(provider.name, holding, self.slots):
            with memory:
                with self.circuits.counted(provider.name):
                    async with asyncio.timeout(self.time_left(job)) as clock:
                        context = self._context(job, spec.id, deadline, memory, clock)
                        with provider_call(
                            job.id, job.owner_id, spec.id, job.attempt, self.on_call
                        ):
                            results = await provider.run(task, context)
                return await self._stored(results, task, spec, fallback_reason, memory)

    def _logged(self, job: Job, spec: ModelSpec) -> contextlib.AbstractContextManager[None]:
        """A provider call of ``job``'s attempt, logged, timed and counted."""
        return provider_call(job.id, job.owner_id, spec.id, job.attempt, self.on_call)

    async def _stored(
        self,
        results: list[Output],
        task: Task,
        spec: ModelSpec,
        fallback_reason: str | None,
        memory: Reservation,
    ) -> list[StoredOutput]:
        """``results``, stored in order; each let go once stored, so an image's megabytes
        are held once."""
        stored = []
        results.reverse()
        while results:
            out = results.pop()
            stored.append(
                await self.assets.store(
                    out,
                    task,
                    model_id=spec.id,
                    fallback_reason=fallback_reason,
                    pricing=spec.pricing,
                    hold_memory=memory.take,
                )
            )
            del out
        return stored

    def _context(
        self,
        job: Job,
        model_id: str,
        deadline: asyncio.Timeout,
        memory: Reservation,
        clock: asyncio.Timeout,
    ) -> RunContext:
        return run_context(
            job,
            model_id,
            repo=self.repo,
            worker_id=self.worker_id,
            http=self.http,
            seconds=self.time_left(job),
            abandoned=lambda: job.id in self._canceled or deadline.expired(),
            public_url=self.settings.public_url,
            nudge=self.nudges.of(job.id),
            progress=self.progress,
            hold_memory=memory.take,
            clock=clock,
        )


def _chain_error(failures: list[tuple[str, ProviderError]]) -> ProviderError:
    """The first model's error, naming how each fallback failed; retryable if any was."""
    first = failures[0][1]
    if len(failures) == 1:
        return first
    tried = "; ".join(f"{model}: {exc.message}" for model, exc in failures[1:])
    combined = copy.copy(first)  # the provider's own exception object stays as it was
    combined.message = f"{first.message} (fallbacks failed too: {tried})"
    combined.args = (combined.message,)
    combined.retryable = any(exc.retryable for _, exc in failures)
    return combined
