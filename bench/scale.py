"""Throughput of the distributed mode with 1, 2 and 4 worker processes.

One ``imagemill serve --no-workers`` and N ``imagemill worker`` processes (each running
``--concurrency`` jobs at once: its ``hosted_concurrency``) on PostgreSQL + Redis;
placeholder jobs of ``latency_ms: 200``, so the work is waiting, like a hosted
provider's, and more workers should finish it sooner. Each worker count gets a fresh
database; one worker is the baseline.

Throughput is counted over the workers' span, from the first job started to the last
finished (``started_at``, ``finished_at``), so submitting does not count against them;
a worker's ideal is ``concurrency`` jobs per ``latency_ms``. Meanwhile the script asks
the API every ``--poll-seconds`` whether all are done (three list calls): on two cores
that load competes with the workers, so asking 20 times a second measures less.

    .venv/bin/python bench/scale.py [--workers 1 2 4] [--jobs 400] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import uuid
from datetime import datetime
from pathlib import Path

import asyncpg
import httpx
import redis.asyncio as redis
from common import imagemill_serve

POSTGRES = os.environ.get("IMAGEMILL_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
REDIS = os.environ.get("IMAGEMILL_BENCH_REDIS", "redis://127.0.0.1:6379/0")
LATENCY_MS = 200
SUBMITS_AT_ONCE = 16


async def _listening(logs: list[Path]) -> None:
    """Until every worker says it runs (its Runtime started, the broker read)."""
    deadline = asyncio.get_running_loop().time() + 60
    while not all(b" worker: " in path.read_bytes() for path in logs):
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError("the workers did not start; see their logs")
        await asyncio.sleep(0.1)


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(f"{POSTGRES}/test")
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def run(workers: int, jobs: int, concurrency: int, workdir: Path, poll: float) -> float:
    """Seconds the workers took: from the first job started to the last finished."""
    database = f"imagemill_scale_{uuid.uuid4().hex[:8]}"
    queue = f"imagemill.bench.{database}"
    await _admin(f"CREATE DATABASE {database}")
    settings = {
        "database_url": f"{POSTGRES.replace('postgresql://', 'postgresql+asyncpg://')}/{database}",
        "broker_url": REDIS,
        # A list of its own: messages left by an earlier run that was stopped (for jobs of
        # a database since dropped) would otherwise come first, and be drained one by one.
        "broker_queue": queue,
        "storage_url": (workdir / "blobs").as_uri(),
        "hosted_concurrency": str(concurrency),
        "workers": "false",
    }
    env = {**os.environ, **{f"IMAGEMILL_{k.upper()}": v for k, v in settings.items()}}
    env["IMAGEMILL_DATA_DIR"] = str(workdir / "data")
    started_workers = []
    try:
        async with imagemill_serve(workdir / "api", **settings) as url:
            logs = [workdir / f"worker-{index}.log" for index in range(workers)]
            for path in logs:
                with path.open("wb") as log:
                    started_workers.append(
                        await asyncio.create_subprocess_exec(
                            sys.executable,
                            "-m",
                            "imagemill",
                            "worker",
                            env=env,
                            stdout=log,
                            stderr=log,
                        )
                    )
            await _listening(logs)
            async with httpx.AsyncClient(base_url=url, timeout=60) as http:
                body = {
                    "model": "placeholder",
                    "size": "64x64",
                    "params": {"latency_ms": LATENCY_MS},
                }
                # A few submits at a time: hundreds at once cost the client a core in
                # httpx's connection pool (400 took 8.3 s instead of 2), and the workers,
                # fed slower than they finish, were measured waiting for jobs.
                submitting = asyncio.Semaphore(SUBMITS_AT_ONCE)

                async def submit(index: int) -> None:
                    async with submitting:
                        response = await http.post(
                            "/v1/jobs", json={**body, "prompt": f"scale {index}"}
                        )
                        response.raise_for_status()

                await asyncio.gather(*(submit(i) for i in range(jobs)))
                while True:
                    page = (
                        await http.get("/v1/jobs", params={"status": "succeeded", "limit": 1})
                    ).json()
                    queued = (
                        await http.get("/v1/jobs", params={"status": "queued", "limit": 1})
                    ).json()
                    running = (
                        await http.get("/v1/jobs", params={"status": "running", "limit": 1})
                    ).json()
                    if page["data"] and not queued["data"] and not running["data"]:
                        break
                    await asyncio.sleep(poll)
                return await _span(http)
    finally:
        for process in started_workers:
            process.terminate()
            await process.wait()
        await _admin(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        async with redis.from_url(REDIS) as client:
            await client.delete(queue)


async def _span(http: httpx.AsyncClient) -> float:
    """Seconds from the first job's start to the last one's finish."""
    starts, ends = [], []
    params: dict[str, object] = {"limit": 200}
    while True:
        page = (await http.get("/v1/jobs", params=params)).raise_for_status().json()
        for job in page["data"]:
            assert job["status"] == "succeeded", job
            starts.append(datetime.fromisoformat(job["started_at"]))
            ends.append(datetime.fromisoformat(job["finished_at"]))
        if not page["next_cursor"]:
            return (max(ends) - min(starts)).total_seconds()
        params["cursor"] = page["next_cursor"]


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=4, help="jobs per worker at once")
    parser.add_argument("--poll-seconds", type=float, default=0.5, help="between checks")
    args = parser.parse_args()
    results = []
    for count in args.workers:
        with tempfile.TemporaryDirectory() as tmp:
            seconds = await run(count, args.jobs, args.concurrency, Path(tmp), args.poll_seconds)
            results.append((count, seconds))
    base = args.jobs / results[0][1]
    ideal = args.concurrency / (LATENCY_MS / 1000)  # one worker's jobs per second
    print(
        f"{args.jobs} placeholder jobs of {LATENCY_MS} ms, {args.concurrency} per worker at "
        f"once, done checked every {args.poll_seconds:g} s"
    )
    for count, seconds in results:
        rate = args.jobs / seconds
        print(
            f"{count} worker(s): {seconds:6.2f} s  {rate:6.1f} jobs/s  "
            f"({rate / base:.2f}x one worker, {rate / (ideal * count):.0%} of ideal)"
        )


if __name__ == "__main__":
    asyncio.run(main())
