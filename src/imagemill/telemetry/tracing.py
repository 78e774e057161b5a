"""Tracing with OpenTelemetry, optional (the ``otel`` extra): a trace per job, from the
request that submitted it, across the queue, to each attempt and each provider call.

Off unless OpenTelemetry's SDK is installed (``pip install 'imagemill[otel]'``) and an
OTLP endpoint is configured the standard way (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``; ``OTEL_SERVICE_NAME`` names the process,
``OTEL_SDK_DISABLED=true`` turns it off): ``imagemill serve`` and ``imagemill worker``
then send their spans over OTLP/HTTP. Without it every span here is a no-op.

- Each HTTP request is a server span, continuing the caller's trace when it sends a W3C
  ``traceparent``: FastAPI's own telemetry, on whenever a tracer provider is set.
- A job keeps the trace context it was submitted in (``jobs.trace_parent``), so its
  attempts, in whichever process and however much later, are children of that request:
  ``job.attempt`` (job id, model, attempt), with a ``provider.call`` per model called.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

try:
    from opentelemetry import trace
    from opentelemetry.trace import ProxyTracerProvider
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # the otel extra is not installed: tracing is off
    trace = None  # type: ignore[assignment]

TRACER_NAME = "imagemill"


@contextlib.contextmanager
def span(
    name: str, attributes: Mapping[str, Any] | None = None, *, parent: str | None = None
) -> Iterator[Any]:
    """A span around the block, a child of the current one, or of ``parent`` (a W3C
    ``traceparent``) when given; an exception escaping the block marks it failed. Yields
    the span (``None`` with tracing off)."""
    if not _tracing():
        yield None
        return
    context = TraceContextTextMapPropagator().extract({"traceparent": parent}) if parent else None
    tracer = trace.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(
        name,
        context=context,
        attributes=dict(attributes or {}),
        record_exception=True,
        set_status_on_exception=True,
    ) as current:
        yield current


def traceparent() -> str | None:
    """The current span's W3C ``traceparent``, to continue its trace elsewhere; ``None``
    with tracing off or outside any span."""
    if not _tracing():
        return None
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent")


def _tracing() -> bool:
    """Whether a tracer provider is set: until one is, spans would record nothing, and
    making them costs a hot path tens of microseconds a job."""
    return trace is not None and not isinstance(trace.get_tracer_provider(), ProxyTracerProvider)


def configure() -> bool:
    """Send this process's spans where OpenTelemetry's environment says, if the SDK is
    installed and an exporter is configured; whether tracing is on."""
    wanted = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    disabled = os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true"
    if trace is None or not wanted or disabled:
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        return False
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "imagemill")})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return True
