"""What the benchmarks share: ``imagemill serve`` started in its own process, as people run it."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def imagemill_serve(
    data_dir: Path, port: int | None = None, **settings: str
) -> AsyncIterator[str]:
    """``imagemill serve`` on ``port`` (default: a free one) of loopback with
    ``IMAGEMILL_<NAME>`` settings; yields its URL once it answers ``/readyz``, and stops
    it afterwards."""
    async with imagemill_server(data_dir, port, **settings) as (url, _):
        yield url


@asynccontextmanager
async def imagemill_server(
    data_dir: Path, port: int | None = None, **settings: str
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """``imagemill_serve``, yielding the process too (its pid, for measuring it)."""
    port = port or free_port()
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    env = {**os.environ, **{f"IMAGEMILL_{k.upper()}": v for k, v in settings.items()}}
    command = [sys.executable, "-m", "imagemill", "serve", "--port", str(port)]
    with (data_dir / "server.log").open("wb") as log:
        server = await asyncio.create_subprocess_exec(
            *command, "--data-dir", str(data_dir), env=env, stdout=log, stderr=log
        )
    url = f"http://127.0.0.1:{port}"
    try:
        await _ready(url)
        yield url, server
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), timeout=30)


async def _ready(url: str) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(base_url=url) as http:
        while time.monotonic() < deadline:
            try:
                if (await http.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("imagemill serve did not become ready")
