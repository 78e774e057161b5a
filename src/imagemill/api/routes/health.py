"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from imagemill.api.deps import RuntimeDep
from imagemill.api.routing import CheckedRoute

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
