"""Mapping between table rows and domain objects, for the repository's queries."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy import Connection, Row, bindparam, select

from imagemill.db.prepared import Prepared
from imagemill.db.tables import assets, outputs
from imagemill.domain import Job, JobError, JobOutput, JobStatus, Request, TaskKind
from imagemill.errors import ImagemillError

log = logging.getLogger(__name__)

_OUTPUTS_OF_JOBS = Prepared(
    select(
        outputs,
        assets.c.width,
        assets.c.height,
        assets.c.content_type,
        assets.c.byte_size,
        assets.c.sha256,
        assets.c.nsfw_score,
        assets.c.flagged,
    )
    .join(assets, assets.c.id == outputs.c.asset_id)
    .where(outputs.c.job_id.in_(bindparam("job_ids", expanding=True)))
    .order_by(outputs.c.job_id, outputs.c.index)
)

if TYPE_CHECKING:
    from imagemill.db.records import StoredOutput


def load_outputs(conn: Connection, job_ids: list[str]) -> dict[str, list[JobOutput]]:
    """The outputs of each job, in index order, with their assets' facts."""
    if not job_ids:
        return {}
    by_job: dict[str, list[JobOutput]] = {}
    for r in _OUTPUTS_OF_JOBS.rows(conn, {"job_ids": job_ids}):
        by_job.setdefault(r.job_id, []).append(
            JobOutput(
                index=r._mapping["index"],
                asset_id=r.asset_id,
                model=r.model,
                fallback=r.fallback,
                fallback_reason=r.fallback_reason,
                cached=r.cached,
                seed=r.seed,
                width=r.width,
                height=r.height,
                requested_width=r.requested_width,
                requested_height=r.requested_height,
                generated_width=r.generated_width,
                generated_height=r.generated_height,
                content_type=r.content_type,
                byte_size=r.byte_size,
                sha256=r.sha256,
                cost_usd=r.cost_usd,
                revised_prompt=r.revised_prompt,
                text=r.text,
                tone=r.tone,
                nsfw_score=r.nsfw_score,
                flagged=r.flagged,
                favourite=r.favourite,
            )
        )
    return by_job


def job_from_row(row: Row[Any], job_outputs: list[JobOutput]) -> Job:
    error = None
    if row.error_code and row.status != JobStatus.SUCCEEDED.value:
        error = JobError(row.error_code, row.error_message or "", bool(row.error_retryable))
    return Job(
        id=row.id,
        owner_id=row.owner_id,
        status=JobStatus(row.status),
        kind=TaskKind(row.kind),
        model=row.model,
        request=_request(row),
        group_id=row.group_id,
        progress=row.progress,
        progress_message=row.progress_message,
        attempt=row.attempt,
        max_attempts=row.max_attempts,
        error=error,
        cached=row.cached,
        cost_usd=row.cost_usd,
        provider_ref=row.provider_ref,
        cache_key=row.cache_key,
        lease_owner=row.lease_owner,
        lease_expires_at=row.lease_expires_at,
        run_after=row.run_after,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        outputs=job_outputs,
        deadline_at=row.deadline_at,
        request_fingerprint=row.request_fingerprint,
        batch_id=row.batch_id,
        enhanced_prompt=row.enhanced_prompt,
        enhance_cost_usd=row.enhance_cost_usd or 0.0,
        trace_parent=row.trace_parent,
    )


def _request(row: Row[Any]) -> Request:
    """The job's request as stored. One the current rules would refuse (stored by an
    older version) is shown as it is, never breaking the pages that list it."""
    try:
        return Request.model_validate(row.request)
    except ValidationError:
        log.warning("job %s: its stored request no longer validates; shown as stored", row.id)
        return Request.model_construct(**row.request)


def stored_job_output(index: int, asset_id: str, o: StoredOutput) -> JobOutput:
    """The output a completion just recorded, without reading it back."""
    return JobOutput(
        index=index,
        asset_id=asset_id,
        model=o.model,
        fallback=o.fallback,
        fallback_reason=o.fallback_reason,
        cached=False,
        seed=o.seed,
        width=o.width,
        height=o.height,
        requested_width=o.requested_width,
        requested_height=o.requested_height,
        generated_width=o.generated_width,
        generated_height=o.generated_height,
        content_type=o.content_type,
        byte_size=o.byte_size,
        sha256=o.sha256,
        cost_usd=o.cost_usd,
        revised_prompt=o.revised_prompt,
        text=o.text,
        tone=o.tone,
    )


def metadata_text(value: Any) -> str:
    """A metadata value as a filter compares it: a string as itself, anything else as
    compact JSON (``42``, ``true``, ``null``), so ``?metadata.page=42`` finds 42 and "42"."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def metadata_entry(key: str, text: str) -> str:
    """The digest a ``job_metadata`` row holds for one key and value text."""
    # surrogatepass: a row stored before the boundary checks may hold a lone surrogate.
    digest = json.dumps([key, text], ensure_ascii=False).encode("utf-8", "surrogatepass")
    return hashlib.sha256(digest).hexdigest()


def metadata_rows(job_id: str, owner_id: str, values: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``job_metadata`` rows of a job's metadata: one per top-level key."""
    return [
        {"job_id": job_id, "owner_id": owner_id, "entry": metadata_entry(k, metadata_text(v))}
        for k, v in values.items()
    ]


def error_values(error: ImagemillError) -> dict[str, Any]:
    return {
        "error_code": error.code,
        "error_message": error.message,
        "error_retryable": error.retryable,
    }


def output_row(
    job_id: str, index: int, asset_id: str, o: StoredOutput | JobOutput, now: datetime
) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "index": index,
        "asset_id": asset_id,
        "model": o.model,
        "fallback": o.fallback,
        "fallback_reason": o.fallback_reason,
        "cached": o.cached if isinstance(o, JobOutput) else False,
        "seed": o.seed,
        "requested_width": o.requested_width,
        "requested_height": o.requested_height,
        "generated_width": o.generated_width,
        "generated_height": o.generated_height,
        "cost_usd": o.cost_usd,
        "revised_prompt": o.revised_prompt,
        "text": o.text,
        "tone": o.tone,
        "created_at": now,
    }


def output_event(index: int, asset_id: str, o: StoredOutput | JobOutput) -> dict[str, Any]:
    return {
        "index": index,
        "asset_id": asset_id,
        "model": o.model,
        "fallback": o.fallback,
        "fallback_reason": o.fallback_reason,
        "width": o.width,
        "height": o.height,
        "content_type": o.content_type,
        **({"text": o.text, "tone": o.tone} if o.text is not None else {}),
    }
