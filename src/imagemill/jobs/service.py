"""The job service: submit, read, cancel and wait. What the API, CLI and SDK stand on.

Submit inserts the job rows (committed) *before* sending a message: the row is the
record of truth, the message only a wake-up. A lost message is found again by the
sweeper; a duplicate one loses the claim and is dropped.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from imagemill.boundary import escaped, has_words, quoted
from imagemill.db.accounts import Accounts, Preset
from imagemill.db.queries import JobFilter
from imagemill.db.records import JobDraft, Requeue
from imagemill.db.repository import Repository
from imagemill.domain import (
    ENHANCEABLE,
    Asset,
    CachePolicy,
    ComparedModel,
    Enhancement,
    FallbackModel,
    Job,
    Request,
    Submission,
    TaskKind,
)
from imagemill.errors import BudgetExceeded, Conflict, InvalidInput, NotFound, TooManyRequests
from imagemill.events.bus import EventBus
from imagemill.ids import new_id
from imagemill.jobs import validation
from imagemill.providers.registry import Registry
from imagemill.specs import ModelSpec
from imagemill.spend.gate import SpendGate
from imagemill.spend.limits import KeyLimits, RateLimits
from imagemill.styles import find_preset
from imagemill.telemetry.tracing import traceparent
from imagemill.writing import TEXT_PARAMS

log = logging.getLogger(__name__)

Dispatch = Callable[[str], Awaitable[None]]


class WebhookTargeting(Protocol):
    """Where a new job's events go, and whether a URL may be a target
    (``events.webhooks.WebhookTargets``)."""

    async def for_submission(
        self, owner_id: str, submission: Submission
    ) -> tuple[str | None, list[str] | None]: ...

    async def check(self, url: str, field: str) -> None: ...


WAIT_POLL_SECONDS = 1.0  # safety net for waiters when events come from another process


def utcnow() -> datetime:
    return datetime.now(UTC)


class JobService:
    def __init__(
        self,
        repo: Repository,
        accounts: Accounts,
        registry: Registry,
        bus: EventBus,
        dispatch: Dispatch,
        max_attempts: int,
        deadline_seconds: float,
        targets: WebhookTargeting | None = None,
        max_pixels: int | None = None,
        rate_limits: RateLimits | None = None,
    ) -> None:
        """``max_pixels``: the most pixels this server makes or takes in one image."""
        self.spend = SpendGate(registry, repo, rate_limits or RateLimits())
        self.repo = repo
        self.accounts = accounts
        self.registry = registry
        self.bus = bus
        self.dispatch = dispatch
        self.max_attempts = max_attempts
        self.deadline_seconds = deadline_seconds  # unless a request gives its own
        self.targets = targets
        self.max_pixels = max_pixels

    async def submit(
        self,
        owner_id: str,
        submission: Submission,
        idempotency_key: str | None = None,
        *,
        fingerprint: str | None = None,
        key_id: str | None = None,
        limits: KeyLimits | None = None,
    ) -> list[Job]:
        """Validate, consult the cache, record and enqueue. One job per model.

        Every job that will call a model holds its estimate against the budgets of
        ``key_id`` (the API key the request came with) and of the owner, or none is
        recorded (``BudgetExceeded``); the key's ``limits`` on images a minute and jobs
        in flight hold too (``TooManyRequests``).

        With an ``idempotency_key``, a repeat of the same request returns the jobs the
        first one made, and the key reused for another request is a 422 (as the IETF
        Idempotency-Key draft has it). ``fingerprint`` (default: the submission's own)
        is recorded with the jobs; callers that take requests in another shape (the
        OpenAI-compatible endpoints) pass theirs.
        """
        fingerprint = fingerprint or request_fingerprint("jobs", submission)
        if idempotency_key:
            earlier = await self.repo.find_idempotent(owner_id, idempotency_key)
            if earlier:
                return _same_request(earlier, fingerprint)
        drafts = await self.drafts(
            owner_id,
            submission,
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
            key_id=key_id,
        )
        in_flight = await self.spend.admit((d.request for d in drafts), key_id, limits)
        try:
            jobs = await self.repo.create_jobs(drafts, utcnow(), in_flight=in_flight)
        except (Conflict, BudgetExceeded, TooManyRequests):
            # The same key sent at once twice: the one that lost (on the key, or on a
            # budget or limit the first took) answers with the first's jobs.
            earlier = await self.repo.find_idempotent(owner_id, idempotency_key or "")
            if not earlier:
                raise
            return _same_request(earlier, fingerprint)
        await self.spend.made(jobs, key_id, limits)
        await self.enqueue(jobs)
        return jobs

    async def drafts(
        self,
        owner_id: str,
        submission: Submission,
        *,
        idempotency_key: str | None = None,
        fingerprint: str | None = None,
        batch_id: str | None = None,
        key_id: str | None = None,
    ) -> builtins.list[JobDraft]:
        """The jobs a submission makes, checked (``InvalidInput`` naming the field),
        priced and ready to insert: one per model."""
        preset = None
        if submission.preset is not None:
            preset = await self._preset(owner_id, submission.preset)
        expanded = validation.expand_preset(submission, preset)
        inputs = await self._inputs(owner_id, expanded)
        # A preset's negative prompt serves the models that take one (a style is for any).
        preset_negative = submission.negative_prompt is None and expanded.negative_prompt
        try:
            requests = self._resolve(expanded, inputs, preset_negative=bool(preset_negative))
        except InvalidInput as exc:
            raise _from_preset(exc, submission, preset) from exc
        input_hashes = [a.sha256 for a in (*inputs.images, inputs.mask) if a is not None]
        webhook_url, webhook_events = (
            await self.targets.for_submission(owner_id, expanded) if self.targets else (None, None)
        )
        group_id = new_id("grp") if expanded.models is not None else None
        drafts: builtins.list[JobDraft] = []
        for request in requests:
            key = validation.cache_key(request, input_hashes)
            drafts.append(
                JobDraft(
                    id=new_id("job"),
                    owner_id=owner_id,
                    request=request,
                    max_attempts=self.max_attempts,
                    group_id=group_id,
                    cache_key=key,
                    idempotency_key=idempotency_key if not drafts else None,
                    fingerprint=fingerprint,
                    reuse_cached=_may_reuse(request),
                    deadline_seconds=request.deadline_seconds or self.deadline_seconds,
                    webhook_url=webhook_url,
                    webhook_events=webhook_events,
                    batch_id=batch_id,
                    key_id=key_id,
                    reserve_micros=self.spend.estimate(request).reserve_micros,
                    trace_parent=traceparent(),
                )
            )
        return drafts

    async def enqueue(self, jobs: Sequence[Job]) -> None:
        """Wake a worker for each job that is not finished already (a cache hit is)."""
        for job in jobs:
            if not job.status.terminal:
                await self._send(job.id)

    async def find_retried(
        self, owner_id: str, fingerprint: str, within_seconds: float
    ) -> builtins.list[Job]:
        """The jobs of the latest request with this fingerprint made in the last
        ``within_seconds`` (none: ``[]``): what a client's retry of it should join."""
        since = utcnow() - timedelta(seconds=within_seconds)
        return await self.repo.find_fingerprinted(owner_id, fingerprint, since)

    async def _preset(self, owner_id: str, name: str) -> Preset:
        try:
            return await find_preset(self.accounts, owner_id, name)
        except NotFound as exc:
            raise InvalidInput(
                f"no preset {quoted(name)}; GET /v1/presets lists yours", field="preset"
            ) from exc

    def _resolve(
        self, submission: Submission, inputs: validation.Inputs, *, preset_negative: bool = False
    ) -> list[Request]:
        if submission.models is not None:
            _once_each(submission.models)
            targets = [
                (entry.model, f"models.{i}", entry.params)
                for i, entry in enumerate(submission.models)
            ]
        else:
            targets = [(submission.model or "", "model", {})]
        requests = []
        for model, field, params in targets:
            spec = self.registry.resolve(model, field)[1]
            own = validation.with_params(
                _for_model(submission, spec, preset_negative), params, field
            )
            try:
                request = validation.resolve(
                    own, spec, field, inputs=inputs, max_pixels=self.max_pixels
                )
            except InvalidInput as exc:  # a param of the model's own: named where it was given
                name = (exc.field or "").removeprefix("params.").split(".")[0]
                if exc.field and exc.field.startswith("params.") and name in params:
                    raise InvalidInput(exc.message, field=f"{field}.{exc.field}") from exc
                raise
            fallback = self._fallback(submission, request, inputs, preset_negative)
            update = {"fallback": fallback, "enhance": self._enhancement(submission)}
            requests.append(request.model_copy(update=update))
        return requests

    def _enhancement(self, submission: Submission) -> Enhancement | None:
        """The request's ``enhance``, checked: a model that enhances, with its params."""
        enhance = submission.enhance
        if enhance is None:
            return None
        if submission.kind not in ENHANCEABLE:
            raise InvalidInput(
                f"enhance is for {', '.join(ENHANCEABLE)} requests, not {submission.kind}",
                field="enhance",
            )
        if not has_words(submission.prompt):
            raise InvalidInput("enhance needs a prompt to enhance", field="prompt")
        spec = self.registry.resolve(enhance.model, "enhance.model")[1]
        params = {**enhance.params, **({"style": enhance.style} if enhance.style else {})}
        text = Submission(kind=TaskKind.ENHANCE, model=spec.id, prompt=submission.prompt)
        try:
            validation.resolve(text.model_copy(update={"params": params}), spec)
        except InvalidInput as exc:
            field = exc.field or ""
            if field == "params.style":
                field = "style"
            elif field in ("model", "kind"):
                field = "model"
            raise InvalidInput(exc.message, field=f"enhance.{field}") from exc
        return Enhancement(model=spec.id, params=params)

    def _fallback(
        self,
        submission: Submission,
        request: Request,
        inputs: validation.Inputs,
        preset_negative: bool,
    ) -> list[FallbackModel]:
        """The request's fallback chain, each model checked against the request."""
        size = request.dimensions
        chain: list[FallbackModel] = []
        for index, target in enumerate(submission.fallback):
            field = f"fallback.{index}"
            spec = self.registry.resolve(target.model, field)[1]
            if spec.id == request.model or spec.id in (f.model for f in chain):
                raise InvalidInput(f"{quoted(spec.id)} is already in the chain", field=field)
            own = _for_model(submission, spec, preset_negative)
            params = target.params
            if not submission.kind.rules.sized:
                params = _same_brief(submission, spec, target.params, field)
            chain.append(
                validation.resolve_fallback(own, size, spec, params, field, inputs, self.max_pixels)
            )
        return chain

    async def _inputs(self, owner_id: str, submission: Submission) -> validation.Inputs:
        """The submission's input images and mask, each the caller's own."""

        async def find(asset_id: str, field: str) -> Asset:
            try:
                return await self.repo.get_asset(asset_id, owner_id)
            except NotFound as exc:
                raise InvalidInput(f"no asset {quoted(asset_id)}", field=field) from exc

        images = [
            await find(asset_id, f"input_assets.{index}")
            for index, asset_id in enumerate(submission.input_assets)
        ]
        mask = await find(submission.mask, "mask") if submission.mask is not None else None
        return validation.Inputs(tuple(images), mask)

    async def _send(self, job_id: str) -> None:
        try:
            await self.dispatch(job_id)
        except Exception:  # the row is committed: the sweeper will send it again
            log.exception("could not send job %s; the sweeper will retry", job_id)

    async def get(self, owner_id: str, job_id: str) -> Job:
        return await self.repo.get_job(job_id, owner_id)

    async def list(self, owner_id: str, where: JobFilter, limit: int = 50) -> builtins.list[Job]:
        return await self.repo.list_jobs(owner_id, where, limit)

    async def cancel(self, owner_id: str, job_id: str) -> Job:
        return await self.repo.cancel(job_id, owner_id, utcnow())

    async def retry(
        self,
        owner_id: str,
        job_id: str,
        *,
        key_id: str | None = None,
        limits: KeyLimits | None = None,
    ) -> Job:
        """Run a failed or canceled job again: the same id and request, its attempts
        counted afresh, a new deadline; ``Conflict`` for a job in any other state. It
        holds its estimate against budgets again (``BudgetExceeded``), and counts against
        the limits of ``key_id``, the key retrying it (``TooManyRequests``)."""
        job = await self.repo.get_job(job_id, owner_id)  # 404 unless the owner's
        if not await self.requeue(owner_id, [job], key_id=key_id, limits=limits):
            job = await self.repo.get_job(job_id, owner_id)
            raise Conflict(
                f"job {job_id} is {job.status}; only a failed or canceled job can be retried"
            )
        return await self.repo.get_job(job_id, owner_id)

    async def requeue(
        self,
        owner_id: str,
        jobs: Sequence[Job],
        *,
        key_id: str | None = None,
        limits: KeyLimits | None = None,
    ) -> builtins.list[str]:
        """Queue ``jobs`` again, those still failed or canceled, in one transaction (each a
        new deadline, its estimate held against budgets: all or none), and wake workers
        for them; the ids queued."""
        if not jobs:
            return []
        now = utcnow()
        retries = []
        for job in jobs:
            seconds = job.request.deadline_seconds or self.deadline_seconds
            deadline_at = now + timedelta(seconds=seconds) if seconds else None
            reserve = self.spend.estimate(job.request).reserve_micros
            retries.append(Requeue(job.id, deadline_at, reserve))
        in_flight = await self.spend.admit((job.request for job in jobs), key_id, limits)
        queued = await self.repo.requeue_all(owner_id, retries, now, in_flight=in_flight)
        await self.spend.made([job for job in jobs if job.id in queued], key_id, limits)
        for job_id in queued:
            await self._send(job_id)
        return queued

    async def delete(self, owner_id: str, job_id: str) -> None:
        await self.repo.delete_job(job_id, owner_id)

    async def wait(
        self,
        owner_id: str,
        job_ids: Sequence[str],
        timeout: float,  # noqa: ASYNC109 - on timeout it returns the jobs as they are, no error
        known: Sequence[Job] | None = None,
        finished: Mapping[str, Job] | None = None,
    ) -> builtins.list[Job]:
        """The jobs, once all are finished or ``timeout`` seconds have passed.

        Done events (from this process) tick jobs off; the log is read again when all
        are ticked, every ``WAIT_POLL_SECONDS`` (events of other processes), and when
        the subscription fell behind. ``known``: the one job as the caller just submitted
        it: while its status (read cheaply, once subscribed, so no done event is missed)
        is the same, it is not read in full first. ``finished``: jobs as this process's
        worker recorded them finished (``Handoff``): once every job's done event came,
        those are the answer, not read again.
        """
        deadline = time.monotonic() + timeout
        with self.bus.subscribe(set(job_ids)) as subscription:
            if known is not None and len(job_ids) == 1 and [j.id for j in known] == list(job_ids):
                status = await self.repo.job_status(job_ids[0])
                jobs = list(known) if status and status[0] is known[0].status else None
            else:
                jobs = None
            while True:
                if jobs is None:
                    jobs = await self.repo.get_jobs(job_ids)
                if len(jobs) != len(job_ids) or any(j.owner_id != owner_id for j in jobs):
                    raise NotFound("no such job")
                remaining = deadline - time.monotonic()
                if all(job.status.terminal for job in jobs) or remaining <= 0:
                    return jobs
                pending = {job.id for job in jobs if not job.status.terminal}
                look_again = time.monotonic() + min(remaining, WAIT_POLL_SECONDS)
                while pending and (left := look_again - time.monotonic()) > 0:
                    event = await subscription.next(left)
                    if event is None:
                        break
                    if event["type"] == "done":
                        pending.discard(event["job_id"])
                subscription.resync()
                jobs = None
                # The worker hands its job over before the commit's events are out.
                if not pending and finished is not None and all(i in finished for i in job_ids):
                    jobs = [finished[i] for i in job_ids]


def request_fingerprint(endpoint: str, submission: Submission) -> str:
    """sha256 of a request as submitted (every field, defaults filled in), and where."""
    canonical = {"endpoint": endpoint, "request": submission.model_dump(mode="json")}
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _once_each(models: list[ComparedModel]) -> None:
    """A model may be compared with itself under other params, not twice the same way."""
    seen: list[ComparedModel] = []
    for index, entry in enumerate(models):
        if entry in seen:
            raise InvalidInput(
                f"model {quoted(entry.model)} is already compared with these params",
                field=f"models.{index}",
            )
        seen.append(entry)


def _for_model(submission: Submission, spec: ModelSpec, preset_negative: bool) -> Submission:
    """The submission as ``spec`` gets it: without the negative prompt a preset gave, for a
    model that takes none."""
    if preset_negative and not spec.limits.negative_prompt:
        return submission.model_copy(update={"negative_prompt": None})
    return submission


def _same_brief(
    submission: Submission, spec: ModelSpec, params: dict[str, Any], field: str
) -> dict[str, Any]:
    """A text fallback's params: its own, with the request's brief (tones, hashtags, ...),
    which is the same for every model of the chain, so each writes what was asked."""
    for name in params:
        if name in TEXT_PARAMS:
            raise InvalidInput(
                f"params.{name} is the request's, for every model of its chain: give it in "
                "the request's params, not a fallback's",
                field=f"{field}.params.{escaped(name)}",
            )
    brief = {k: v for k, v in submission.params.items() if k in TEXT_PARAMS}
    takes = spec.params_for(submission.kind)
    for name in brief:
        if name not in takes:
            raise InvalidInput(
                f"model {quoted(spec.id)} cannot write to this request's brief: it takes no "
                f"params.{name}",
                field=field,
            )
    return {**params, **brief}


def _from_preset(exc: InvalidInput, submission: Submission, preset: Preset | None) -> InvalidInput:
    """``exc``, saying so when what it names came from the preset, not the request."""
    if preset is None:
        return exc
    field = exc.field or ""
    if not field.startswith("params."):
        return exc
    key = field.removeprefix("params.").split(".")[0]
    if key in submission.params or key not in preset.params:
        return exc
    return InvalidInput(f"{exc.message} (from preset {quoted(preset.name)})", field=exc.field)


def _same_request(jobs: builtins.list[Job], fingerprint: str) -> builtins.list[Job]:
    """The jobs an Idempotency-Key made, if this is the request that made them."""
    recorded = jobs[0].request_fingerprint
    if recorded is not None and recorded != fingerprint:
        raise InvalidInput(
            "this Idempotency-Key was used for a different request; use a new key for a "
            "new request",
            field="Idempotency-Key",
        )
    return jobs


def _may_reuse(request: Request) -> bool:
    """Whether the cache policy lets this request reuse an identical earlier one."""
    if request.cache is CachePolicy.AUTO:
        return request.seed is not None  # only a seeded request is deterministic
    return request.cache is CachePolicy.USE
