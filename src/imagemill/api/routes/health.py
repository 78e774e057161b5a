"""Liveness and readiness probes, and the metrics Prometheus scrapes."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from imagemill.api.deps import OptionalOwner, RuntimeDep
from imagemill.api.routing import CheckedRoute
from imagemill.api.schemas import ErrorOut
from imagemill.errors import Forbidden, Unauthorized

router = APIRouter(tags=["health"], route_class=CheckedRoute)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    """The database and blob store answer; 503 otherwise."""
    checks: dict[str, str] = {}
    try:
        await runtime.db.read(lambda conn: conn.execute(text("SELECT 1")).scalar())
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        await runtime.blobs.exists("readyz")
        checks["storage"] = "ok"
    except Exception as exc:
        checks["storage"] = f"error: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )


async def metrics_reader(owner: OptionalOwner, runtime: RuntimeDep) -> None:
    """Open on a keyless loopback server; an admin key where keys are required."""
    if not runtime.settings.keys_required and (owner is None or owner.key_id is None):
        return
    if owner is None:
        raise Unauthorized("/metrics needs an admin key: send 'Authorization: Bearer <key>'")
    if not owner.admin:
        raise Forbidden("/metrics needs an admin key (`imagemill keys create NAME --admin`)")


@router.get(
    "/metrics",
    response_class=Response,
    dependencies=[Depends(metrics_reader)],
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus' text format."},
        401: {"model": ErrorOut},
        403: {"model": ErrorOut},
    },
)
async def metrics(runtime: RuntimeDep) -> Response:
    """This process's metrics in Prometheus' text format (every process's on the machine
    with `PROMETHEUS_MULTIPROC_DIR`): jobs by model, kind and status, queue wait, run
    and end-to-end time, attempts, retries and errors by code, fallbacks, cache hits,
    outputs and cost per model, refusals by budgets and rate limits, open event streams."""
    body, content_type = runtime.metrics.exposition()
    return Response(body, media_type=content_type)
