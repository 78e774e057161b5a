"""``imagemill worker`` as a real process beside ``imagemill serve --no-workers``, on
PostgreSQL and Redis: it runs what the server accepts, and on SIGTERM gives its running
job back to the queue, where the next worker finishes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fakes.server import free_port

REDIS_READ_TIMEOUT = 5  # seconds: redis-py's default socket_timeout


class Processes:
    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{args[0]}-{len(self.started)}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "imagemill", *args], env=self.env, stdout=log, stderr=log
        )
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.terminate()
        for process in self.started:
            process.wait(timeout=30)


@pytest.fixture
def processes(postgres_url: str, redis_url: str, tmp_path: Path) -> Iterator[Processes]:
    env = {
        **os.environ,
        "IMAGEMILL_DATABASE_URL": postgres_url,
        "IMAGEMILL_BROKER_URL": redis_url,
        "IMAGEMILL_BROKER_QUEUE": f"imagemill.test.{uuid.uuid4().hex[:8]}",
        "IMAGEMILL_STORAGE_URL": (tmp_path / "blobs").as_uri(),
        "IMAGEMILL_DATA_DIR": str(tmp_path / "data"),
        "IMAGEMILL_LEASE_SECONDS": "3",
        "IMAGEMILL_SWEEP_INTERVAL_SECONDS": "0.5",
        "IMAGEMILL_REQUEUE_AFTER_SECONDS": "1",
    }
    running = Processes(env, tmp_path)
    try:
        yield running
    finally:
        running.stop_all()


def _wait_ready(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("the server did not become ready")


def _status(http: httpx.Client, job_id: str) -> str:
    status: str = http.get(f"/v1/jobs/{job_id}").json()["status"]
    return status


def test_a_worker_process_runs_jobs_and_gives_them_back_on_sigterm(
    processes: Processes,
) -> None:
    port = free_port()
    processes.start("serve", "--no-workers", "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    _wait_ready(url)
    first_worker = processes.start("worker", "--concurrency", "4")
    # Idle longer than redis-py lets a read take (5 s): a worker's blocking pop once timed
    # out then, and the worker stopped receiving for good.
    time.sleep(REDIS_READ_TIMEOUT + 1)

    with httpx.Client(base_url=url, timeout=30) as http:
        quick = [
            http.post(
                "/v1/jobs", json={"model": "placeholder", "prompt": f"q{i}", "size": "16x16"}
            ).json()["id"]
            for i in range(6)
        ]
        slow = http.post(
            "/v1/jobs",
            json={
                "model": "placeholder",
                "prompt": "slow",
                "size": "16x16",
                "params": {"latency_ms": 4000},
            },
        ).json()["id"]
        deadline = time.monotonic() + 30
        while _status(http, slow) != "running" or any(
            _status(http, q) != "succeeded" for q in quick
        ):
            assert time.monotonic() < deadline, "the worker did not take the jobs"
            time.sleep(0.1)

        first_worker.send_signal(signal.SIGTERM)
        assert first_worker.wait(timeout=20) == 0
        job = http.get(f"/v1/jobs/{slow}").json()
        assert job["status"] == "queued" and job["attempt"] == 0, "given back, attempt unspent"

        processes.start("worker")
        deadline = time.monotonic() + 30
        while _status(http, slow) != "succeeded":
            assert time.monotonic() < deadline, "the next worker did not finish the job"
            time.sleep(0.1)
        assert len(http.get(f"/v1/jobs/{slow}").json()["outputs"]) == 1
