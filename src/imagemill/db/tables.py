"""The tables. Wire schemas and domain models are separate; the repository maps between them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive, in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


def _id(name: str = "id") -> Column[Any]:
    return Column(name, String(40), primary_key=True)


owners = Table(
    "owners",
    metadata,
    _id(),
    Column("name", String(200), nullable=False, unique=True),
    Column("secret", String(100), nullable=False),  # signs asset links and webhooks
    Column("created_at", UTCDateTime, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    _id(),
    Column("owner_id", String(40), ForeignKey("owners.id"), nullable=False, index=True),
    Column("name", String(200), nullable=False, default=""),
    Column("prefix", String(20), nullable=False),  # shown to people to tell keys apart
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
    # May manage every owner's budgets (``/v1/admin``); ``imagemill keys create --admin``.
    Column("admin", Boolean, nullable=False, default=False, server_default=false()),
    # Rate limits (``spend/limits.py``); none: unlimited.
    Column("requests_per_minute", Integer),
    Column("images_per_minute", Integer),
    Column("concurrent_jobs", Integer),  # queued or running at once
)

jobs = Table(
    "jobs",
    metadata,
    _id(),
    Column("owner_id", String(40), ForeignKey("owners.id"), nullable=False),
    Column("key_id", String(40)),  # the API key it was submitted with (none: keyless)
    Column("trace_parent", String(64)),  # W3C traceparent of its submit (telemetry/tracing)
    Column("group_id", String(40)),
    Column("batch_id", String(40)),  # the batch it is an item of (``batches``)
    Column("kind", String(20), nullable=False),
    Column("model", String(200), nullable=False),
    Column("status", String(20), nullable=False),
    Column("request", JSON, nullable=False),
    Column("prompt", Text, nullable=False, default=""),  # denormalised for history search
    Column("progress", Float, nullable=False, default=0.0),
    Column("progress_message", String(500)),
    Column("attempt", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False),
    Column("lease_owner", String(200)),
    Column("lease_expires_at", UTCDateTime),
    Column("run_after", UTCDateTime, nullable=False),
    Column("deadline_at", UTCDateTime),  # not finished by then: failed, retries included
    Column("webhook_url", String(2000)),  # where its events go (the request's, or the default)
    Column("webhook_events", JSON),
    Column("provider_ref", String(500)),
    Column("error_code", String(100)),
    Column("error_message", Text),
    Column("error_retryable", Boolean),
    Column("cache_key", String(64)),
    Column("cached", Boolean, nullable=False, default=False),
    Column("cost_usd", Float, nullable=False, default=0.0),
    Column("enhanced_prompt", Text),  # the prompt rendered, when the request enhanced it
    Column("enhance_model", String(200)),  # the model that enhanced it (its usage line)
    Column("enhance_cost_usd", Float, nullable=False, default=0.0, server_default="0"),
    # What it holds against budgets until it ends: {"micros": N, "budgets": [[scope,
    # period start], ...]} (``db/budgets.py``); none when no budget applied.
    Column("reservation", JSON(none_as_null=True)),
    Column("idempotency_key", String(300)),
    # sha256 of the request as submitted: an Idempotency-Key reused with another body is
    # refused, and a retried OpenAI-compatible call finds the job its first try made.
    Column("request_fingerprint", String(64)),
    Column("event_seq", Integer, nullable=False, default=0),
    Column("created_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("owner_id", "idempotency_key"),
    Index("ix_jobs_owner_id_id", "owner_id", "id"),
    Index("ix_jobs_status_run_after", "status", "run_after"),
    Index("ix_jobs_group_id", "group_id"),
    Index("ix_jobs_batch_id", "batch_id"),
    Index("ix_jobs_key_id_status", "key_id", "status"),  # a key's jobs in flight
    Index("ix_jobs_owner_id_request_fingerprint", "owner_id", "request_fingerprint"),
)

assets = Table(
    "assets",
    metadata,
    _id(),
    Column("owner_id", String(40), ForeignKey("owners.id"), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("content_type", String(100), nullable=False),
    Column("width", Integer),
    Column("height", Integer),
    Column("byte_size", Integer, nullable=False),
    Column("storage_key", String(300), nullable=False),
    Column("thumbnail_key", String(300)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("nsfw_score", Float),  # the safety check's, when it is on
    Column("flagged", Boolean, nullable=False, default=False, server_default=false()),
    UniqueConstraint("owner_id", "sha256"),
)

outputs = Table(
    "outputs",
    metadata,
    Column("job_id", String(40), ForeignKey("jobs.id"), primary_key=True),
    Column("index", Integer, primary_key=True),
    Column("asset_id", String(40), ForeignKey("assets.id"), nullable=False, index=True),
    Column("model", String(200), nullable=False),
    Column("fallback", Boolean, nullable=False, default=False),
    Column("fallback_reason", Text),  # why the model asked for did not make it
    Column("cached", Boolean, nullable=False, default=False),
    Column("seed", BigInteger),  # up to 2**32 - 1: past a 32-bit integer
    Column("requested_width", Integer),
    Column("requested_height", Integer),
    Column("generated_width", Integer),  # what the model made, before fitting the request
    Column("generated_height", Integer),
    Column("cost_usd", Float, nullable=False, default=0.0),
    Column("revised_prompt", Text),
    Column("text", Text),  # what a text kind wrote
    Column("tone", String(40)),  # a caption's tone
    Column("created_at", UTCDateTime, nullable=False),
    Column("favourite", Boolean, nullable=False, default=False),  # marked by its owner
)

events = Table(
    "events",
    metadata,
    # The position in the log of every job: what a stream of all an owner's jobs resumes from.
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("job_id", String(40), ForeignKey("jobs.id"), nullable=False),
    Column("seq", Integer, nullable=False),  # the position in its job's log
    Column("owner_id", String(40), nullable=False),
    Column("type", String(20), nullable=False),
    Column("data", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("job_id", "seq"),
    Index("ix_events_owner_id_id", "owner_id", "id"),
    sqlite_autoincrement=True,  # ids never reused, so a resume point stays meaningful
)

presets = Table(
    "presets",
    metadata,
    _id(),
    Column("owner_id", String(40), ForeignKey("owners.id"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("model", String(200)),
    Column("prompt_template", Text, nullable=False, default="{prompt}"),
    Column("negative_prompt", Text),
    Column("size", String(20)),
    Column("params", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("owner_id", "name"),
)

# A set of job requests submitted as one: its items are ordinary jobs (``jobs.batch_id``);
# at most ``concurrency`` of them run at once, anywhere.
batches = Table(
    "batches",
    metadata,
    _id(),
    Column("owner_id", String(40), ForeignKey("owners.id"), nullable=False),
    Column("concurrency", Integer, nullable=False),
    Column("total", Integer, nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("progress", Float, nullable=False, default=0.0),  # the highest shown: never back
    Column("created_at", UTCDateTime, nullable=False),
    Column("webhook_url", String(2000)),  # where its completions are sent (``batch.done``)
    Column("deadline_seconds", Float),  # of each item that gives none of its own
    # How many times every item had ended: a retry re-opens the batch for one more. Counted
    # under a lock on this row, in the transaction that ended the last item
    # (``db/batch_completion.py``).
    Column("completions", Integer, nullable=False, default=0, server_default="0"),
    Index("ix_batches_owner_id_id", "owner_id", "id"),
)

# A job's top-level metadata, one row per key, for ``GET /v1/jobs?metadata.KEY=VALUE``:
# ``entry`` is a digest of the key and the value's text (``rows.metadata_entry``), so the
# index stays small whatever the values hold.
job_metadata = Table(
    "job_metadata",
    metadata,
    Column("job_id", String(40), ForeignKey("jobs.id"), primary_key=True),
    Column("entry", String(64), primary_key=True),
    Column("owner_id", String(40), nullable=False),
    Index("ix_job_metadata_owner_id_entry", "owner_id", "entry"),
)

cache_entries = Table(
    "cache_entries",
    metadata,
    Column("owner_id", String(40), ForeignKey("owners.id"), primary_key=True),
    Column("cache_key", String(64), primary_key=True),
    Column("job_id", String(40), ForeignKey("jobs.id"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# -- outgoing webhooks ------------------------------------------------------------------------

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    # An owner's default target, for jobs that name none of their own.
    Column("owner_id", String(40), ForeignKey("owners.id"), primary_key=True),
    Column("url", String(2000), nullable=False),
    Column("events", JSON, nullable=False),
    Column("disabled_at", UTCDateTime),  # the target answered 410 Gone
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# What a delivery carries: a job's logged event (``job_id``, ``event_id``), or a batch's
# completion (``batch_id``, ``batch_round``: its ``completions`` then, unique, so no round
# is ever sent twice; ``payload``: the batch's status and counts as it completed).
DELIVERY_SUBJECT = (
    "(job_id IS NOT NULL AND event_id IS NOT NULL AND batch_id IS NULL AND batch_round IS NULL)"
    " OR (job_id IS NULL AND event_id IS NULL AND batch_id IS NOT NULL"
    " AND batch_round IS NOT NULL)"
)
deliveries = Table(
    "deliveries",
    metadata,
    _id(),  # also the webhook-id header: the same on every attempt
    Column("owner_id", String(40), ForeignKey("owners.id"), nullable=False),
    Column("job_id", String(40), ForeignKey("jobs.id")),
    Column("event_id", BigInteger().with_variant(Integer, "sqlite")),
    Column("batch_id", String(40), ForeignKey("batches.id")),
    Column("batch_round", Integer),
    Column("payload", JSON),
    Column("event_type", String(20), nullable=False),
    Column("url", String(2000), nullable=False),
    Column("status", String(20), nullable=False),  # pending, delivered, failed, canceled
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("lease_expires_at", UTCDateTime),  # a sender is on it until then
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Index("ix_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    Index("ix_deliveries_job_id", "job_id"),
    UniqueConstraint("batch_id", "batch_round"),
    CheckConstraint(DELIVERY_SUBJECT, name="ck_deliveries_one_subject"),
)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("delivery_id", String(40), ForeignKey("deliveries.id"), primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("at", UTCDateTime, nullable=False),
    Column("status_code", Integer),  # none when no answer came
    Column("error", Text),
    Column("duration_ms", Integer, nullable=False),
)

provider_slots = Table(
    "provider_slots",
    metadata,
    # One row per slot of a provider's concurrency limit, leased like a job.
    Column("provider", String(100), primary_key=True),
    Column("slot", Integer, primary_key=True),
    Column("holder", String(200)),
    Column("expires_at", UTCDateTime),
)

# -- spend ------------------------------------------------------------------------------------

# A spending limit in USD millionths per UTC period (``spend/budgets.py``): of one API key
# (``scope`` is the key's id) or of an owner, all its keys and keyless calls together (the
# owner's id).
budgets = Table(
    "budgets",
    metadata,
    Column("scope", String(40), primary_key=True),
    Column("owner_id", String(40), ForeignKey("owners.id"), nullable=False, index=True),
    Column("limit_micros", BigInteger, nullable=False),
    Column("period", String(10), nullable=False),  # day, week, month, total
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# What a budget's scope spent and holds in one period (``period_start``, UTC). Reserving is
# one conditional ``UPDATE`` of this row, so concurrent submits, in any process, cannot
# together pass the limit.
budget_spend = Table(
    "budget_spend",
    metadata,
    Column("scope", String(40), primary_key=True),
    Column("period_start", UTCDateTime, primary_key=True),
    Column("spent_micros", BigInteger, nullable=False, default=0),
    Column("reserved_micros", BigInteger, nullable=False, default=0),
)

# What each finished job is about, as a sentence embedding (``search.py``): float32
# vectors of unit length, ``model``'s.
job_embeddings = Table(
    "job_embeddings",
    metadata,
    Column("job_id", String(40), ForeignKey("jobs.id"), primary_key=True),
    Column("owner_id", String(40), nullable=False, index=True),
    Column("model", String(100), nullable=False),
    Column("vector", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# An owner's boards of chosen outputs ("collections"): an output may be filed in several;
# deleting a collection leaves its images, deleting a job takes it out of every one.
collections = Table(
    "collections",
    metadata,
    _id(),
    Column("owner_id", String(40), ForeignKey("owners.id"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("owner_id", "name"),
)

collection_items = Table(
    "collection_items",
    metadata,
    Column("collection_id", String(40), ForeignKey("collections.id"), primary_key=True),
    Column("job_id", String(40), ForeignKey("jobs.id"), primary_key=True, index=True),
    Column("output_index", Integer, primary_key=True),
    Column("added_at", UTCDateTime, nullable=False),
)
