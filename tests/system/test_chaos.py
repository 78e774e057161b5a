"""Chaos test of the distributed mode: 2 API processes and 3 worker processes on
PostgreSQL + RabbitMQ (or Redis) + S3; 500 jobs; 10 workers killed with SIGKILL at
random and restarted while they run. Every job ends succeeded with exactly n outputs,
none completes twice, and no blob is written twice (checked in the database and the
bucket)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import obstore
import pytest

from fakes.server import free_port, wait_until_ready
from imagemill.storage.blobs import open_store

JOBS = 500
KILLS = 10
WORKERS = 3
BROKERS = {"rabbitmq": "amqp://guest:guest@127.0.0.1:5672/", "redis": "redis://127.0.0.1:6379/0"}


class Cluster:
    """The processes of one distributed deployment, on this machine."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.processes: list[subprocess.Popen[bytes]] = []
        self.urls: list[str] = []
        self.workers: list[subprocess.Popen[bytes]] = []

    def _start(self, *args: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{args[0]}-{len(self.processes)}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "imagemill", *args], env=self.env, stdout=log, stderr=log
        )
        self.processes.append(process)
        return process

    def start_api(self) -> None:
        port = free_port()
        self._start("serve", "--no-workers", "--port", str(port))
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(url)
        self.urls.append(url)

    def start_worker(self) -> None:
        self.workers.append(self._start("worker", "--concurrency", "8"))

    def kill_a_worker(self, rng: random.Random) -> None:
        victim = self.workers.pop(rng.randrange(len(self.workers)))
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        self.start_worker()

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(params=sorted(BROKERS))
def cluster(
    request: pytest.FixtureRequest,
    postgres_url: str,
    s3_bucket: tuple[str, dict[str, object]],
    tmp_path: Path,
) -> Iterator[tuple[Cluster, str, str, dict[str, object]]]:
    broker = BROKERS[request.param]
    bucket, options = s3_bucket
    env = {
        **os.environ,
        "IMAGEMILL_DATABASE_URL": postgres_url,
        "IMAGEMILL_BROKER_URL": broker,
        "IMAGEMILL_BROKER_QUEUE": f"imagemill.test.{uuid.uuid4().hex[:8]}",
        "IMAGEMILL_STORAGE_URL": bucket,
        "IMAGEMILL_STORAGE_OPTIONS": json.dumps(options),
        "IMAGEMILL_DATA_DIR": str(tmp_path / "data"),
        "IMAGEMILL_LEASE_SECONDS": "2",
        "IMAGEMILL_SWEEP_INTERVAL_SECONDS": "0.5",
        "IMAGEMILL_REQUEUE_AFTER_SECONDS": "2",
        "IMAGEMILL_MAX_ATTEMPTS": "10",  # kills spend attempts: a job may be hit more than once
    }
    running = Cluster(env, tmp_path)
    try:
        for _ in range(2):
            running.start_api()
        for _ in range(WORKERS):
            running.start_worker()
        yield running, postgres_url, bucket, options
    finally:
        running.stop()


@pytest.mark.slow
def test_killed_workers_lose_no_job_and_complete_none_twice(
    cluster: tuple[Cluster, str, str, dict[str, object]],
) -> None:
    running, database, bucket, options = cluster
    rng = random.Random(5)
    requested: dict[str, int] = {}
    with httpx.Client(timeout=30) as http:
        for i in range(JOBS):
            n = 1 + i % 3
            body = {
                "model": "placeholder",
                "prompt": f"chaos {i}",
                "n": n,
                "size": "32x32",
                "seed": i,
                "params": {"latency_ms": rng.randrange(100, 700)},
            }
            response = http.post(f"{running.urls[i % 2]}/v1/jobs", json=body)
            assert response.status_code == 202, response.text
            requested[response.json()["id"]] = n

    kills = 0
    deadline = time.monotonic() + 240
    while (counts := _statuses(database))["succeeded"] + counts["failed"] < JOBS:
        assert time.monotonic() < deadline, f"jobs did not finish: {counts}"
        if kills < KILLS and counts["running"]:
            running.kill_a_worker(rng)
            kills += 1
        # Quick while kills remain: a fast run must not end before it had them all.
        time.sleep(rng.uniform(0.1, 0.3) if kills < KILLS else rng.uniform(0.3, 1.0))
    assert kills == KILLS, f"the run ended before {KILLS} kills ({kills})"

    outputs, completions, assets = _record(database)
    statuses = _statuses(database)
    assert statuses == Counter({"succeeded": JOBS}), statuses
    assert {job_id: outputs[job_id] for job_id in requested} == requested  # exactly n each
    assert set(completions.values()) == {1}, "a job completed more than once"
    assert len(completions) == JOBS
    assert len(assets) == len(set(assets)), "an asset recorded twice"
    stored = _bucket_keys(bucket, options)
    assert sorted(stored) == sorted(f"sha256/{sha[:2]}/{sha}" for sha in assets), (
        "a blob written twice or orphaned"
    )


def _statuses(database: str) -> Counter[str]:
    rows = _query(database, "SELECT status, count(*) FROM jobs GROUP BY status")
    return Counter({status: count for status, count in rows})


def _record(database: str) -> tuple[Counter[str], Counter[str], list[str]]:
    outputs = Counter(row[0] for row in _query(database, "SELECT job_id FROM outputs"))
    completions = Counter(
        row[0]
        for row in _query(
            database,
            "SELECT job_id FROM events WHERE type = 'status' AND data->>'status' = 'succeeded'",
        )
    )
    assets = [row[0] for row in _query(database, "SELECT sha256 FROM assets")]
    return outputs, completions, assets


def _query(database: str, sql: str) -> list[tuple[object, ...]]:
    async def run() -> list[tuple[object, ...]]:
        dsn = database.replace("postgresql+asyncpg://", "postgresql://")
        connection = await asyncpg.connect(dsn)
        try:
            return [tuple(row) for row in await connection.fetch(sql)]
        finally:
            await connection.close()

    return asyncio.run(run())


def _bucket_keys(bucket: str, options: dict[str, object]) -> list[str]:
    store = open_store(bucket, options)
    return [item["path"] for batch in obstore.list(store, prefix="sha256/") for item in batch]
