"""Wire schemas of batches: ``POST /v1/batches`` and the batch as the API shows it.

Apart from ``schemas.py`` because the webhook sender sends a batch in this same shape
(``batch.done``'s ``batch`` is ``BatchOut``, as ``GET /v1/batches/{id}`` answers), and
it must not need the app's dependencies for it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from imagemill.domain import Batch, JobStatus, Submission
from imagemill.fields import DeadlineSeconds, Metadata, WebhookUrl, json_integer
from imagemill.jobs.batches import MAX_CONCURRENCY, MAX_REQUESTS


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests: list[Submission] = Field(
        min_length=1,
        max_length=MAX_REQUESTS,
        description=f"Up to {MAX_REQUESTS:,} job requests, each as `POST /v1/jobs` takes "
        "it, with one `model` (not `models`: a comparison is its own request): the items, "
        "in this order.",
    )
    concurrency: Annotated[
        int,
        BeforeValidator(json_integer),  # 5 or 5.0, as JSON Schema has an integer; not "5"
        Field(ge=1, le=MAX_CONCURRENCY),
        WithJsonSchema({"type": "integer", "minimum": 1, "maximum": MAX_CONCURRENCY}),
    ] = Field(5, description="How many items run at once.")
    metadata: Metadata = Field(default_factory=dict)
    webhook_url: WebhookUrl | None = Field(
        None,
        description="Where to POST one `batch.done` each time every item has ended "
        "(succeeded, failed or canceled), signed per Standard Webhooks like a job's "
        "events; a retry re-opens the batch, and its next completion sends another, with "
        "the next `round`. An item's own `webhook_url` gets that item's events as for any "
        "job.",
    )
    deadline_seconds: DeadlineSeconds | None = Field(
        None,
        description="The `deadline_seconds` of each item that gives none of its own (see "
        "`POST /v1/jobs`).",
    )


class BatchCounts(BaseModel):
    queued: int
    running: int
    succeeded: int
    failed: int
    canceled: int


class BatchOut(BaseModel):
    object: Literal["batch"] = "batch"
    id: str
    status: JobStatus = Field(
        description="queued until an item starts, running until every item ended; then "
        "succeeded if all did, failed if any failed, else canceled."
    )
    counts: BatchCounts
    progress: float = Field(
        description="0 to 1: each item's share, 1 once it ended. It never goes back."
    )
    concurrency: int
    total: int
    job_ids: list[str] = Field(description="The items, in the order of the requests.")
    metadata: dict[str, Any]
    webhook_url: str | None = Field(None, description="Where each completion is sent.")
    deadline_seconds: float | None = Field(
        None, description="The deadline of each item that gave none of its own."
    )
    completions: int = Field(
        0,
        description="How many times every item has ended: 1 once the batch completed, one "
        "more for each completion after a retry re-opened it. Each sends one `batch.done` "
        "(to `webhook_url`), whose `round` is this number.",
    )
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, batch: Batch) -> BatchOut:
        return cls(
            id=batch.id,
            status=batch.status,
            counts=BatchCounts(**batch.counts),
            progress=round(batch.progress, 6),
            concurrency=batch.concurrency,
            total=len(batch.jobs),
            job_ids=[job.id for job in batch.jobs],
            metadata=batch.metadata,
            webhook_url=batch.webhook_url,
            deadline_seconds=batch.deadline_seconds,
            completions=batch.completions,
            created_at=batch.created_at,
            finished_at=batch.finished_at,
        )


class BatchPage(BaseModel):
    data: list[BatchOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page.")
