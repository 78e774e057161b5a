"""What the server sends back, and what callers send: the SDK's typed shapes."""

from __future__ import annotations

import mimetypes
from datetime import datetime
from typing import (
    Any,
    Generic,
    TypedDict,
    TypeVar,
)

from pydantic import BaseModel, ConfigDict

from imagemill.domain import JobStatus, Request, TaskKind
from imagemill.specs import ModelSpec

T = TypeVar("T")
EXTENSIONS = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "video/mp4": ".mp4",
    "text/plain; charset=utf-8": ".txt",
}


class _Wire(BaseModel):
    # Unknown fields are ignored, so an older SDK keeps working against a newer server.
    model_config = ConfigDict(extra="ignore", frozen=True)


class Output(_Wire):
    """One stored image (or video, or text) of a job."""

    index: int
    asset_id: str
    url: str
    thumbnail_url: str | None = None  # none for a video or a text
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
    fallback_reason: str | None = None  # why the model asked for did not make it
    cached: bool = False
    cost_usd: float = 0.0
    revised_prompt: str | None = None
    text: str | None = None  # what a text kind (caption, enhance, describe) wrote
    tone: str | None = None  # a caption's tone, when tones were asked for
    nsfw_score: float | None = None
    flagged: bool = False

    @property
    def extension(self) -> str:
        """File extension for the content type, with the dot: ``.png``."""
        return (
            EXTENSIONS.get(self.content_type)
            or mimetypes.guess_extension(self.content_type)
            or ".bin"
        )


class Asset(_Wire):
    """Stored bytes: an upload (input image or mask), or an output."""

    id: str
    url: str
    thumbnail_url: str
    content_type: str
    width: int | None = None
    height: int | None = None
    byte_size: int
    sha256: str
    nsfw_score: float | None = None
    flagged: bool = False


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
    batch_id: str | None = None
    request: Request
    progress: float = 0.0
    progress_message: str | None = None
    queue_position: int | None = None  # while queued, where the line is known (1: next)
    attempt: int = 0
    max_attempts: int = 1
    error: JobError | None = None
    cached: bool = False
    cost_usd: float = 0.0
    enhanced_prompt: str | None = None  # the prompt rendered, when the request enhanced it
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


class Event(_Wire):
    """One event of a job, as the event streams send it."""

    id: int | None  # its position in the log of all jobs (resume point of ``client.events``)
    job_id: str
    seq: int  # its position in its job's log (resume point of ``jobs.events``)
    type: str  # status, progress, preview, output, log, error, done
    data: dict[str, Any]
    created_at: datetime
    # A progress report sent as it came and not stored (``id`` None): ``seq`` is that of
    # the job's last stored event; the log keeps each job's latest progress every few s.
    live: bool = False


class Batch(_Wire):
    """A batch as ``GET /v1/batches/{id}`` returns it: its items are jobs (``job_ids``)."""

    id: str
    status: JobStatus
    counts: dict[str, int]  # items per status: queued, running, succeeded, failed, canceled
    progress: float  # 0 to 1, never going back
    concurrency: int
    total: int
    job_ids: list[str]
    metadata: dict[str, Any] = {}
    webhook_url: str | None = None  # where each completion is sent (``batch.done``)
    deadline_seconds: float | None = None  # of each item that gave none of its own
    completions: int = 0  # times every item had ended; the ``round`` of its ``batch.done``
    created_at: datetime
    finished_at: datetime | None = None

    @property
    def done(self) -> bool:
        """Every item finished: succeeded, failed or canceled."""
        return self.status.terminal


class Group(_Wire):
    """The jobs of one side-by-side submission (``models=[...]``)."""

    group_id: str
    jobs: list[Job]


class Page(_Wire, Generic[T]):
    data: list[T]
    next_cursor: str | None = None


JobPage = Page[Job]
BatchPage = Page[Batch]


class Preset(_Wire):
    id: str
    builtin: bool = False  # a server's built-in style: read-only (``presets.copy`` it)
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
    fallback: list[str | dict[str, Any]]
    enhance: dict[str, Any]  # {"model": ..., "style": ...}: enhance the prompt first
    deadline_seconds: float
    webhook_url: str
    webhook_events: list[str]
    metadata: dict[str, Any]


class JobFilters(TypedDict, total=False):
    status: str
    model: str
    kind: str
    q: str
    group_id: str
    batch_id: str
    metadata: dict[str, Any]  # top-level key -> value, all to match
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
