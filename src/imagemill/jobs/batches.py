"""Batches: job requests submitted as one, with one concurrency limit and one progress.

``POST /v1/batches`` checks every request as ``POST /v1/jobs`` would (a refusal names
``requests.N.<field>``), then records the batch and its items in one transaction: the
items are ordinary jobs (``batch_id`` on each; their events, outputs, cache, cost and
history are a job's). At most ``concurrency`` items run at once, across every worker
process (``Worker`` waits for a ``batch:<id>`` slot before a worker slot, so items held
back take none), and the slots are shared in turn with the owner's other work
(``jobs/scheduling.py``). The batch's status and counts are its items'; its progress is
each item's share (1 once it ended) and never goes back, not even when failed items are
retried. Cancel and retry act on the items: cancel on those not finished, retry on the
failed and canceled ones.

Each time every item has ended the batch is complete: counted once (``completions``),
and sent once as ``batch.done`` to its ``webhook_url``, by the transaction that ended
the last item (``db/batch_completion.py``). A retry re-opens it for another round.
"""

from __future__ import annotations

import builtins
import contextlib

from imagemill.db.records import BatchDraft, JobDraft
from imagemill.db.repository import Repository
from imagemill.domain import Batch, JobStatus, Submission, batch_status
from imagemill.errors import Conflict, InvalidInput
from imagemill.ids import new_id
from imagemill.jobs.service import JobService, utcnow
from imagemill.spend.limits import KeyLimits

MAX_REQUESTS = 1000
MAX_CONCURRENCY = 100


class BatchService:
    def __init__(self, repo: Repository, jobs: JobService) -> None:
        self.repo = repo
        self.jobs = jobs

    async def create(
        self,
        owner_id: str,
        requests: builtins.list[Submission],
        *,
        concurrency: int,
        metadata: dict[str, object],
        webhook_url: str | None = None,
        deadline_seconds: float | None = None,
        key_id: str | None = None,
        limits: KeyLimits | None = None,
    ) -> Batch:
        """Check every request, then record and enqueue the batch; ``InvalidInput`` naming
        ``requests.N.<field>`` for the first refused, or ``webhook_url`` for a target
        that may not be called. ``deadline_seconds`` becomes the deadline of each item
        that gives none; ``webhook_url`` gets a ``batch.done`` at each completion. The
        batch holds the estimate of every item against the budgets of ``key_id`` and the
        owner, all or none (``BudgetExceeded``: nothing is recorded)."""
        batch_id = new_id("bat")
        drafts = await self.drafts(
            owner_id,
            requests,
            batch_id=batch_id,
            deadline_seconds=deadline_seconds,
            key_id=key_id,
        )
        if webhook_url is not None and self.jobs.targets is not None:
            await self.jobs.targets.check(webhook_url, "webhook_url")
        batch = BatchDraft(
            batch_id, owner_id, concurrency, dict(metadata), webhook_url, deadline_seconds
        )
        in_flight = await self.jobs.spend.admit((d.request for d in drafts), key_id, limits)
        jobs = await self.repo.create_batch(batch, drafts, utcnow(), in_flight=in_flight)
        await self.jobs.spend.made(jobs, key_id, limits)
        await self.jobs.enqueue(jobs)
        return await self.get(owner_id, batch_id)

    async def drafts(
        self,
        owner_id: str,
        requests: builtins.list[Submission],
        *,
        batch_id: str,
        deadline_seconds: float | None = None,
        key_id: str | None = None,
    ) -> builtins.list[JobDraft]:
        """The batch's items, each checked and priced; ``InvalidInput`` naming
        ``requests.N.<field>`` for the first refused."""
        drafts = []
        for index, submission in enumerate(requests):
            field = f"requests.{index}"
            if submission.models is not None:
                raise InvalidInput(
                    "a batch item runs one model; submit a comparison on its own",
                    field=f"{field}.models",
                )
            if submission.deadline_seconds is None and deadline_seconds is not None:
                submission = submission.model_copy(update={"deadline_seconds": deadline_seconds})
            try:
                drafts += await self.jobs.drafts(
                    owner_id, submission, batch_id=batch_id, key_id=key_id
                )
            except InvalidInput as exc:
                inner = f"{field}.{exc.field}" if exc.field else field
                raise InvalidInput(exc.message, field=inner) from exc
        return drafts

    async def get(self, owner_id: str, batch_id: str) -> Batch:
        """The batch as it is now (``NotFound`` unless the owner's), its progress as shown."""
        return await self._shown(await self.repo.get_batch(batch_id, owner_id))

    async def list(self, owner_id: str, before: str | None, limit: int) -> builtins.list[Batch]:
        return [await self._shown(b) for b in await self.repo.list_batches(owner_id, before, limit)]

    async def cancel(self, owner_id: str, batch_id: str) -> Batch:
        """Cancel every item not finished yet (finished ones stay as they are)."""
        batch = await self.repo.get_batch(batch_id, owner_id)
        for job in batch.jobs:
            if not job.status.terminal:
                with contextlib.suppress(Conflict):  # it finished meanwhile
                    await self.jobs.cancel(owner_id, job.id)
        return await self.get(owner_id, batch_id)

    async def retry(
        self,
        owner_id: str,
        batch_id: str,
        *,
        key_id: str | None = None,
        limits: KeyLimits | None = None,
    ) -> Batch:
        """Run the failed and canceled items again (each the same job, queued afresh), all
        in one transaction: each holds its estimate against budgets again, and all are
        queued or none (``BudgetExceeded``; ``TooManyRequests`` past the limits of
        ``key_id``, the key retrying them)."""
        batch = await self.repo.get_batch(batch_id, owner_id)
        ended = [j for j in batch.jobs if j.status in (JobStatus.FAILED, JobStatus.CANCELED)]
        await self.jobs.requeue(owner_id, ended, key_id=key_id, limits=limits)
        return await self.get(owner_id, batch_id)

    async def tally(self, batch_id: str) -> dict[str, object]:
        """The batch's ``counts``, ``progress`` (as shown: never lower) and ``status``, as
        its event stream reports them."""
        tally = await self.repo.batch_tally(batch_id)
        counts = tally.counts
        total = sum(counts.values())
        finished = total - counts["queued"] - counts["running"]
        measured = (finished + tally.running_progress) / total if total else 1.0
        if measured > tally.shown:
            await self.repo.raise_batch_progress(batch_id, measured)
        return {
            "batch_id": batch_id,
            "status": batch_status(counts, tally.started).value,
            "counts": counts,
            "progress": round(max(measured, tally.shown), 6),
        }

    async def _shown(self, batch: Batch) -> Batch:
        """The batch with its progress as high as it was ever shown."""
        measured = batch.measured_progress()
        if measured > batch.progress:
            await self.repo.raise_batch_progress(batch.id, measured)
            batch.progress = measured
        return batch
