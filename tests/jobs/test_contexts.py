"""The run context's callbacks: a nudge is kept until the attempt takes it, reaches only
the attempt running now, and the webhook URL names the job."""

from __future__ import annotations

import asyncio

from imagemill.jobs.contexts import Nudges, nudged, ref_for, webhook_url


async def test_a_nudge_is_kept_until_taken_then_the_next_one_is_waited_for() -> None:
    nudges = Nudges()
    with nudges.attempt("job_a") as nudge:
        assert nudges.nudge("job_a")
        assert nudges.nudge("job_a")  # twice before a look: one wake-up
        assert await nudged(nudge, 60.0)
        assert not await nudged(nudge, 0.0)


async def test_a_waiting_attempt_wakes_when_nudged() -> None:
    nudges = Nudges()
    with nudges.attempt("job_a") as nudge:
        waiting = asyncio.create_task(nudged(nudge, 60.0))
        await asyncio.sleep(0)  # it waits now
        assert not waiting.done()
        nudges.nudge("job_a")
        assert await asyncio.wait_for(waiting, 5.0)


async def test_a_nudge_reaches_only_the_attempt_running_now() -> None:
    nudges = Nudges()
    assert not nudges.nudge("job_a"), "nothing runs: dropped"
    with nudges.attempt("job_a") as first:
        pass
    assert not nudges.nudge("job_a"), "the attempt ended"
    assert not first.is_set()
    with nudges.attempt("job_a") as older, nudges.attempt("job_a") as newer:
        assert nudges.of("job_a") is newer
        nudges.nudge("job_a")
        assert newer.is_set() and not older.is_set()
    assert nudges.of("job_a") is not newer, "an attempt that ended leaves nothing behind"


def test_the_webhook_url_names_the_job() -> None:
    assert webhook_url(None, "replicate", "job_a") is None
    assert (
        webhook_url("https://images.example.com/", "replicate", "job_a")
        == "https://images.example.com/v1/providers/replicate/webhook?job=job_a"
    )


def test_a_saved_request_id_is_resumed_only_by_its_own_model() -> None:
    assert ref_for("replicate/a p1,p2", "replicate/a") == "p1,p2"
    assert ref_for("replicate/a p1", "replicate/b") is None
    assert ref_for(None, "replicate/a") is None
