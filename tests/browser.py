"""The studio in a real browser: a server in a thread, and Debian's Chromium driven by
Playwright (never a browser Playwright downloads). Used by the browser tests and by
``scripts/screenshots``."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from imagemill.api.app import create_app
from imagemill.auth import new_key
from imagemill.config import Settings
from imagemill.jobs.service import utcnow
from imagemill.runtime import Runtime

CHROMIUM = os.environ.get("IMAGEMILL_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here, or ``None``."""
    if not Path(CHROMIUM).exists() and not shutil.which(CHROMIUM):
        return f"no Chromium at {CHROMIUM} (scripts/test installs Debian's package)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (it is in the dev extra)"
    return None


def make_keys(settings: Settings, *owners: str) -> dict[str, str]:
    """An API key for each owner, made before the server starts: {owner: key}."""

    async def make() -> dict[str, str]:
        keys = {}
        async with Runtime(settings, run_workers=False, sweep=False) as runtime:
            for name in owners:
                owner = await runtime.accounts.owner_named(name, utcnow())
                key = new_key()
                await runtime.accounts.add_key(owner.id, name, key.prefix, key.key_hash, utcnow())
                keys[name] = key.plaintext
        return keys

    # A thread of its own: Playwright's sync API keeps an event loop in this one.
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, make()).result()


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """The whole app (API, workers, studio) on a free loopback port, in a thread; its URL."""
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="studio-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
