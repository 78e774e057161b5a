"""Prometheus metrics (prometheus-client), served at ``GET /metrics``.

Most are fed by the events this process's own transactions commit (``observe``, called
once per transaction after its commit by the repository): every job's status changes,
outputs and errors are written by exactly one process, so each is counted once across
a deployment, by the process that made it happen (the API process for submits and
cancels, the worker for attempts, outputs and endings). Events other processes send
over the fan-out are not counted here. A few are counted where they happen: provider
calls, refusals by a budget or a rate limit, event-stream subscribers, webhook attempts,
bytes stored.

Each process serves its own counts (Prometheus adds them up). Several processes on one
machine can share one ``/metrics`` through prometheus-client's multiprocess mode: set
``PROMETHEUS_MULTIPROC_DIR`` to an empty directory for all of them.

Names follow Prometheus' conventions: counters end in ``_total``, durations are
``_seconds`` histograms, amounts of money ``_usd``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from imagemill.db.appending import Appending
from imagemill.errors import BudgetExceeded, TooManyRequests

# From a fraction of a second (an in-process render) to the 30-minute job deadline.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800)
TERMINAL = frozenset({"succeeded", "failed", "canceled"})
COUNTED = frozenset({"status", "output", "error"})  # the events metrics are fed by


class Metrics:
    """This process's metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        by_model = ["model", "kind"]
        self.jobs_submitted = Counter(
            "imagemill_jobs_submitted",
            "Jobs recorded (cache hits included), by model and kind.",
            by_model,
            registry=r,
        )
        self.jobs = Counter(
            "imagemill_jobs",
            "Jobs that ended, by model, kind and status (succeeded, failed, canceled).",
            [*by_model, "status"],
            registry=r,
        )
        self.queue_wait = Histogram(
            "imagemill_job_queue_wait_seconds",
            "From a job's submit to its first attempt's start.",
            ["model"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.run_time = Histogram(
            "imagemill_job_run_seconds",
            "From a succeeded job's first attempt's start to its end (retries included).",
            ["model"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.duration = Histogram(
            "imagemill_job_duration_seconds",
            "From a job's submit to its end, by status (end to end; cache hits excluded).",
            ["model", "status"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.attempts = Counter(
            "imagemill_job_attempts",
            "Attempts started (a worker took the job).",
            ["model"],
            registry=r,
        )
        self.provider_calls = Counter(
            "imagemill_provider_calls",
            "Calls of a model (the one asked for, a fallback, a prompt's enhancer), by "
            "outcome: ok, an error code, or interrupted (canceled, timed out).",
            ["model", "outcome"],
            registry=r,
        )
        self.retries = Counter(
            "imagemill_job_retries",
            "Attempts that failed and will be retried, by error code.",
            ["model", "code"],
            registry=r,
        )
        self.errors = Counter(
            "imagemill_provider_errors",
            "Attempts that failed, by the model asked for and the error code.",
            ["model", "code"],
            registry=r,
        )
        self.fallbacks = Counter(
            "imagemill_fallbacks",
            "Outputs made by a fallback instead of the model asked for.",
            ["model", "fallback"],
            registry=r,
        )
        self.cache_hits = Counter(
            "imagemill_cache_hits",
            "Jobs answered from the cache, at no cost.",
            ["model"],
            registry=r,
        )
        self.cache_misses = Counter(
            "imagemill_cache_misses",
            "Jobs recorded that the cache did not answer.",
            ["model"],
            registry=r,
        )
        self.outputs = Counter(
            "imagemill_outputs",
            "Outputs stored (images, videos, texts), by the model that made each.",
            ["model"],
            registry=r,
        )
        self.cost = Counter(
            "imagemill_cost_usd",
            "What succeeded jobs cost, in US dollars, by the model asked for.",
            ["model"],
            registry=r,
        )
        self.budget_rejections = Counter(
            "imagemill_budget_rejections",
            "Requests refused by a budget (402), by its scope (key, owner).",
            ["scope"],
            registry=r,
        )
        self.rate_limit_rejections = Counter(
            "imagemill_rate_limit_rejections",
            "Requests refused by a key's rate limit (429), by policy (requests, images, jobs).",
            ["policy"],
            registry=r,
        )
        self.webhook_attempts = Counter(
            "imagemill_webhook_attempts",
            "Webhook delivery attempts, by outcome (delivered; pending: to be retried; "
            "failed: given up; canceled).",
            ["outcome"],
            registry=r,
        )
        self.storage_written = Counter(
            "imagemill_storage_written_bytes",
            "Bytes of blobs written to storage (outputs, uploads, thumbnails; new ones only).",
            registry=r,
        )
        self.sse_subscribers = Gauge(
            "imagemill_sse_subscribers",
            "Event streams open now.",
            registry=r,
            multiprocess_mode="livesum",
        )

    def observe(self, published: Appending) -> None:
        """Count what one committed transaction of this process recorded."""
        for event in published.events:
            if event["type"] not in COUNTED:
                continue  # progress, previews, logs: not counted
            row = published.rows.get(event["job_id"])
            if row is not None and getattr(row, "model", None) is not None:
                self._event(event["type"], event["data"], row)

    def _event(self, kind: str, data: Mapping[str, Any], row: Any) -> None:
        model, job_kind = row.model, row.kind
        if kind == "status":
            status = data.get("status")
            if data.get("attempt") == 0:  # recorded: queued, or a cache hit born succeeded
                self.jobs_submitted.labels(model, job_kind).inc()
                hit = status == "succeeded"
                (self.cache_hits if hit else self.cache_misses).labels(model).inc()
                if hit:
                    self.jobs.labels(model, job_kind, status).inc()
                return
            if status == "running":
                self.attempts.labels(model).inc()
                # The run's first claim sets ``started_at`` (later ones keep it, and a
                # retry by the owner clears it): the wait is timed once a run.
                if row.started_at is not None and row.started_at == row.updated_at:
                    self.queue_wait.labels(model).observe(_seconds(row.created_at, row.started_at))
            elif status in TERMINAL:
                self.jobs.labels(model, job_kind, status).inc()
                if row.finished_at is not None:
                    end_to_end = _seconds(row.created_at, row.finished_at)
                    self.duration.labels(model, status).observe(end_to_end)
                if status == "succeeded":
                    self.cost.labels(model).inc(row.cost_usd or 0.0)
                    if row.started_at is not None and row.finished_at is not None:
                        self.run_time.labels(model).observe(
                            _seconds(row.started_at, row.finished_at)
                        )
        elif kind == "output" and not row.cached:
            made_by = data.get("model") or model
            self.outputs.labels(made_by).inc()
            if data.get("fallback"):
                self.fallbacks.labels(model, made_by).inc()
        elif kind == "error":
            code = str(data.get("code", "error"))
            self.errors.labels(model, code).inc()
            if data.get("will_retry"):
                self.retries.labels(model, code).inc()

    def refused(self, exc: Exception) -> None:
        """Count a request refused by a budget or a rate limit (any other: nothing)."""
        if isinstance(exc, BudgetExceeded):
            self.budget_rejections.labels(exc.budget.get("scope", "key")).inc()
        elif isinstance(exc, TooManyRequests):
            self.rate_limit_rejections.labels(exc.policy).inc()

    def exposition(self) -> tuple[bytes, str]:
        """The text Prometheus scrapes, and its content type: this process's metrics, or
        every process's in multiprocess mode."""
        return generate_latest(self._exposed()), CONTENT_TYPE_LATEST

    def serve(self, host: str, port: int) -> None:
        """Serve ``/metrics`` on a port of its own (a worker, which has no HTTP API), from
        a thread of prometheus-client's."""
        start_http_server(port, addr=host, registry=self._exposed())

    def close(self) -> None:
        """This process is stopping: in multiprocess mode its live gauges (open event
        streams) stop counting in the machine's totals."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    def _exposed(self) -> CollectorRegistry:
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            return self.registry
        every_process = CollectorRegistry()
        MultiProcessCollector(every_process)  # type: ignore[no-untyped-call]
        return every_process


def _seconds(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())
