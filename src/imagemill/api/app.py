"""The app factory: ``create_app(settings)`` builds the API around a ``Runtime``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.gzip import GZipMiddleware

from imagemill import __version__, web
from imagemill.api import contract, errors
from imagemill.api.request_ids import RequestIds
from imagemill.api.routes import (
    admin,
    assets,
    batches,
    collections,
    estimate,
    events,
    health,
    jobs,
    models,
    openai_compat,
    presets,
    providers,
    search,
    usage,
    webhooks,
)
from imagemill.config import Settings
from imagemill.providers.registry import Registry
from imagemill.runtime import Runtime

GZIP_MINIMUM_BYTES = 1024


class KeysRequired(RuntimeError):
    """A server bound to a non-loopback address was started with no API key."""


def _registry_of(app: FastAPI) -> Registry | None:
    runtime: Runtime | None = getattr(app.state, "runtime", None)
    return runtime.registry if runtime is not None else None


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """The ASGI app. Pass a started ``runtime`` to share one (tests, the in-process CLI)."""
    settings = settings or (runtime.settings if runtime else Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = runtime is None
        active = runtime or Runtime(settings)
        if own:
            await active.start()
        try:
            if settings.keys_required and not await active.accounts.active_key_count():
                raise KeysRequired(
                    f"binding to {settings.host} requires API keys and there are none: "
                    "create one with `imagemill keys create NAME`"
                )
            app.state.runtime = active
            app.state.local_owner = await active.local_owner()
            yield
        finally:
            if own:
                await active.stop()

    app = FastAPI(
        title="imagemill",
        version=__version__,
        summary="One API over every image model, with durable jobs and permanent storage.",
        lifespan=lifespan,
    )
    contract.install(app, lambda: _registry_of(app))
    errors.install(app)
    # Event streams and image bytes are excluded by content type inside GZipMiddleware.
    app.add_middleware(GZipMiddleware, minimum_size=GZIP_MINIMUM_BYTES)
    app.add_middleware(RequestIds)  # outermost: every answer carries its X-Request-Id
    app.state.max_upload_bytes = settings.max_upload_bytes  # routing: a body's size limit
    for module in (
        jobs,
        collections,
        batches,
        events,
        assets,
        models,
        presets,
        usage,
        estimate,
        admin,
        openai_compat,
        providers,
        search,
        webhooks,
        health,
    ):
        app.include_router(module.router)
    web.install(app)
    return app
