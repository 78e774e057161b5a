"""Many slow hosted jobs in flight at once, on one embedded ``imagemill serve``.

10,000 placeholder jobs with ``latency_ms: 30000`` (the placeholder's latency stands for
a hosted provider's call: the job waits, reporting progress 20 times on the way) are
submitted over HTTP, ``--in-flight`` requests at a time, to ``imagemill serve`` with
default settings (SQLite, local files, in-process workers). Reported:

- how long after the last submit the last job succeeded (the target: within 60 s,
  so the jobs ran side by side, not a few at a time);
- the server's peak RSS (``VmHWM``) and its CPU over the whole run;
- that a job's event stream still resumes: ``GET /v1/jobs/{id}/events`` with
  ``Last-Event-ID`` gives every later stored event once, in order, to ``done``.

    .venv/bin/python bench/inflight.py [--jobs 10000] [--latency-ms 30000] [--in-flight 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from common import imagemill_server

CLK_TCK = os.sysconf("SC_CLK_TCK")
SIZE = 64


def _status(pid: int, field: str) -> int:
    """A ``VmHWM``-style field of ``/proc/<pid>/status``, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


async def _submit_all(
    http: httpx.AsyncClient, jobs: int, latency_ms: int, in_flight: int
) -> list[str]:
    ids: list[str] = [""] * jobs
    pending = iter(range(jobs))

    async def submitter() -> None:
        for i in pending:
            body = {
                "model": "placeholder",
                "prompt": f"in flight {i}",
                "size": f"{SIZE}x{SIZE}",
                "params": {"latency_ms": latency_ms},
            }
            # A connection the server closes as the request goes out (its keep-alive
            # timer, late on a busy loop) is retried: the idempotency key makes it safe.
            for attempt in range(5):
                try:
                    response = await http.post(
                        "/v1/jobs", json=body, headers={"Idempotency-Key": f"inflight-{i}"}
                    )
                    break
                except (httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError):
                    if attempt == 4:
                        raise
            ids[i] = response.raise_for_status().json()["id"]
            if i % 1000 == 999:
                print(f"  {i + 1} submitted", flush=True)

    await asyncio.gather(*(submitter() for _ in range(in_flight)))
    return ids


async def _count(http: httpx.AsyncClient, status: str) -> bool:
    response = await http.get("/v1/jobs", params={"status": status, "limit": 1})
    return bool(response.raise_for_status().json()["data"])


async def _resumes(http: httpx.AsyncClient, job_id: str) -> str:
    """Whether the job's stream, resumed after its second stored event, gives every later
    stored event once and in order, to ``done``: '' if so, else what went wrong."""
    everything = await _stored_events(http, job_id, None)
    resumed = await _stored_events(http, job_id, 2)
    if [e["seq"] for e in everything] != list(range(1, len(everything) + 1)):
        return f"the full stream's stored events are not 1..n: {[e['seq'] for e in everything]}"
    if [e["seq"] for e in resumed] != [e["seq"] for e in everything[2:]]:
        return f"resumed after 2: {[e['seq'] for e in resumed]}"
    if not resumed or resumed[-1]["type"] != "done":
        return "the resumed stream did not end with done"
    return ""


async def _stored_events(
    http: httpx.AsyncClient, job_id: str, after: int | None
) -> list[dict[str, object]]:
    headers = {"Last-Event-ID": str(after)} if after is not None else {}
    found = []
    async with http.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                event = json.loads(line[6:])
                if not event.get("live"):
                    found.append(event)
    return found


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=int, default=30_000)
    parser.add_argument("--in-flight", type=int, default=64, help="concurrent submits")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            await _run(args, Path(tmp))
        except BaseException:
            log = Path(tmp) / "inflight" / "server.log"
            lines = log.read_text().splitlines()
            notable = [line for line in lines if " INFO " not in line][-40:]
            print("server log, beyond INFO:\n" + "\n".join(notable))
            raise


async def _run(args: argparse.Namespace, tmp: Path) -> None:
    if True:
        async with (
            imagemill_server(tmp / "inflight") as (url, server),
            httpx.AsyncClient(
                base_url=url,
                limits=httpx.Limits(max_connections=args.in_flight),
                timeout=httpx.Timeout(120),
            ) as http,
        ):
            cpu_before = _cpu_seconds(server.pid)
            started = time.monotonic()
            ids = await _submit_all(http, args.jobs, args.latency_ms, args.in_flight)
            submitted = time.monotonic()
            last_submit = datetime.now(UTC)
            print(f"{args.jobs} jobs submitted in {submitted - started:.1f} s", flush=True)
            while await _count(http, "queued") or await _count(http, "running"):
                await asyncio.sleep(1.0)
                print(f"  {time.monotonic() - submitted:5.0f} s after the last submit", flush=True)
            done = time.monotonic()
            cpu = _cpu_seconds(server.pid) - cpu_before
            peak_rss = _status(server.pid, "VmHWM") / 1024
            failed = await _count(http, "failed")
            finished = [
                datetime.fromisoformat(
                    (await http.get(f"/v1/jobs/{job_id}")).raise_for_status().json()["finished_at"]
                )
                for job_id in random.sample(ids, min(200, len(ids)))
            ]
            problem = await _resumes(http, random.choice(ids))
    print(
        f"\n{args.jobs} placeholder jobs, latency_ms={args.latency_ms}, {SIZE}x{SIZE}, "
        f"default settings, {args.in_flight} submits in flight"
    )
    print(f"submitting took          {submitted - started:7.1f} s")
    print(f"last job done after      {done - submitted:7.1f} s from the last submit (polled)")
    print(f"latest finish (sampled)  {(max(finished) - last_submit).total_seconds():7.1f} s")
    print(f"any failed               {failed}")
    print(f"peak RSS                 {peak_rss:7.0f} MiB")
    print(f"server CPU               {cpu:7.1f} s ({cpu * 1e3 / args.jobs:.2f} ms per job)")
    print(f"events resume            {'yes' if not problem else 'NO: ' + problem}")


if __name__ == "__main__":
    asyncio.run(main())
