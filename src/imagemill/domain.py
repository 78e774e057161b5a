"""Plain typed models of the domain: requests, tasks, outputs, jobs, assets, models.

These are what modules pass to each other. Wire schemas (``api/schemas.py``) and
tables (``db/tables.py``) are separate and convert to and from these.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from imagemill.boundary import BoundaryError, quoted
from imagemill.fields import (
    MAX_INPUTS,
    MAX_N,
    MAX_PROMPT_CHARS,
    MAX_SEED,
    MAX_SIDE,
    MIN_SIDE,
    RATIO_PATTERN,
    RATIO_TERM,
    Count,
    DeadlineSeconds,
    Metadata,
    Params,
    Seed,
    SizeText,
    WebhookUrl,
)

_SIZE_RE = re.compile(r"([0-9]+)[xX]([0-9]+)")
_RATIO_RE = re.compile(f"({RATIO_TERM}):({RATIO_TERM})")


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED)


class TaskKind(StrEnum):
    IMAGE = "image"
    EDIT = "edit"
    UPSCALE = "upscale"
    VIDEO = "video"
    CAPTION = "caption"  # product text and/or images -> captions in tones
    ENHANCE = "enhance"  # prompt -> richer prompt
    DESCRIBE = "describe"  # image -> prompt

    @property
    def rules(self) -> KindRules:
        return KIND_RULES[self]


@dataclass(frozen=True, slots=True)
class KindRules:
    """What a kind of task takes and makes."""

    prompt: Literal["required", "optional"]
    inputs: Literal["required", "optional", "none"]  # input images
    makes: Literal["image", "video", "text"]

    @property
    def sized(self) -> bool:
        """Whether a size applies (it makes pixels)."""
        return self.makes != "text"


KIND_RULES = {
    TaskKind.IMAGE: KindRules("required", "none", "image"),
    TaskKind.EDIT: KindRules("optional", "required", "image"),
    TaskKind.UPSCALE: KindRules("optional", "required", "image"),
    TaskKind.VIDEO: KindRules("optional", "required", "video"),
    # A caption is written from product text, images, or both: one of them at least.
    TaskKind.CAPTION: KindRules("optional", "optional", "text"),
    TaskKind.ENHANCE: KindRules("required", "none", "text"),
    TaskKind.DESCRIBE: KindRules("optional", "required", "text"),
}
# The kinds that render a prompt, which a request may have enhanced first.
ENHANCEABLE = (TaskKind.IMAGE, TaskKind.EDIT, TaskKind.VIDEO)


EventType = Literal["status", "progress", "preview", "output", "log", "error", "done"]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
DEFAULT_WEBHOOK_EVENTS: tuple[EventType, ...] = ("done",)


class CachePolicy(StrEnum):
    AUTO = "auto"  # reuse only deterministic (seeded) requests
    USE = "use"  # reuse any identical request
    BYPASS = "bypass"


@dataclass(frozen=True, slots=True)
class Size:
    width: int
    height: int

    @classmethod
    def parse(cls, text: str) -> Size:
        """Parse ``"WxH"``; raise ``ValueError`` with a readable reason."""
        match = _SIZE_RE.fullmatch(text)
        if not match or any(len(side) > 1 and side[0] == "0" for side in match.groups()):
            raise ValueError(
                f"size must look like 'WIDTHxHEIGHT', e.g. '1024x1024', not {quoted(text)}"
            )
        size = cls(int(match[1]), int(match[2]))
        for side in (size.width, size.height):
            if not MIN_SIDE <= side <= MAX_SIDE:
                raise ValueError(f"each side must be between {MIN_SIDE} and {MAX_SIDE} pixels")
        return size

    @classmethod
    def from_aspect_ratio(cls, ratio: str, area: int = 1024 * 1024) -> Size:
        """The size of about ``area`` pixels with the given ``"W:H"`` ratio (multiples of 8)."""
        match = _RATIO_RE.fullmatch(ratio)
        if not match:
            raise ValueError(
                f"aspect_ratio must look like '16:9' (each term from 1 to 999), not {quoted(ratio)}"
            )
        aspect = float(match[1]) / float(match[2])
        height = (area / aspect) ** 0.5
        return cls(
            max(MIN_SIDE, round(height * aspect / 8) * 8), max(MIN_SIDE, round(height / 8) * 8)
        )

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


def seeds(first: int, n: int) -> list[int]:
    """The seeds of ``n`` images from ``first``: one apart, wrapping past ``MAX_SEED`` to 0,
    so every seed recorded can be submitted again."""
    return [(first + index) % (MAX_SEED + 1) for index in range(n)]


class FallbackModel(BaseModel):
    """A model to try when the ones before it in a request's chain failed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(
        max_length=200, description="Model id, e.g. `recraft/recraftv3` or `placeholder`."
    )
    params: Params = Field(default_factory=dict)


class ComparedModel(BaseModel):
    """One model of a side-by-side comparison, with params of its own."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(max_length=200, description="Model id, e.g. `openai/gpt-image-1`.")
    params: Params = Field(
        default_factory=dict,
        description="This model's params, added to the request's `params` (and winning over "
        "them): what only this model takes, or a different value for it.",
    )


class Enhancement(BaseModel):
    """Enhance the prompt with a text model before rendering: both are recorded."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(
        max_length=200,
        description="A model that does `enhance`, e.g. `openai/gpt-4o-mini` or `placeholder`.",
    )
    style: str | None = Field(
        None,
        min_length=1,
        max_length=300,
        description="Style modifiers to work in, e.g. 'cinematic, golden hour'.",
    )
    params: Params = Field(default_factory=dict, description="The text model's params.")


class Request(BaseModel):
    """One generation request for one model, after preset expansion: what a job runs."""

    model_config = ConfigDict(frozen=True)

    kind: TaskKind = TaskKind.IMAGE
    model: str
    prompt: str = ""
    negative_prompt: str | None = None
    n: int = Field(1, ge=1, le=MAX_N)
    size: str | None = None
    seed: int | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    input_assets: list[str] = Field(default_factory=list)
    mask: str | None = None
    cache: CachePolicy = CachePolicy.AUTO
    fallback: list[FallbackModel] = Field(default_factory=list)
    deadline_seconds: float | None = None
    webhook_url: str | None = None
    webhook_events: list[str] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    enhance: Enhancement | None = None

    @property
    def dimensions(self) -> Size | None:
        return Size.parse(self.size) if self.size else None


def output_count(kind: TaskKind, n: int, params: dict[str, Any]) -> int:
    """How many outputs a task makes: ``n``, or ``n`` per tone for a caption."""
    tones = params.get("tones") if kind is TaskKind.CAPTION else None
    return n * (len(tones) if isinstance(tones, list) and tones else 1)


@dataclass(frozen=True, slots=True)
class InputImage:
    """An input image handed to a provider (edit, upscale, video)."""

    asset_id: str
    data: bytes
    content_type: str
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Task:
    """What a provider is asked to do: one request, resolved for one model."""

    job_id: str
    kind: TaskKind
    model: str  # the model's name within its provider, e.g. "gpt-image-1"
    prompt: str
    negative_prompt: str | None
    n: int
    width: int
    height: int
    seed: int | None
    params: dict[str, Any]
    inputs: tuple[InputImage, ...] = ()
    mask: InputImage | None = None


@dataclass(frozen=True, slots=True)
class Output:
    """One image (or video) a provider produced: bytes, or a URL to download at once; or,
    for the text kinds, ``text``."""

    data: bytes | None = None
    text: str | None = None
    tone: str | None = None  # a caption's tone, when tones were asked for
    url: str | None = None
    content_type: str | None = None
    seed: int | None = None
    revised_prompt: str | None = None
    cost_usd: float | None = None  # when the provider reports it; else the price table decides
    quality: str | None = None  # the quality tier it was made at, for the price table


@dataclass(slots=True)
class Asset:
    id: str
    owner_id: str
    sha256: str
    content_type: str
    width: int | None
    height: int | None
    byte_size: int
    storage_key: str
    thumbnail_key: str | None
    created_at: datetime
    nsfw_score: float | None = None
    flagged: bool = False


@dataclass(slots=True)
class JobOutput:
    index: int
    asset_id: str
    model: str  # the model that produced it (differs from the job's on a fallback)
    fallback: bool
    cached: bool
    seed: int | None
    width: int | None
    height: int | None
    requested_width: int | None
    requested_height: int | None
    content_type: str
    byte_size: int
    sha256: str
    cost_usd: float
    revised_prompt: str | None = None
    fallback_reason: str | None = None  # why the model asked for did not make it
    text: str | None = None  # what a text kind wrote (also the asset's bytes, UTF-8)
    tone: str | None = None  # a caption's tone, when tones were asked for
    generated_width: int | None = None  # what the model made, before fitting the requested size
    generated_height: int | None = None
    nsfw_score: float | None = None  # the safety check's, when it is on
    flagged: bool = False
    favourite: bool = False  # marked by its owner


def batch_status(counts: dict[str, int], started: bool) -> JobStatus:
    """A batch's status from its items per status: queued while none has started (or
    run before), running until every item ended; then succeeded if all did, else failed
    if any failed, else canceled."""
    if counts[JobStatus.QUEUED.value] or counts[JobStatus.RUNNING.value]:
        return JobStatus.RUNNING if started else JobStatus.QUEUED
    if counts[JobStatus.FAILED.value]:
        return JobStatus.FAILED
    if counts[JobStatus.CANCELED.value]:
        return JobStatus.CANCELED
    return JobStatus.SUCCEEDED


@dataclass(slots=True)
class Batch:
    """Job requests submitted as one; ``jobs`` are its items, in request order."""

    id: str
    owner_id: str
    concurrency: int
    metadata: dict[str, Any]
    progress: float  # 0 to 1, never lower than it was shown
    created_at: datetime
    jobs: list[Job]
    webhook_url: str | None = None  # where each completion is sent (``batch.done``)
    deadline_seconds: float | None = None  # of each item that gives none of its own
    completions: int = 0  # how many times every item had ended (a retry re-opens it)

    @property
    def counts(self) -> dict[str, int]:
        """How many items are in each status (every status named)."""
        counts = dict.fromkeys((s.value for s in JobStatus), 0)
        for job in self.jobs:
            counts[job.status.value] += 1
        return counts

    @property
    def status(self) -> JobStatus:
        started = any(job.status is not JobStatus.QUEUED or job.attempt for job in self.jobs)
        return batch_status(self.counts, started)

    @property
    def finished_at(self) -> datetime | None:
        ends = [job.finished_at for job in self.jobs]
        if self.status.terminal and all(ends):
            return max(end for end in ends if end)
        return None

    def measured_progress(self) -> float:
        """Each item's share: 1 once it ended, else its own progress."""
        if not self.jobs:
            return 1.0
        done = sum(1.0 if job.status.terminal else job.progress for job in self.jobs)
        return done / len(self.jobs)


@dataclass(slots=True)
class JobError:
    code: str
    message: str
    retryable: bool


@dataclass(slots=True)
class Job:
    id: str
    owner_id: str
    status: JobStatus
    kind: TaskKind
    model: str
    request: Request
    group_id: str | None
    progress: float
    progress_message: str | None
    attempt: int
    max_attempts: int
    error: JobError | None
    cached: bool
    cost_usd: float
    provider_ref: str | None
    cache_key: str | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    run_after: datetime
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    outputs: list[JobOutput] = field(default_factory=list)
    deadline_at: datetime | None = None
    request_fingerprint: str | None = None  # of the request as submitted
    batch_id: str | None = None  # the batch it is an item of
    enhanced_prompt: str | None = None  # the prompt rendered, when the request enhanced it
    enhance_cost_usd: float = 0.0  # what enhancing it cost (in ``cost_usd`` once it succeeds)
    trace_parent: str | None = None  # the trace its submit was part of (telemetry/tracing)


def check_event_types(types: list[str]) -> list[str]:
    """``types`` if each is a known event type, named once."""
    unknown = [quoted(t) for t in types if t not in EVENT_TYPES]
    if unknown:
        raise ValueError(
            f"names unknown event types {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}"
        )
    if not types:
        raise ValueError("name at least one event type")
    repeated = next((t for i, t in enumerate(types) if t in types[:i]), None)
    if repeated is not None:
        raise ValueError(f"names {quoted(repeated)} more than once")
    return types


class Submission(BaseModel):
    """The body of ``POST /v1/jobs``: one request, for one model or several side by side."""

    model_config = ConfigDict(extra="forbid")

    kind: TaskKind = Field(
        TaskKind.IMAGE,
        description="What to make: image, edit, upscale or video; or text: caption "
        "(product text and/or images → captions), enhance (prompt → richer prompt) or "
        "describe (image → prompt).",
    )
    model: str | None = Field(
        None, description="Model id, e.g. `placeholder` or `openai/gpt-image-1`."
    )
    models: list[ComparedModel] | None = Field(
        None,
        min_length=1,
        max_length=8,
        description="Several models side by side: one job each, one group. Ids, or "
        "{model, params} where a model takes params of its own (a model may appear again "
        "with other params: gpt-image-1 at low and at high quality).",
    )
    prompt: str = Field("", max_length=MAX_PROMPT_CHARS)
    negative_prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    n: Count = Field(1, description=f"Images per model, 1 to {MAX_N}.")
    size: SizeText | None = None
    aspect_ratio: str | None = Field(
        None,
        description="'W:H', e.g. '16:9' (each term 1 to 999), instead of a size (not with "
        "one): the size of about a megapixel of that shape that the model can make.",
        json_schema_extra={"pattern": RATIO_PATTERN},
    )
    seed: Seed | None = Field(None, description=f"Same seed, same image; 0 to {MAX_SEED}.")
    preset: str | None = Field(None, description="Name or id of one of your presets.")
    params: Params = Field(default_factory=dict)
    input_assets: list[str] = Field(
        default_factory=list, max_length=MAX_INPUTS, description="Asset ids of input images."
    )
    mask: str | None = Field(
        None,
        description="Asset id of an edit mask: white repaints, black keeps (a PNG with "
        "transparency is read as OpenAI's: transparent repaints).",
    )
    cache: CachePolicy = Field(
        CachePolicy.AUTO, description="auto: reuse seeded requests; use; bypass."
    )
    fallback: list[FallbackModel] = Field(
        default_factory=list,
        max_length=5,
        description="Models to try in order if the model fails: ids, or {model, params}. "
        "Their outputs are marked `fallback: true` with the model that made them.",
    )
    deadline_seconds: DeadlineSeconds | None = Field(
        None,
        description="Give up (fail the job) if not done this long after submit, retries "
        "included. Default: the server's `IMAGEMILL_JOB_DEADLINE_SECONDS`.",
    )
    webhook_url: WebhookUrl | None = Field(
        None,
        description="Where to POST this job's events, signed per Standard Webhooks. "
        "Default: your default webhook.",
    )
    webhook_events: list[EventType] | None = Field(
        None,
        min_length=1,
        json_schema_extra={"uniqueItems": True},
        description=f"Which events to send: any of {', '.join(EVENT_TYPES)}. Default: done.",
    )
    metadata: Metadata = Field(default_factory=dict)
    enhance: Enhancement | None = Field(
        None,
        description="Enhance the prompt with a text model first (`kind` image, edit or "
        "video): the job records both prompts, and costs both calls.",
    )

    @field_validator("webhook_events")
    @classmethod
    def _known_events(cls, value: list[str] | None) -> list[str] | None:
        return check_event_types(value) if value is not None else None

    @field_validator("fallback", mode="before")
    @classmethod
    def _fallback_models(cls, value: object) -> object:
        # A model id alone is {model} with no params: one shape, so an error inside an
        # entry is named by its own field (``fallback.0.bogus``), not by a union branch.
        if isinstance(value, list):
            return [{"model": entry} if isinstance(entry, str) else entry for entry in value]
        return value

    @field_validator("models", mode="before")
    @classmethod
    def _compared_models(cls, value: object) -> object:
        if isinstance(value, list):  # an id alone: {model}, as a fallback's
            return [{"model": entry} if isinstance(entry, str) else entry for entry in value]
        return value

    @field_validator("size")
    @classmethod
    def _valid_size(cls, value: str | None) -> str | None:
        return str(Size.parse(value)) if value is not None else None

    @field_validator("aspect_ratio")
    @classmethod
    def _valid_ratio(cls, value: str | None) -> str | None:
        if value is not None:
            Size.from_aspect_ratio(value)
        return value

    @model_validator(mode="after")
    def _one_model_field(self) -> Submission:
        # BoundaryError: its path names the field in the answer (a model's error has none).
        if self.model is not None and self.models is not None:
            raise BoundaryError("give either 'model' or 'models', not both", ("models",))
        if self.model is None and self.models is None and self.preset is None:
            raise BoundaryError(
                "give 'model' (or 'models' for several, or a 'preset' that names one)",
                ("model",),
            )
        return self
