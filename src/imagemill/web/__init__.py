"""The web studio: server-rendered pages (``pages.py``, ``templates/``) with a little
plain JavaScript (``static/``) that talks to the same ``/v1`` API as the SDK."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from imagemill.web import pages

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    """Serve the studio at ``/`` (and its files under ``/static``) from ``app``."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_exception_handler(pages.SignInRequired, pages.to_sign_in)
    app.include_router(pages.router)
