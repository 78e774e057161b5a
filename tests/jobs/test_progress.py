"""Progress at scale: every report live at once, each job's latest stored at most once an
interval, a bounded number stored a tick across all jobs, and nothing for a job that is
not held any more; across processes (PostgreSQL) the live reports travel too."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

from imagemill.domain import Submission
from imagemill.events.bus import Event
from imagemill.jobs.progress import ProgressLog
from imagemill.jobs.service import utcnow
from imagemill.runtime import Runtime

HOUR = 3600.0  # a tick that never comes by itself: the test ticks


async def _submitted(runtime: Runtime) -> str:
    owner = await runtime.local_owner()
    [job] = await runtime.service.submit(
        owner.id, Submission(model="placeholder", prompt="p", size="16x16")
    )
    return job.id


async def _claim(runtime: Runtime, job_id: str, worker: str = "w1") -> None:
    now = utcnow()
    assert await runtime.repo.claim(job_id, worker, now + timedelta(minutes=5), now)


async def _stored_progress(runtime: Runtime, job_id: str) -> list[dict[str, Any]]:
    events = await runtime.repo.events_after(job_id, 0)
    return [e for e in events if e["type"] == "progress"]


async def test_every_report_goes_live_and_the_latest_is_stored_once_an_interval(
    stepped: Runtime,
) -> None:
    progress = ProgressLog(stepped.repo, stepped.bus, interval=0.5, tick_seconds=HOUR)
    job_id = await _submitted(stepped)
    with progress.track(job_id, "w1"), stepped.bus.subscribe({job_id}) as live:
        await _claim(stepped, job_id)
        claimed_seq = (await stepped.repo.events_after(job_id, 0))[-1]["seq"]
        live.resync()
        for step in range(50):
            progress.report(job_id, step / 100, f"step {step}")
        seen = [live.queue.get_nowait() for _ in range(live.queue.qsize())]
        assert [e["data"]["progress"] for e in seen] == [step / 100 for step in range(50)]
        assert all(e["live"] and e["id"] is None and e["seq"] == claimed_seq for e in seen)
        assert await _stored_progress(stepped, job_id) == []  # none stored yet

        await progress.tick()
        started = time.monotonic()
        [first] = await _stored_progress(stepped, job_id)
        assert first["data"] == {"progress": 0.49, "message": "step 49"}  # the latest only

        progress.report(job_id, 0.9, "later")
        await progress.tick()  # too soon after the last one stored
        if time.monotonic() - started < 0.5:
            assert len(await _stored_progress(stepped, job_id)) == 1
        await asyncio.sleep(0.5)
        await progress.tick()
        stored = await _stored_progress(stepped, job_id)
        assert [e["data"]["progress"] for e in stored] == [0.49, 0.9]
        job = await stepped.repo.get_job(job_id)
        assert (job.progress, job.progress_message) == (0.9, "later")
        # The live report made after the first stored one carried its position.
        after_first = [e for e in _drain(live) if e.get("live")]
        assert [e["seq"] for e in after_first] == [first["seq"]]


def _drain(live: Any) -> list[Event]:
    return [live.queue.get_nowait() for _ in range(live.queue.qsize())]


async def test_a_tick_stores_a_bounded_number_the_longest_waiting_first(
    stepped: Runtime,
) -> None:
    progress = ProgressLog(
        stepped.repo, stepped.bus, interval=0.0, per_second=20, tick_seconds=0.25
    )
    progress.tick_seconds = HOUR  # five a tick (20 a second at 4 ticks a second)
    assert progress.per_tick == 5
    job_ids = [await _submitted(stepped) for _ in range(12)]
    tracking = [progress.track(job_id, "w1") for job_id in job_ids]
    for context in tracking:
        context.__enter__()
    try:
        for job_id in job_ids:
            await _claim(stepped, job_id)
            progress.report(job_id, 0.5, None)

        counts = []
        for _ in range(3):
            await progress.tick()
            stored = [bool(await _stored_progress(stepped, j)) for j in job_ids]
            counts.append(sum(stored))
        assert counts == [5, 10, 12]
    finally:
        for context in tracking:
            context.__exit__(None, None, None)


async def test_reports_of_a_job_not_held_here_are_not_stored(stepped: Runtime) -> None:
    progress = ProgressLog(stepped.repo, stepped.bus, interval=0.0, tick_seconds=HOUR)
    taken, ended = await _submitted(stepped), await _submitted(stepped)
    with progress.track(taken, "w1"):
        await _claim(stepped, taken)
        later = utcnow() + timedelta(hours=1)  # another worker took it after a stall
        assert await stepped.repo.claim(taken, "w2", later + timedelta(minutes=5), later)
        progress.report(taken, 0.5, None)
        await progress.tick()
    with progress.track(ended, "w1"):
        await _claim(stepped, ended)
    with stepped.bus.subscribe({ended}) as live:
        progress.report(ended, 0.5, None)  # its attempt ended: nothing, not even live
        assert live.queue.empty()

    assert await _stored_progress(stepped, taken) == []
    assert await _stored_progress(stepped, ended) == []


async def test_placeholder_progress_of_many_jobs_is_not_a_write_each(
    make_runtime: Any,
) -> None:
    """60 jobs reporting 5 steps each in half a second: 300 reports, all live, while the
    log keeps one per job per 2 s at most."""
    runtime = await make_runtime()
    owner = await runtime.local_owner()
    work = {"model": "placeholder", "size": "16x16", "params": {"latency_ms": 500}}
    jobs = [
        (await runtime.service.submit(owner.id, Submission(prompt=f"p{i}", **work)))[0]
        for i in range(60)
    ]
    with runtime.bus.subscribe({job.id for job in jobs}) as live:
        started = time.monotonic()
        await asyncio.gather(*(runtime.worker.run_one(job.id) for job in jobs))
        took = time.monotonic() - started
        reports = [e for e in _drain(live) if e.get("live")]
    assert len(reports) == 60 * 5  # each step went live
    stored = [len(await _stored_progress(runtime, job.id)) for job in jobs]
    assert max(stored) <= 1 + took // 2, "a job's progress is stored once per 2 s at most"
