"""History at 100,000 jobs: ``GET /v1/jobs`` filtered by metadata, against the plain page.

One owner's 100,000 jobs (as a long-lived account has), each with
``metadata: {"story_id": i % 1000, "page": i % 12}`` (so a story has 100 jobs). Then, on
the repository's own query (what the route runs, without HTTP), the median time of:

- **baseline**: the newest 50 jobs, no filter;
- **one key**: the newest 50 of one story (``metadata.story_id=7``);
- **two keys**: one page of one story (``metadata.story_id=7&metadata.page=3``: 8 jobs);
- **no match**: a story that does not exist.

A filter should cost about what the plain page costs (an index lookup), not a scan of
every job's metadata.

    .venv/bin/python bench/history.py [--jobs 100000] [--database sqlite|postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from imagemill.db.engine import Database
from imagemill.db.migrate import upgrade
from imagemill.db.queries import JobFilter, Queries
from imagemill.db.rows import metadata_rows
from imagemill.db.tables import job_metadata, jobs, owners

POSTGRES = os.environ.get("IMAGEMILL_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
STORIES = 1000
PAGE = 50
ROUNDS = 50
CASES = {
    "baseline": (),
    "one key": (("story_id", "7"),),
    "two keys": (("story_id", "7"), ("page", "3")),
    "no match": (("story_id", "-1"),),
}


async def fill(db: Database, count: int) -> None:
    now = datetime.now(UTC)
    await db.write(
        lambda conn: conn.execute(
            owners.insert().values(id="own_bench", name="bench", secret="s", created_at=now)
        )
    )
    for start in range(0, count, 5000):
        rows, entries = [], []
        for i in range(start, min(count, start + 5000)):
            job_id = f"job_{i:026d}"
            metadata = {"story_id": i % STORIES, "page": i % 12}
            request = {"model": "placeholder", "prompt": f"page {i}", "metadata": metadata}
            rows.append(
                {
                    "id": job_id,
                    "owner_id": "own_bench",
                    "kind": "image",
                    "model": "placeholder",
                    "status": "succeeded",
                    "request": request,
                    "prompt": request["prompt"],
                    "max_attempts": 1,
                    "run_after": now,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            entries += metadata_rows(job_id, "own_bench", metadata)

        def insert(conn, rows=rows, entries=entries):  # type: ignore[no-untyped-def]
            conn.execute(jobs.insert(), rows)
            conn.execute(job_metadata.insert(), entries)

        await db.write(insert)


async def measure(db: Database) -> dict[str, float]:
    queries = Queries(db)
    timings: dict[str, float] = {}
    for name, metadata in CASES.items():
        where = JobFilter(metadata=metadata)
        await queries.list_jobs("own_bench", where, PAGE + 1)  # warm
        samples = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            await queries.list_jobs("own_bench", where, PAGE + 1)
            samples.append(time.perf_counter() - started)
        timings[name] = statistics.median(samples) * 1000
    return timings


async def main(count: int, database: str) -> None:
    name = f"imagemill_history_{uuid.uuid4().hex[:8]}"
    if database == "postgres":
        admin = await asyncpg.connect(f"{POSTGRES}/test")
        await admin.execute(f"CREATE DATABASE {name}")
        url = f"{POSTGRES.replace('postgresql://', 'postgresql+asyncpg://')}/{name}"
    else:
        url = f"sqlite:///{Path(tempfile.mkdtemp()) / 'history.db'}"
    db = Database(url)
    try:
        await upgrade(db)
        started = time.perf_counter()
        await fill(db, count)
        print(f"{database}: {count:,} jobs stored in {time.perf_counter() - started:.0f} s")
        timings = await measure(db)
    finally:
        await db.dispose()
        if database == "postgres":
            await admin.execute(f"DROP DATABASE {name}")
            await admin.close()
    base = timings["baseline"]
    for case, ms in timings.items():
        print(f"  {case:9} {ms:7.2f} ms  ({ms / base:.2f}x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    options = parser.parse_args()
    asyncio.run(main(options.jobs, options.database))
