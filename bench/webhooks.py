"""Replicate's webhook: how soon after it a job succeeds, against polling alone.

The Replicate fake (``tests/fakes/replicate.py``) runs in this script's process; its
predictions end when the script says, each a chosen time after it was created (spread
over ``--min-seconds`` to ``--max-seconds``, so the adapter's polls, 0.25 s apart at
first and then half as long again each time up to 5 s, are caught anywhere in their
interval). imagemill runs as people run it, in processes of its own:

- **polls only** (the baseline): ``imagemill serve`` without a public URL, so Replicate
  is given no webhook; latency: from the prediction's end to the job's ``finished_at``.
- **webhook, embedded**: ``imagemill serve`` with ``IMAGEMILL_PUBLIC_URL``: the webhook
  reaches the process that runs the job; latency: from the webhook's POST leaving the
  fake to the job's ``finished_at``.
- **webhook, distributed**: ``imagemill serve --no-workers`` receives the webhook and
  one ``imagemill worker`` runs the job (PostgreSQL + Redis); the same latency.

    .venv/bin/python bench/webhooks.py [--jobs 20] [--min-seconds 2] [--max-seconds 12]
                                       [--modes polls embedded distributed]

Each row gives the medians (and a 90th percentile) of the latencies, each as a ratio to
the baseline's median (from the prediction's end), measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import statistics
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
from common import free_port, imagemill_serve

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fakes.replicate import FakePrediction, FakeReplicate
from fakes.server import serve

POSTGRES = os.environ.get("IMAGEMILL_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
REDIS = os.environ.get("IMAGEMILL_BENCH_REDIS", "redis://127.0.0.1:6379/0")
TOKEN = "r8_bench"
MODEL = "replicate/ideogram-ai/ideogram-v2"


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(f"{POSTGRES}/test")
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@asynccontextmanager
async def _imagemill(mode: str, workdir: Path) -> AsyncIterator[str]:
    """The server (and worker) of ``mode``; yields the API's URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = {} if mode == "polls" else {"public_url": url}
    async with AsyncExitStack() as stack:
        if mode == "distributed":
            database = f"imagemill_webhooks_{uuid.uuid4().hex[:8]}"
            await _admin(f"CREATE DATABASE {database}")
            stack.push_async_callback(_admin, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
            settings |= {
                "database_url": POSTGRES.replace("postgresql://", "postgresql+asyncpg://")
                + f"/{database}",
                "broker_url": REDIS,
                "broker_queue": f"imagemill.bench.{uuid.uuid4().hex[:8]}",
                "storage_url": (workdir / "blobs").as_uri(),
                "workers": "false",
            }
        await stack.enter_async_context(imagemill_serve(workdir / "api", port, **settings))
        if mode == "distributed":
            env = {**os.environ, **{f"IMAGEMILL_{k.upper()}": v for k, v in settings.items()}}
            env["IMAGEMILL_DATA_DIR"] = str(workdir / "worker")
            with (workdir / "worker.log").open("wb") as log:
                worker = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "imagemill", "worker", env=env, stdout=log, stderr=log
                )

            async def stop() -> None:
                worker.terminate()
                await worker.wait()

            stack.push_async_callback(stop)
        yield url


async def _prediction_of(fake: FakeReplicate, prompt: str) -> FakePrediction:
    """The prediction of the job with ``prompt``, once created."""
    while True:
        for prediction in list(fake.predictions.values()):
            if prediction.input.get("prompt") == prompt:
                return prediction
        await asyncio.sleep(0.01)


async def _sent_at(fake: FakeReplicate, prediction_id: str) -> datetime:
    """When the prediction's webhook left, once it is logged (on its answer)."""
    while True:
        for delivery in list(fake.webhook_deliveries):
            if delivery.prediction_id == prediction_id:
                return delivery.sent_at
        await asyncio.sleep(0.01)


async def _latency(
    http: httpx.AsyncClient, fake: FakeReplicate, prompt: str, after: float, webhook: bool
) -> tuple[float, float | None]:
    """Seconds to the job's end from the prediction's end, and from its webhook's leaving
    (``None`` without one); the prediction ends ``after`` seconds after it was created."""
    job_id = (await http.post("/v1/jobs", json={"model": MODEL, "prompt": prompt})).json()["id"]
    prediction = await _prediction_of(fake, prompt)
    age = (datetime.now(UTC) - prediction.created_at).total_seconds()
    await asyncio.sleep(max(0.0, after - age))
    await asyncio.to_thread(fake.complete_now, prediction.id)
    while (job := (await http.get(f"/v1/jobs/{job_id}")).json())["status"] != "succeeded":
        assert job["status"] in ("queued", "running"), job
        await asyncio.sleep(0.05)
    finished = datetime.fromisoformat(job["finished_at"])
    assert prediction.completed_at is not None
    from_end = (finished - prediction.completed_at).total_seconds()
    if not webhook:
        return from_end, None
    return from_end, (finished - await _sent_at(fake, prediction.id)).total_seconds()


async def measure(
    mode: str, fake: FakeReplicate, delays: list[float]
) -> list[tuple[float, float | None]]:
    """Each job's latencies (``_latency``), all jobs at once, one per delay."""
    with tempfile.TemporaryDirectory() as tmp:
        async with (
            _imagemill(mode, Path(tmp)) as url,
            httpx.AsyncClient(base_url=url, timeout=60) as http,
        ):
            fake.queue_run_seconds(*[math.inf] * len(delays))
            runs = [
                _latency(http, fake, f"{mode} {i}", after, mode != "polls")
                for i, after in enumerate(delays)
            ]
            return list(await asyncio.gather(*runs))


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=20, help="jobs per mode, all at once")
    parser.add_argument("--min-seconds", type=float, default=2.0)
    parser.add_argument("--max-seconds", type=float, default=12.0)
    parser.add_argument(
        "--modes", nargs="+", default=["polls", "embedded", "distributed"], help="polls first"
    )
    args = parser.parse_args()
    fake = FakeReplicate(token=TOKEN)
    rng = random.Random(7)
    delays = [rng.uniform(args.min_seconds, args.max_seconds) for _ in range(args.jobs)]
    results = {}
    with serve(fake.app) as fake_url:
        os.environ |= {"REPLICATE_API_TOKEN": TOKEN, "REPLICATE_BASE_URL": fake_url}
        for mode in args.modes:
            results[mode] = await measure(mode, fake, delays)
    print(
        f"{args.jobs} jobs of {MODEL}, each prediction ending "
        f"{args.min_seconds:g} to {args.max_seconds:g} s after it was created"
    )
    base = statistics.median(end for end, _ in results[args.modes[0]])
    print(f"{'':12s} {'the job succeeded after the webhook left':^40s}  from the prediction's end")
    for mode, latencies in results.items():
        from_end = statistics.median(end for end, _ in latencies)
        after_webhook = [sent for _, sent in latencies if sent is not None]
        if after_webhook:
            p50, p90 = statistics.median(after_webhook), _percentile(after_webhook, 0.9)
            column = f"p50 {p50 * 1e3:6.1f} ms, p90 {p90 * 1e3:6.1f} ms, {p50 / base:.3f}x"
        else:
            column = "(no webhook)"
        print(f"{mode:12s} {column:^40s}  p50 {from_end * 1e3:7.1f} ms, {from_end / base:.3f}x")


if __name__ == "__main__":
    asyncio.run(main())
