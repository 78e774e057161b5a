"""Run an ASGI app on a real socket on 127.0.0.1 for a test: in a thread of its own
(``serve``, for the fakes) or in the test's event loop (``serve_here``); ``Plug`` lets one
served socket answer with a fresh fake per test; ``wait_until_ready`` waits for a server
started as a process of its own (``imagemill serve``)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_ready(
    url: str,
    process: subprocess.Popen[Any] | None = None,
    log: Path | None = None,
    within: float = 60.0,
) -> None:
    """Poll ``{url}/readyz`` until it answers 200; fail at once if ``process`` exits,
    showing the end of its ``log``."""
    deadline = time.monotonic() + within
    while True:
        if process is not None and process.poll() is not None:
            raise AssertionError(log.read_text()[-3000:] if log else "the server exited")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{url} did not become ready"
        time.sleep(0.1)


@contextmanager
def serve(app: Any, port: int | None = None, lifespan: str = "off") -> Iterator[str]:
    """Serve ``app``; yields its base URL (``http://127.0.0.1:PORT``) until the block ends.
    ``lifespan="on"`` for an app that starts and stops things (imagemill's own)."""
    port = port or free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan=lifespan, access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"fake-server-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the fake server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@asynccontextmanager
async def serve_here(app: Any, port: int | None = None) -> AsyncIterator[str]:
    """Serve ``app`` in the running event loop (an app whose objects live in this loop,
    like imagemill's own, cannot run in a thread of its own); yields its base URL."""
    port = port or free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the server did not start")
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


class Plug:
    """An ASGI app that forwards to whichever app is plugged in.

    Starting and stopping uvicorn costs ~0.2 s, so a test module serves one ``Plug``
    and plugs a fresh fake into it per test (``fake.plug_into(plug, url)``).
    """

    def __init__(self) -> None:
        self.app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.app is None:
            raise RuntimeError("no fake is plugged in")
        await self.app(scope, receive, send)
