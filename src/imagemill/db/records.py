"""What callers hand the repository to write: a job or a batch about to be inserted, jobs
to queue again, and outputs and blobs already in storage, ready to be recorded."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from imagemill.domain import Request


@dataclass(frozen=True, slots=True)
class JobDraft:
    """A job about to be inserted. ``reuse_cached``: a cache hit on ``cache_key`` if any."""

    id: str
    owner_id: str
    request: Request
    max_attempts: int
    group_id: str | None = None
    cache_key: str | None = None
    idempotency_key: str | None = None
    fingerprint: str | None = None  # of the request as submitted (``jobs.fingerprint``)
    reuse_cached: bool = False
    deadline_seconds: float | None = None
    webhook_url: str | None = None
    webhook_events: list[str] | None = None
    batch_id: str | None = None
    key_id: str | None = None  # the API key it is submitted with
    reserve_micros: int = 0  # what it holds against budgets until it ends (``spend``)
    trace_parent: str | None = None  # the trace of its submit (``telemetry/tracing``)


@dataclass(frozen=True, slots=True)
class BatchDraft:
    """A batch about to be inserted, with its items (``JobDraft`` each, ``batch_id`` set)."""

    id: str
    owner_id: str
    concurrency: int
    metadata: dict[str, Any] = field(default_factory=dict)
    webhook_url: str | None = None  # where its completions go (``batch.done``)
    deadline_seconds: float | None = None  # of each item that gives none of its own


@dataclass(frozen=True, slots=True)
class StoredOutput:
    """An output already in blob storage, ready to be recorded with the job's completion."""

    sha256: str
    content_type: str
    width: int | None
    height: int | None
    byte_size: int
    storage_key: str
    model: str
    fallback: bool
    seed: int | None
    requested_width: int | None
    requested_height: int | None
    cost_usd: float
    revised_prompt: str | None
    generated_width: int | None = None
    generated_height: int | None = None
    nsfw_score: float | None = None
    flagged: bool = False
    fallback_reason: str | None = None  # why the model asked for did not make it
    text: str | None = None  # a text kind's output (its bytes, as text)
    tone: str | None = None  # a caption's tone, when tones were asked for


@dataclass(frozen=True, slots=True)
class Requeue:
    """A failed or canceled job its owner runs again: its new deadline, and what it holds
    against budgets until it ends (``spend``)."""

    job_id: str
    deadline_at: datetime | None
    reserve_micros: int = 0


@dataclass(frozen=True, slots=True)
class StoredBlob:
    """Bytes already in blob storage (an upload), with what checking them told."""

    sha256: str
    storage_key: str
    content_type: str
    width: int | None
    height: int | None
    byte_size: int
    thumbnail_key: str | None = None
