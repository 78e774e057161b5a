"""Jobs per second end to end, against the irreducible work per job, in one run.

imagemill: submit through the HTTP API (in-process ASGI), run on the embedded default
(SQLite, local files, in-process workers) with the placeholder model at zero latency
and 64×64 images, until every job has succeeded with its output stored.

Baseline: a loop that does only what any job must: render the same PNG, store the blob,
insert one row and update it (the same SQLite engine and blob store).

    .venv/bin/python bench/throughput.py [--jobs 1000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import text

from imagemill.api.app import create_app
from imagemill.config import Settings
from imagemill.db.engine import Database
from imagemill.providers.placeholder import render
from imagemill.runtime import Runtime
from imagemill.storage.blobs import BlobStore

SIZE = 64


async def baseline(jobs: int, workdir: Path) -> float:
    """Seconds per job of render + blob put + insert + update."""
    db = Database(f"sqlite+aiosqlite:///{workdir / 'baseline.db'}")
    blobs = BlobStore.from_url((workdir / "baseline-blobs").as_uri())
    async with db.write() as conn:
        await conn.execute(text("CREATE TABLE jobs (id TEXT PRIMARY KEY, status TEXT, sha TEXT)"))
    started = time.perf_counter()
    for i in range(jobs):
        async with db.write() as conn:
            await conn.execute(
                text("INSERT INTO jobs VALUES (:id, 'queued', NULL)"), {"id": f"j{i}"}
            )
        data = render(f"bench {i}", "placeholder", i, SIZE, SIZE)
        sha, _ = await blobs.put_content(data)
        async with db.write() as conn:
            await conn.execute(
                text("UPDATE jobs SET status = 'succeeded', sha = :sha WHERE id = :id"),
                {"id": f"j{i}", "sha": sha},
            )
    elapsed = time.perf_counter() - started
    await db.dispose()
    return elapsed / jobs


async def imagemill(jobs: int, concurrency: int, workdir: Path) -> float:
    """Seconds per job, submit → succeeded, through the API."""
    settings = Settings(data_dir=workdir / "imagemill", worker_concurrency=concurrency)
    async with Runtime(settings) as runtime:
        app = create_app(runtime=runtime)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://bench"
            ) as http,
        ):
            owner = await runtime.local_owner()
            started = time.perf_counter()
            ids: list[str] = []
            for i in range(jobs):
                body = {
                    "model": "placeholder",
                    "prompt": f"bench {i}",
                    "size": f"{SIZE}x{SIZE}",
                    "seed": i,
                }
                response = await http.post("/v1/jobs", json=body)
                response.raise_for_status()
                ids.append(response.json()["id"])
            finished = await runtime.service.wait(owner.id, ids, timeout=600)
            elapsed = time.perf_counter() - started
            assert all(j.status == "succeeded" and len(j.outputs) == 1 for j in finished)
    return elapsed / jobs


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8, help="imagemill worker_concurrency")
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating rounds; medians are reported"
    )
    args = parser.parse_args()
    base_times, mill_times = [], []
    for round_ in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            base_times.append(await baseline(args.jobs, Path(tmp)))
            mill_times.append(await imagemill(args.jobs, args.concurrency, Path(tmp)))
        print(
            f"round {round_ + 1}: baseline {base_times[-1] * 1e3:.2f} ms/job, "
            f"imagemill {mill_times[-1] * 1e3:.2f} ms/job"
        )
    base, mill = statistics.median(base_times), statistics.median(mill_times)
    print(
        f"\n{args.jobs} jobs, 64x64, placeholder at zero latency, "
        f"worker_concurrency={args.concurrency}"
    )
    print(f"baseline : {base * 1e3:6.2f} ms/job  {1 / base:7.1f} jobs/s")
    print(f"imagemill: {mill * 1e3:6.2f} ms/job  {1 / mill:7.1f} jobs/s")
    print(f"ratio    : {mill / base:.2f}x the baseline's time per job")


if __name__ == "__main__":
    asyncio.run(main())
