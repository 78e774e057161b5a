"""The state machine: the allowed table, ``check`` and the compare-and-set ``transition``."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, select

from imagemill.db.appending import Appending
from imagemill.db.tables import jobs
from imagemill.domain import JobStatus, Submission
from imagemill.errors import Conflict, IllegalTransition, ProviderError
from imagemill.jobs import states
from imagemill.jobs.service import utcnow
from imagemill.jobs.states import ALLOWED, Transition, check, error_params, transition
from imagemill.runtime import Runtime

Q, R, S, F, C = (
    JobStatus.QUEUED,
    JobStatus.RUNNING,
    JobStatus.SUCCEEDED,
    JobStatus.FAILED,
    JobStatus.CANCELED,
)


async def _queued(runtime: Runtime) -> str:
    owner = await runtime.local_owner()
    [job] = await runtime.service.submit(
        owner.id, Submission(model="placeholder", prompt="p", size="32x32")
    )
    return job.id


def test_every_status_has_a_row_and_a_finished_job_leaves_only_by_its_owners_retry() -> None:
    assert set(ALLOWED) == set(JobStatus)
    for status, targets in ALLOWED.items():
        assert targets <= ({Q} if status.terminal else set(JobStatus)), status
    assert ALLOWED[S] == frozenset(), "a success is final"


def test_the_documented_edges_are_allowed() -> None:
    assert ALLOWED[Q] >= {R, C}
    assert ALLOWED[R] >= {S, F, C, Q}
    assert ALLOWED[F] == ALLOWED[C] == {Q}  # the owner's retry


@pytest.mark.parametrize(
    ("source", "target"),
    [(S, R), (S, Q), (F, R), (F, S), (C, R), (C, S), (S, C)],
)
def test_check_rejects_leaving_a_terminal_state(source: JobStatus, target: JobStatus) -> None:
    with pytest.raises(IllegalTransition) as raised:
        check([source], target)
    assert isinstance(raised.value, Conflict)
    assert str(source) in raised.value.message and str(target) in raised.value.message


def test_check_rejects_when_any_source_is_illegal() -> None:
    check([Q, R], C)
    with pytest.raises(IllegalTransition):
        check([Q, S], C)


def test_an_illegal_transition_cannot_even_be_declared() -> None:
    with pytest.raises(IllegalTransition):
        Transition((S,), R)
    with pytest.raises(IllegalTransition):
        Transition((Q, C), F)


@pytest.mark.parametrize(
    "change",
    [
        states.CLAIM,
        states.SUCCEED,
        states.RETRY,
        states.FAIL_ATTEMPT,
        states.FAIL,
        states.RELEASE,
        states.CANCEL,
        states.EXPIRE,
        states.OVERDUE,
    ],
)
def test_every_declared_transition_is_allowed(change: Transition) -> None:
    assert all(change.target in ALLOWED[source] for source in change.sources)


async def test_transition_from_the_wrong_state_changes_nothing(stepped: Runtime) -> None:
    job_id = await _queued(stepped)
    published = Appending()
    changed = await stepped.db.write(
        lambda conn: transition(
            conn,
            states.SUCCEED,
            job_id,
            now=utcnow(),
            published=published,
            lease_owner="w1",
            params={"cost_usd": 0.0},
            new_events=[("done", {})],
        )
    )
    assert changed is None
    assert not published
    job = await stepped.repo.get_job(job_id)
    assert job.status is Q
    assert [e["type"] for e in await stepped.repo.events_after(job_id, 0)] == ["status"]


async def test_transition_is_fenced_on_the_lease_owner(stepped: Runtime) -> None:
    job_id = await _queued(stepped)
    now = utcnow()
    assert await stepped.repo.claim(job_id, "w1", now + timedelta(seconds=30), now) is not None
    published = Appending()

    def fail_as(worker: str) -> Any:
        def work(conn: Connection) -> Any:
            row = transition(
                conn,
                states.FAIL_ATTEMPT,
                job_id,
                now=now,
                published=published,
                lease_owner=worker,
                params=error_params(ProviderError("boom")),
                new_events=[("done", {})],
            )
            published.store(conn)
            return row

        return work

    assert await stepped.db.write(fail_as("w2")) is None
    assert not published
    row = await stepped.db.write(fail_as("w1"))
    assert row is not None
    assert (row.status, row.error_code, row.event_seq) == (F.value, "provider_error", 3)
    assert [(e["type"], e["seq"]) for e in published] == [("done", 3)]
    stored = await stepped.repo.events_after(job_id, 0)
    assert [(e["type"], e["seq"], e["id"]) for e in stored][-1] == (
        "done",
        3,
        published.events[0]["id"],
    )


def test_a_fenced_transition_needs_the_lease_owner() -> None:
    with pytest.raises(ValueError, match="lease owner"):
        transition(
            None,  # type: ignore[arg-type]  # refused before any SQL
            states.SUCCEED,
            "job",
            now=utcnow(),
            published=Appending(),
        )


async def test_two_concurrent_claims_exactly_one_wins(stepped: Runtime) -> None:
    job_id = await _queued(stepped)
    now = utcnow()
    lease = now + timedelta(seconds=30)

    first, second = await asyncio.gather(
        stepped.repo.claim(job_id, "worker-a", lease, now),
        stepped.repo.claim(job_id, "worker-b", lease, now),
    )

    winners = [c for c in (first, second) if c is not None]
    assert len(winners) == 1
    job = await stepped.repo.get_job(job_id)
    assert job.lease_owner == winners[0].lease_owner
    assert job.attempt == 1
    statuses = [e["data"]["status"] for e in await stepped.repo.events_after(job_id, 0)]
    assert statuses == ["queued", "running"]


async def test_events_of_a_job_have_consecutive_sequence_numbers(stepped: Runtime) -> None:
    owner = await stepped.local_owner()
    [job] = await stepped.service.submit(
        owner.id,
        Submission(model="placeholder", prompt="p", size="32x32", n=2, params={"latency_ms": 250}),
    )
    assert await stepped.worker.run_one(job.id) is S

    logged = await stepped.repo.events_after(job.id, 0)
    assert [e["seq"] for e in logged] == list(range(1, len(logged) + 1))
    types = [e["type"] for e in logged]
    assert types[0] == "status" and types[-1] == "done"
    assert types.count("output") == 2
    query = select(jobs.c.event_seq).where(jobs.c.id == job.id)
    event_seq = await stepped.db.read(lambda conn: conn.execute(query).scalar_one())
    assert event_seq == len(logged)
