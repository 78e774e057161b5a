"""Log lines of what jobs do: one per status change (fed by the events each process's
own transactions commit, as the metrics are) and one per provider call. Their facts
ride on the record (``extra``) for the JSON format (``IMAGEMILL_LOG_FORMAT=json``), and
are written into the message for people reading the console.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from imagemill.db.appending import Appending
from imagemill.errors import ProviderError
from imagemill.telemetry.tracing import span

jobs_log = logging.getLogger("imagemill.jobs")
calls_log = logging.getLogger("imagemill.providers.calls")


def log_transitions(published: Appending) -> None:
    """One line per status change one committed transaction of this process made."""
    if not jobs_log.isEnabledFor(logging.INFO):
        return
    for event in published.events:
        if event["type"] != "status":
            continue
        row = published.rows.get(event["job_id"])
        if row is None or getattr(row, "model", None) is None:
            continue
        status = event["data"].get("status")
        facts: dict[str, Any] = {
            "job_id": row.id,
            "owner_id": row.owner_id,
            "model": row.model,
            "kind": row.kind,
            "status": status,
            "attempt": row.attempt,
        }
        if status == "succeeded":
            facts["cost_usd"] = row.cost_usd
        if row.error_code and status in ("queued", "failed"):
            facts["error_code"] = row.error_code
        if status in ("succeeded", "failed", "canceled") and row.finished_at is not None:
            facts["duration_ms"] = round((row.finished_at - row.created_at).total_seconds() * 1000)
        shown = " ".join(f"{k}={v}" for k, v in facts.items() if k not in ("job_id", "status"))
        jobs_log.info("job %s %s (%s)", row.id, status, shown, extra=facts)


@contextlib.contextmanager
def provider_call(
    job_id: str,
    owner_id: str,
    model: str,
    attempt: int,
    on_outcome: Callable[[str, str], object] | None = None,
) -> Iterator[None]:
    """Log the call made within: its model, attempt, duration and outcome (the error's
    code when it failed; ``interrupted``: canceled or timed out), and tell ``on_outcome``
    the model and the outcome (the metrics)."""
    started = time.monotonic()
    facts: dict[str, Any] = {
        "job_id": job_id,
        "owner_id": owner_id,
        "model": model,
        "attempt": attempt,
    }
    try:
        with span("provider.call", {f"imagemill.{k}": v for k, v in facts.items()}):
            yield
    except ProviderError as exc:
        facts.update(outcome="error", error_code=exc.code, duration_ms=_since(started))
        if on_outcome is not None:
            on_outcome(model, exc.code)
        calls_log.info(
            "call of %s for %s failed: %s after %d ms",
            model,
            job_id,
            exc.code,
            facts["duration_ms"],
            extra=facts,
        )
        raise
    except BaseException:
        facts.update(outcome="interrupted", duration_ms=_since(started))
        if on_outcome is not None:
            on_outcome(model, "interrupted")
        calls_log.info("call of %s for %s interrupted", model, job_id, extra=facts)
        raise
    facts.update(outcome="ok", duration_ms=_since(started))
    if on_outcome is not None:
        on_outcome(model, "ok")
    calls_log.info(
        "call of %s for %s: ok in %d ms", model, job_id, facts["duration_ms"], extra=facts
    )


def _since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
