"""Wire schemas: what the API sends and accepts, separate from tables and domain models."""

from __future__ import annotations

import functools
import re
from datetime import UTC, date, datetime, time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator
from pydantic.config import JsonDict

from imagemill.api.deps import Links
from imagemill.api.spend_schemas import BudgetOut
from imagemill.db.accounts import PRESET_ID_PREFIX, Preset
from imagemill.domain import (
    DEFAULT_WEBHOOK_EVENTS,
    EVENT_TYPES,
    EventType,
    Job,
    JobOutput,
    JobStatus,
    Request,
    Size,
    TaskKind,
    check_event_types,
)
from imagemill.fields import (
    Params,
    SizeText,
    WebhookUrl,
)
from imagemill.storage.assets import THUMBNAILED

# Times in query strings: an RFC 3339 date, or date and time with its zone (what JSON
# Schema's `date` and `date-time` formats mean), nothing looser (a bare number is not a time).
_RFC3339_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_RFC3339_MOMENT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def _rfc3339(value: object, *, times: bool) -> date | datetime:
    """A date, or (``times``) a date and time with its zone, in UTC; a date as a time is
    its start, in UTC."""
    text = value if isinstance(value, str) else ""
    if _RFC3339_DATE.fullmatch(text):
        try:
            day = date.fromisoformat(text)
        except ValueError as exc:
            raise ValueError("is not a date that exists") from exc
        return datetime.combine(day, time(), UTC) if times else day
    if times and _RFC3339_MOMENT.fullmatch(text):
        if text[17:19] == "60":
            raise ValueError("is a leap second (:60), which cannot be stored; give :59")
        try:
            moment = datetime.fromisoformat(text.upper())
        except ValueError as exc:
            raise ValueError("is not a time that exists (check the hour and the zone)") from exc
        try:
            return moment.astimezone(UTC)
        except OverflowError as exc:
            raise ValueError("is outside the years 1 to 9999 once in UTC") from exc
    wanted = "a date (2026-01-31) or a time with its zone (2026-01-31T12:00:00Z)"
    raise ValueError(f"must be {wanted if times else 'a date, e.g. 2026-01-31'}")


Moment = Annotated[
    datetime,
    BeforeValidator(functools.partial(_rfc3339, times=True)),
    WithJsonSchema(
        {"anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}]}
    ),
]
Day = Annotated[
    date,
    BeforeValidator(functools.partial(_rfc3339, times=False)),
    WithJsonSchema({"type": "string", "format": "date"}),
]


class ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorOut(BaseModel):
    error: ErrorBody


class OutputOut(BaseModel):
    index: int
    asset_id: str
    url: str
    thumbnail_url: str | None = Field(
        description="A WebP thumbnail; null for what has none (a video, a text)."
    )
    content_type: str
    width: int | None
    height: int | None
    requested_width: int | None
    requested_height: int | None
    generated_width: int | None = Field(
        None, description="What the model made, before it was fitted to the requested size."
    )
    generated_height: int | None = None
    byte_size: int
    sha256: str
    seed: int | None
    model: str = Field(
        description="The model that made it (differs from the job's after a fallback)."
    )
    fallback: bool
    fallback_reason: str | None = Field(
        None,
        description="Why a fallback made it: how the model asked for failed, or why it was "
        "unavailable (no credentials).",
    )
    cached: bool
    cost_usd: float
    revised_prompt: str | None = None
    text: str | None = Field(
        None,
        description="What a text kind wrote (caption, enhanced prompt, description); the "
        "asset holds the same text as UTF-8.",
    )
    tone: str | None = Field(None, description="A caption's tone, when tones were asked for.")
    nsfw_score: float | None = Field(
        None, description="The safety check's score, 0 to 1 (IMAGEMILL_SAFETY_THRESHOLD)."
    )
    flagged: bool = Field(False, description="The score reached the threshold; thumbnail blurred.")
    favourite: bool = Field(
        False, description="Marked a favourite by its owner (PUT …/outputs/{index}/favourite)."
    )

    @classmethod
    def of(cls, output: JobOutput, links: Links) -> OutputOut:
        return cls(
            url=links.asset(output.asset_id),
            thumbnail_url=links.thumbnail(output.asset_id)
            if output.content_type in THUMBNAILED
            else None,
            **{k: getattr(output, k) for k in JobOutput.__dataclass_fields__},
        )


class JobErrorOut(BaseModel):
    code: str
    message: str
    retryable: bool


class Timings(BaseModel):
    queued_seconds: float | None = Field(description="From submit to the first start.")
    running_seconds: float | None = Field(description="From the first start to the end.")
    total_seconds: float | None


class JobOut(BaseModel):
    object: Literal["job"] = "job"
    id: str
    status: JobStatus
    kind: TaskKind
    model: str
    group_id: str | None
    request: Request
    progress: float
    progress_message: str | None
    batch_id: str | None = Field(None, description="The batch it is an item of.")
    queue_position: int | None = Field(
        None,
        description="While queued: where the job waits in line for a worker or its "
        "provider (1: next). Null when it is not queued, or when workers run in another "
        "process (distributed mode), where the line is not known here.",
    )
    attempt: int
    max_attempts: int
    error: JobErrorOut | None
    cached: bool
    cost_usd: float
    enhanced_prompt: str | None = Field(
        None,
        description="The prompt rendered, when the request asked to `enhance` it (the "
        "original stays in `request.prompt`).",
    )
    outputs: list[OutputOut]
    metadata: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    deadline_at: datetime | None = Field(
        None, description="Not finished by then, it fails (retries included)."
    )
    timings: Timings

    @classmethod
    def of(cls, job: Job, links: Links, queue_position: int | None = None) -> JobOut:
        def seconds(start: datetime | None, end: datetime | None) -> float | None:
            return round((end - start).total_seconds(), 3) if start and end else None

        return cls(
            id=job.id,
            status=job.status,
            kind=job.kind,
            model=job.model,
            group_id=job.group_id,
            request=job.request,
            progress=job.progress,
            progress_message=job.progress_message,
            batch_id=job.batch_id,
            queue_position=queue_position if job.status is JobStatus.QUEUED else None,
            attempt=job.attempt,
            max_attempts=job.max_attempts,
            error=JobErrorOut(
                code=job.error.code, message=job.error.message, retryable=job.error.retryable
            )
            if job.error
            else None,
            cached=job.cached,
            cost_usd=job.cost_usd,
            enhanced_prompt=job.enhanced_prompt,
            outputs=[OutputOut.of(o, links) for o in job.outputs],
            metadata=job.request.metadata,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            deadline_at=job.deadline_at,
            timings=Timings(
                queued_seconds=seconds(job.created_at, job.started_at),
                running_seconds=seconds(job.started_at, job.finished_at),
                total_seconds=seconds(job.created_at, job.finished_at),
            ),
        )


class GroupOut(BaseModel):
    object: Literal["group"] = "group"
    group_id: str
    jobs: list[JobOut]


class JobPage(BaseModel):
    data: list[JobOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page.")


# A preset's name: letters, digits, spaces and ``_.-``, and never what its id looks like
# (``pre_…``), so a name or an id given in its place always means one preset.
PRESET_NAME = r"^[A-Za-z0-9](?:[A-Za-z0-9_.\- ]*[A-Za-z0-9_.\-])?$"  # no space at the end
NOT_AN_ID: JsonDict = {"not": {"pattern": f"^{PRESET_ID_PREFIX}"}}


def _not_an_id(value: str | None) -> str | None:
    if value is not None and value.startswith(PRESET_ID_PREFIX):
        raise ValueError(f"must not start with {PRESET_ID_PREFIX!r}, as preset ids do")
    return value


class PresetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1, max_length=100, pattern=PRESET_NAME, json_schema_extra=NOT_AN_ID
    )
    description: str = Field("", max_length=2000)
    model: str | None = None
    prompt_template: str = Field(
        "{prompt}", max_length=32_000, description="'{prompt}' is replaced by the request's prompt."
    )
    negative_prompt: str | None = Field(None, max_length=32_000)
    size: SizeText | None = None
    params: Params = Field(default_factory=dict)

    @field_validator("size")
    @classmethod
    def _valid_size(cls, value: str | None) -> str | None:
        return str(Size.parse(value)) if value is not None else None

    _name = field_validator("name")(_not_an_id)


class PresetPatch(PresetIn):
    name: str | None = Field(  # type: ignore[assignment]
        None, min_length=1, max_length=100, pattern=PRESET_NAME, json_schema_extra=NOT_AN_ID
    )
    description: str | None = Field(None, max_length=2000)  # type: ignore[assignment]
    prompt_template: str | None = Field(None, max_length=32_000)  # type: ignore[assignment]
    params: Params | None = None  # type: ignore[assignment]

    @field_validator("name", "description", "prompt_template", "params")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:  # runs only for fields the body gives: leaving one out is fine
            raise ValueError("cannot be null; leave the field out to keep it")
        return value


class PresetCopyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        pattern=PRESET_NAME,
        json_schema_extra=NOT_AN_ID,
        description="The copy's name (default: the original's).",
    )

    _name = field_validator("name")(_not_an_id)


class PresetOut(BaseModel):
    object: Literal["preset"] = "preset"
    id: str
    builtin: bool = Field(
        description="One of the server's built-in styles: read-only, for any model (copy it "
        "to change it)."
    )
    name: str
    description: str
    model: str | None
    prompt_template: str
    negative_prompt: str | None
    size: str | None
    params: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, preset: Preset) -> PresetOut:
        fields = {k: getattr(preset, k) for k in cls.model_fields if k != "object"}
        return cls(**fields)


class OpenAIImage(BaseModel):
    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None


class OpenAIImagesResponse(BaseModel):
    created: int
    data: list[OpenAIImage]


class AssetOut(BaseModel):
    object: Literal["asset"] = "asset"
    id: str
    url: str
    thumbnail_url: str
    content_type: str
    width: int | None
    height: int | None
    byte_size: int
    sha256: str
    created_at: datetime
    nsfw_score: float | None = None
    flagged: bool = False


class UsageDay(BaseModel):
    day: str = Field(description="UTC date, YYYY-MM-DD.")
    model: str = Field(description="The model that made the images (a fallback counts as itself).")
    images: int
    cached: int = Field(description="Of which cache hits (they cost nothing).")
    cost_usd: float


class UsageOut(BaseModel):
    object: Literal["usage"] = "usage"
    since: date | None
    until: date | None
    total_cost_usd: float
    total_images: int
    data: list[UsageDay]
    budgets: list[BudgetOut] = Field(
        description="The caller's budgets (its key's, its owner's) in their current periods: "
        "limit, spent, reserved (held by unfinished jobs) and remaining."
    )


class WebhookEndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: WebhookUrl = Field(description="Where your jobs' events go by default.")
    events: list[EventType] = Field(
        default_factory=lambda: list(DEFAULT_WEBHOOK_EVENTS),
        min_length=1,
        json_schema_extra={"uniqueItems": True},
        description=f"Which events: any of {', '.join(EVENT_TYPES)}.",
    )

    @field_validator("events")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        return check_event_types(value)


class WebhookEndpointOut(BaseModel):
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    url: str
    events: list[str]
    disabled_at: datetime | None = Field(
        description="Set when the target answered 410 Gone; PUT it again to re-enable."
    )
    updated_at: datetime


class WebhookSecretOut(BaseModel):
    key: str = Field(description="The signing secret (Standard Webhooks), `whsec_…`.")


class DeliveryAttemptOut(BaseModel):
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


class DeliveryOut(BaseModel):
    object: Literal["delivery"] = "delivery"
    id: str = Field(description="Also the `webhook-id` header, the same on every attempt.")
    event_type: str
    event_id: int | None = Field(
        None, description="The job's event it carries; null for a batch's completion."
    )
    round: int | None = Field(
        None, description="A batch's completion: which one (its `completions` then)."
    )
    url: str
    status: str = Field(description="pending, delivered, failed or canceled (410 Gone).")
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None
    attempts: list[DeliveryAttemptOut]


class DeliveryList(BaseModel):
    object: Literal["list"] = "list"
    data: list[DeliveryOut]
