"""Where a running server is: ``imagemill serve`` writes ``server.json`` in its data dir
(its URL and process id) while it runs, so commands given no ``--server`` talk to it,
instead of opening the same database in a process of their own that would not see its
jobs move (``imagemill jobs watch``) or would run jobs beside it."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx

SERVER_FILE = "server.json"
HEALTH_SECONDS = 2.0


@contextlib.contextmanager
def announced(data_dir: Path, url: str, *, keys_required: bool) -> Iterator[None]:
    """Say, for as long as the block runs, that this process serves ``data_dir`` at
    ``url`` (asking for API keys, or not)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / SERVER_FILE
    path.write_text(json.dumps({"url": url, "pid": os.getpid(), "keys": keys_required}))
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError, ValueError, OSError):
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()


def running_server(data_dir: Path, *, with_key: bool) -> str | None:
    """The URL of the server running on ``data_dir``, if one is (its process alive and
    answering ``/healthz``) and it can be used (it asks for no key, or ``with_key``); a
    stale file is ignored."""
    try:
        found = json.loads((data_dir / SERVER_FILE).read_text())
        url, pid = str(found["url"]), int(found["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if found.get("keys") and not with_key:
        return None  # in-process, keyless, as before there was a server
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another user's
        pass
    try:
        healthy = httpx.get(f"{url}/healthz", timeout=HEALTH_SECONDS).status_code == 200
    except httpx.HTTPError:
        return None
    return url if healthy else None
