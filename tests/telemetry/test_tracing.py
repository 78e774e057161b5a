"""Tracing (``telemetry/tracing.py``): a trace per job, from the request that submitted it
(continuing its caller's trace), across the queue, to each attempt and provider call, in
the API's process and in a worker's."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

from imagemill.config import Settings
from imagemill.runtime import Runtime

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"  # the W3C example's traceparent


class Recorder(SpanProcessor):
    """Keeps the spans that end while a test records."""

    def __init__(self) -> None:
        self.recording = False
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        if self.recording:
            self.spans.append(span)


_RECORDER = Recorder()


@pytest.fixture
def spans() -> Iterator[list[ReadableSpan]]:
    """The spans ended during the test. OpenTelemetry's provider is set once for the
    process; outside these tests nothing is kept."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(_RECORDER)
        trace.set_tracer_provider(provider)
    _RECORDER.spans.clear()
    _RECORDER.recording = True
    yield _RECORDER.spans
    _RECORDER.recording = False


def _trace_of(spans: list[ReadableSpan], job_id: str) -> dict[str, list[ReadableSpan]]:
    """The spans of ``job_id``'s trace by name (the request's span found by its trace)."""
    attempts = [s for s in spans if (s.attributes or {}).get("imagemill.job_id") == job_id]
    assert attempts, "no span names the job"
    trace_id = attempts[0].context.trace_id
    by_name: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        if span.context.trace_id == trace_id:
            by_name.setdefault(span.name, []).append(span)
    return by_name


def _check(by_name: dict[str, list[ReadableSpan]], job_id: str, attempts: int) -> None:
    [request] = by_name["POST /v1/jobs"]  # FastAPI's server span, the route's template
    assert format(request.context.trace_id, "032x") == CALLER_TRACE  # the caller's trace
    assert request.kind is trace.SpanKind.SERVER
    # The request's own spans (its endpoint's among them), whichever process wrote them.
    of_request = {s.context.span_id for v in by_name.values() for s in v if _within(s, request)}
    tried = sorted(by_name["job.attempt"], key=lambda s: s.start_time or 0)
    assert [(s.attributes or {})["imagemill.attempt"] for s in tried] == list(
        range(1, attempts + 1)
    )
    assert all(s.parent is not None and s.parent.span_id in of_request for s in tried)
    calls = by_name["provider.call"]
    assert len(calls) == attempts
    attempt_ids = {s.context.span_id for s in tried}
    assert all(c.parent is not None and c.parent.span_id in attempt_ids for c in calls)
    assert (tried[-1].attributes or {})["imagemill.status"] == "succeeded"


def _within(span: ReadableSpan, request: ReadableSpan) -> bool:
    """Whether ``span`` is the request's span or one FastAPI opened inside it."""
    scope = span.instrumentation_scope.name if span.instrumentation_scope else ""
    return span is request or (scope == "fastapi" and span.kind is not trace.SpanKind.SERVER)


BODY: dict[str, Any] = {
    "model": "placeholder",
    "prompt": "traced",
    "size": "32x32",
    "params": {"fail": "transient", "fail_attempts": 1},  # a retry: two attempts
}


async def test_a_job_is_one_trace_from_its_request_to_each_provider_call(
    settings: Settings,
    spans: list[ReadableSpan],
    served: Callable[[Settings], AbstractAsyncContextManager[httpx.AsyncClient]],
) -> None:
    async with served(settings) as http:
        headers = {"traceparent": CALLER, "Prefer": "wait=20"}
        job = (await http.post("/v1/jobs", json=BODY, headers=headers)).json()
    assert job["status"] == "succeeded"
    _check(_trace_of(spans, job["id"]), job["id"], attempts=2)


async def test_a_worker_in_another_process_continues_the_submits_trace(
    api_and_worker: tuple[str, Runtime], spans: list[ReadableSpan]
) -> None:
    """The worker's attempts are children of the API's request span though nothing but
    the job's row carries the trace from one to the other."""
    url, _worker = api_and_worker
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        headers = {"traceparent": CALLER, "Prefer": "wait=30"}
        job = (await http.post("/v1/jobs", json=BODY, headers=headers)).json()
    assert job["status"] == "succeeded"
    _check(_trace_of(spans, job["id"]), job["id"], attempts=2)
