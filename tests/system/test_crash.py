"""Crash test: SIGKILL the server mid-run; every accepted job still finishes exactly once."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

JOBS = 200
LATENCY_MS = 1000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``imagemill`` in a child process, on a data dir that outlives it."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "IMAGEMILL_DATA_DIR": str(self.data_dir),
            "IMAGEMILL_WORKER_CONCURRENCY": "16",
            "IMAGEMILL_LEASE_SECONDS": "2",
            "IMAGEMILL_SWEEP_INTERVAL_SECONDS": "0.5",
        }
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "imagemill.api.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
        ]
        log = (self.data_dir / "server.log").open("ab")
        self.process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError(
            "the server did not become ready: " + (self.data_dir / "server.log").read_text()
        )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    tmp_path.mkdir(exist_ok=True)
    running = Server(tmp_path, _free_port())
    running.start()
    yield running
    running.stop()


def _counts(db_path: Path) -> Counter[str]:
    with sqlite3.connect(db_path) as db:
        return Counter(status for (status,) in db.execute("SELECT status FROM jobs"))


@pytest.mark.slow
def test_sigkill_mid_run_loses_and_duplicates_nothing(server: Server) -> None:
    requested: dict[str, int] = {}
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for i in range(JOBS):
            n = 1 + i % 3
            body = {
                "model": "placeholder",
                "prompt": f"crash test {i}",
                "n": n,
                "size": "64x64",
                "seed": i,
                "params": {"latency_ms": LATENCY_MS},
            }
            response = http.post("/v1/jobs", json=body)
            assert response.status_code == 202, response.text
            requested[response.json()["id"]] = n

    db_path = server.data_dir / "imagemill.db"
    deadline = time.monotonic() + 60
    while _counts(db_path)["succeeded"] < JOBS // 4:  # kill once a quarter is done
        assert time.monotonic() < deadline, "jobs are not progressing"
        time.sleep(0.05)
    server.kill()
    before = _counts(db_path)
    assert before["running"] > 0, f"the kill should catch jobs mid-run: {before}"

    server.start()
    deadline = time.monotonic() + 120
    while (counts := _counts(db_path))["succeeded"] + counts["failed"] < JOBS:
        assert time.monotonic() < deadline, f"jobs did not finish after the restart: {counts}"
        time.sleep(0.2)

    with sqlite3.connect(db_path) as db:
        statuses = dict(db.execute("SELECT id, status FROM jobs").fetchall())
        outputs = Counter(job_id for (job_id,) in db.execute("SELECT job_id FROM outputs"))
        completions = Counter(
            job_id
            for (job_id,) in db.execute(
                "SELECT job_id FROM events WHERE type = 'status'"
                " AND json_extract(data, '$.status') = 'succeeded'"
            )
        )
        asset_shas = [sha for (sha,) in db.execute("SELECT sha256 FROM assets")]
    assert set(statuses) == set(requested)
    assert set(statuses.values()) == {"succeeded"}, Counter(statuses.values())
    assert {job_id: outputs[job_id] for job_id in requested} == requested  # exactly n each
    assert set(completions.values()) == {1}, "a job completed more than once"
    blob_files = [p for p in (server.data_dir / "blobs" / "sha256").rglob("*") if p.is_file()]
    assert len(asset_shas) == len(set(asset_shas))
    assert sorted(p.name for p in blob_files) == sorted(asset_shas), (
        "a blob was stored twice or orphaned"
    )


@pytest.mark.slow
def test_a_batch_survives_a_sigkill_with_its_limit_and_progress(server: Server) -> None:
    """A 12-page story, 5 at a time, the server killed mid-run: after the restart the
    batch goes on, never more than 5 running, its progress never going back, to 12
    pages, each made once."""
    pages = [
        {
            "model": "placeholder",
            "prompt": f"page {i}",
            "size": "32x32",
            "seed": i,
            "params": {"latency_ms": 1500},
        }
        for i in range(12)
    ]
    seen: list[dict[str, Any]] = []

    def look(http: httpx.Client, batch_id: str) -> dict[str, Any]:
        batch: dict[str, Any] = http.get(f"/v1/batches/{batch_id}").json()
        seen.append(batch)
        return batch

    with httpx.Client(base_url=server.url, timeout=30) as http:
        created = http.post("/v1/batches", json={"requests": pages, "concurrency": 5})
        assert created.status_code == 202, created.text
        batch_id = created.json()["id"]
        deadline = time.monotonic() + 60
        while look(http, batch_id)["counts"]["succeeded"] < 3:
            assert time.monotonic() < deadline, "the batch is not progressing"
            time.sleep(0.05)
    server.kill()
    server.start()
    with httpx.Client(base_url=server.url, timeout=30) as http:
        deadline = time.monotonic() + 120
        while look(http, batch_id)["status"] not in ("succeeded", "failed", "canceled"):
            assert time.monotonic() < deadline, f"the batch did not finish: {seen[-1]}"
            time.sleep(0.05)

    assert seen[-1]["status"] == "succeeded" and seen[-1]["counts"]["succeeded"] == 12
    assert max(b["counts"]["running"] for b in seen) <= 5
    progress = [b["progress"] for b in seen]
    assert progress == sorted(progress) and progress[-1] == 1.0
    with sqlite3.connect(server.data_dir / "imagemill.db") as db:
        outputs = Counter(
            job_id
            for (job_id,) in db.execute(
                "SELECT job_id FROM outputs"
                " WHERE job_id IN (SELECT id FROM jobs WHERE batch_id = ?)",
                (batch_id,),
            )
        )
    assert sorted(outputs) == sorted(seen[-1]["job_ids"]) and set(outputs.values()) == {1}
