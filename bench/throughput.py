"""Jobs per second end to end, against the irreducible work per job, in one run.

Baseline: a loop that does only what any job must, the simplest correct way: render the
placeholder PNG, store the blob, insert one row and update it (the same SQLite engine
and blob store imagemill uses).

imagemill, two ways, both on the embedded default (SQLite, local files, in-process
workers) with the placeholder model at zero latency and 64×64 images, timed from the
first submit until the last job has succeeded with its output stored:

- served: ``imagemill serve`` in its own process, as people run it; this script is the
  client, submitting over HTTP with a few requests in flight. The target (at most 2×
  the baseline's time per job) is about this number.
- in-process: the app called through httpx's ASGI transport, client and server sharing
  one interpreter (so the client's own work counts against imagemill's).

    .venv/bin/python bench/throughput.py [--jobs 500] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from common import imagemill_serve
from sqlalchemy import text

from imagemill.api.app import create_app
from imagemill.config import Settings
from imagemill.db.engine import Database
from imagemill.providers.placeholder import render
from imagemill.runtime import Runtime
from imagemill.storage.blobs import BlobStore

SIZE = 64  # small on purpose: the work per job is tiny, so imagemill's own cost shows
POLL_SECONDS = 0.2  # how often the served client checks for the end; it does not skew the time


def _body(i: int) -> dict[str, object]:
    return {"model": "placeholder", "prompt": f"bench {i}", "size": f"{SIZE}x{SIZE}", "seed": i}


async def baseline(jobs: int, workdir: Path) -> float:
    """Seconds per job of render + blob put + insert + update."""
    db = Database(f"sqlite:///{workdir / 'baseline.db'}")
    blobs = BlobStore.from_url((workdir / "baseline-blobs").as_uri())
    create = text("CREATE TABLE jobs (id TEXT PRIMARY KEY, status TEXT, sha TEXT)")
    insert = text("INSERT INTO jobs VALUES (:id, 'queued', NULL)")
    finish = text("UPDATE jobs SET status = 'succeeded', sha = :sha WHERE id = :id")
    await db.write(lambda conn: conn.execute(create))
    started = time.perf_counter()
    for i in range(jobs):
        job_id = f"j{i}"
        await db.write(lambda conn: conn.execute(insert, {"id": job_id}))  # noqa: B023
        data = render(f"bench {i}", "placeholder", i, SIZE, SIZE)
        sha, _ = await blobs.put_content(data)
        await db.write(lambda conn: conn.execute(finish, {"id": job_id, "sha": sha}))  # noqa: B023
    elapsed = time.perf_counter() - started
    await db.dispose()
    return elapsed / jobs


async def served(jobs: int, in_flight: int, workdir: Path) -> float:
    """Seconds per job, first submit → last job succeeded, against ``imagemill serve``."""
    async with (
        imagemill_serve(workdir / "served") as url,
        httpx.AsyncClient(
            base_url=url, limits=httpx.Limits(max_connections=in_flight), timeout=60
        ) as http,
    ):
        started = datetime.now(UTC)
        await _submit_all(http, jobs, in_flight)
        await _until_all_finished(http)
        finished = await _all_jobs(http)
    assert len(finished) == jobs, f"{len(finished)} of {jobs} jobs"
    assert all(j["status"] == "succeeded" and len(j["outputs"]) == 1 for j in finished)
    last = max(datetime.fromisoformat(j["finished_at"]) for j in finished)
    return (last - started).total_seconds() / jobs


async def _submit_all(http: httpx.AsyncClient, jobs: int, in_flight: int) -> None:
    pending = iter(range(jobs))

    async def submitter() -> None:
        for i in pending:
            (await http.post("/v1/jobs", json=_body(i))).raise_for_status()

    await asyncio.gather(*(submitter() for _ in range(in_flight)))


async def _until_all_finished(http: httpx.AsyncClient) -> None:
    while True:
        if not (await _any_with(http, "queued") or await _any_with(http, "running")):
            return
        await asyncio.sleep(POLL_SECONDS)


async def _any_with(http: httpx.AsyncClient, status: str) -> bool:
    response = await http.get("/v1/jobs", params={"status": status, "limit": 1})
    return bool(response.raise_for_status().json()["data"])


async def _all_jobs(http: httpx.AsyncClient) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    params: dict[str, object] = {"limit": 200}
    while True:
        page = (await http.get("/v1/jobs", params=params)).raise_for_status().json()
        found += page["data"]
        if not page["next_cursor"]:
            return found
        params["cursor"] = page["next_cursor"]


async def in_process(jobs: int, workdir: Path) -> float:
    """Seconds per job, submit → succeeded, through the app in this interpreter."""
    settings = Settings(data_dir=workdir / "in-process")
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
                response = await http.post("/v1/jobs", json=_body(i))
                ids.append(response.raise_for_status().json()["id"])
            finished = await runtime.service.wait(owner.id, ids, timeout=600)
            elapsed = time.perf_counter() - started
            assert all(j.status == "succeeded" and len(j.outputs) == 1 for j in finished)
    return elapsed / jobs


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--in-flight", type=int, default=8, help="served: concurrent submits")
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating rounds; medians are reported"
    )
    args = parser.parse_args()
    times: dict[str, list[float]] = {"baseline": [], "served": [], "in-process": []}
    for round_ in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            times["baseline"].append(await baseline(args.jobs, workdir))
            times["served"].append(await served(args.jobs, args.in_flight, workdir))
            times["in-process"].append(await in_process(args.jobs, workdir))
        print(
            f"round {round_ + 1}: "
            + ", ".join(f"{name} {t[-1] * 1e3:.2f} ms/job" for name, t in times.items())
        )
    medians = {name: statistics.median(t) for name, t in times.items()}
    print(
        f"\n{args.jobs} jobs, {SIZE}x{SIZE}, placeholder at zero latency, "
        f"default settings, {args.in_flight} submits in flight (served)"
    )
    for name, seconds in medians.items():
        ratio = "" if name == "baseline" else f"  {seconds / medians['baseline']:.2f}x baseline"
        print(f"{name:<10}: {seconds * 1e3:6.2f} ms/job  {1 / seconds:7.1f} jobs/s{ratio}")


if __name__ == "__main__":
    asyncio.run(main())
