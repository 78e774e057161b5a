"""The runtime: wiring, start and stop, the local owner, and jobs that outlive a process."""

from __future__ import annotations

from pathlib import Path

from imagemill.config import Settings
from imagemill.db.migrate import current_revision
from imagemill.domain import JobStatus, Submission
from imagemill.runtime import LOCAL_OWNER, Runtime


async def test_start_migrates_and_stop_closes(settings: Settings) -> None:
    runtime = Runtime(settings, run_workers=False, sweep=False)
    await runtime.start()
    assert await current_revision(runtime.db) is not None
    assert (settings.data_dir / "imagemill.db").exists()
    assert (settings.data_dir / "blobs").is_dir()
    assert runtime.registry.resolve("placeholder")[1].id == "placeholder"
    await runtime.stop()
    assert runtime.http.is_closed


async def test_the_local_owner_is_stable(settings: Settings) -> None:
    async with Runtime(settings, run_workers=False, sweep=False) as runtime:
        first = await runtime.local_owner()
        assert first == await runtime.local_owner()
        assert first.name == LOCAL_OWNER
    async with Runtime(settings, run_workers=False, sweep=False) as restarted:
        assert await restarted.local_owner() == first


async def test_a_started_runtime_runs_submitted_jobs(runtime: Runtime) -> None:
    owner = await runtime.local_owner()
    [job] = await runtime.service.submit(
        owner.id, Submission(model="placeholder", prompt="p", size="40x30", n=2)
    )
    [done] = await runtime.service.wait(owner.id, [job.id], timeout=20)
    assert done.status is JobStatus.SUCCEEDED
    assert [(o.width, o.height) for o in done.outputs] == [(40, 30), (40, 30)]


async def test_jobs_left_queued_by_a_stopped_process_run_after_a_restart(
    settings: Settings,
) -> None:
    async with Runtime(settings, run_workers=False, sweep=False) as first:
        owner = await first.local_owner()
        [job] = await first.service.submit(owner.id, Submission(model="placeholder", prompt="p"))
    # The in-memory queue died with the first runtime; the start-up sweep re-sends the job.
    async with Runtime(settings) as second:
        [done] = await second.service.wait(owner.id, [job.id], timeout=20)
    assert done.status is JobStatus.SUCCEEDED


async def test_a_runtime_without_workers_leaves_jobs_queued(
    settings: Settings, tmp_path: Path
) -> None:
    async with Runtime(settings, run_workers=False) as runtime:
        owner = await runtime.local_owner()
        [job] = await runtime.service.submit(owner.id, Submission(model="placeholder", prompt="p"))
        [still] = await runtime.service.wait(owner.id, [job.id], timeout=0.3)
    assert still.status is JobStatus.QUEUED
