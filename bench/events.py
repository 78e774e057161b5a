"""Event latency: from a worker recording an event to an SSE client receiving it.

``imagemill serve`` runs in its own process on the embedded default; this script opens
N subscribers to ``GET /v1/events`` (every event of the caller's jobs), then submits
placeholder jobs that report progress every 100 ms, and measures, for every event each
subscriber receives, the time from the event's ``created_at`` (stamped by the worker
as it records the event) to its arrival. One subscriber is the baseline; the target
is p99 ≤ 100 ms with 200.

    .venv/bin/python bench/events.py [--subscribers 1 200] [--jobs 4] [--latency-ms 2000]
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
from httpx_sse import aconnect_sse


async def measure(url: str, subscribers: int, jobs: int, latency_ms: int) -> list[float]:
    """Latencies in seconds of every event every subscriber received."""
    latencies: list[float] = []
    expected_done = jobs
    connected = 0
    all_connected = asyncio.Event()
    limits = httpx.Limits(max_connections=subscribers + 4)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:

        async def subscribe() -> None:
            nonlocal connected
            done = 0
            async with aconnect_sse(http, "GET", "/v1/events") as source:
                connected += 1
                if connected == subscribers:
                    all_connected.set()
                async for sse in source.aiter_sse():
                    arrived = datetime.now(UTC)
                    if not sse.data:
                        continue
                    event = sse.json()
                    sent = datetime.fromisoformat(event["created_at"])
                    latencies.append((arrived - sent).total_seconds())
                    if event["type"] == "done":
                        done += 1
                        if done == expected_done:
                            return

        followers = [asyncio.create_task(subscribe()) for _ in range(subscribers)]
        await asyncio.wait_for(all_connected.wait(), 60)
        await asyncio.sleep(0.5)  # every stream is live before the first event
        for i in range(jobs):
            body = {
                "model": "placeholder",
                "prompt": f"latency {i}",
                "size": "64x64",
                "params": {"latency_ms": latency_ms},
            }
            (await http.post("/v1/jobs", json=body)).raise_for_status()
        await asyncio.wait_for(asyncio.gather(*followers), 120)
    return latencies


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, nargs="+", default=[1, 200])
    parser.add_argument("--jobs", type=int, default=4, help="jobs submitted at once")
    parser.add_argument("--latency-ms", type=int, default=2000, help="each job's duration")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        async with imagemill_serve(Path(tmp) / "data") as url:
            for count in args.subscribers:
                started = time.monotonic()
                latencies = await measure(url, count, args.jobs, args.latency_ms)
                rows.append((count, latencies, time.monotonic() - started))
    print(f"{args.jobs} placeholder jobs of {args.latency_ms} ms at once, events of all of them")
    base = statistics.median(rows[0][1])
    for count, latencies, took in rows:
        p50, p99 = statistics.median(latencies), _percentile(latencies, 0.99)
        print(
            f"{count:4d} subscribers: {len(latencies):6d} events received, "
            f"p50 {p50 * 1e3:6.1f} ms, p99 {p99 * 1e3:6.1f} ms, max {max(latencies) * 1e3:6.1f} ms"
            f"  (p50 {p50 / base:.1f}x one subscriber's; {took:.1f} s)"
        )


if __name__ == "__main__":
    asyncio.run(main())
