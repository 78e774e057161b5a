"""Streams of job events: the log from a position, then live, with no gap and no repeat.

A stream subscribes to the bus first, then reads the log from the position it resumes
after, then follows the bus. Events already read are skipped by their position; when
the bus cannot vouch for the next one (a gap in a job's sequence, a subscriber that
fell behind, or a quiet spell in which another process may have written), the stream
reads the log again. A stream of all an owner's jobs has no sequence to check: when
several processes feed the bus, each event on it only rings the bell, and the log
(whose positions grow in commit order) says what is new. So a client reconnecting with
``Last-Event-ID`` gets every later event exactly once, in order.

Streams yield batches: everything available at once (a replay, or what queued up while
the client was being written to), so a busy stream costs one write per batch, not per
event. An empty batch means nothing new (after a quiet spell of ``RECHECK_SECONDS``).

Live progress reports (``live``: not stored, ``jobs/progress.py``) are passed on as they
arrive, never read from the log; they carry the position of the job's last stored
event, so a job stream knows whether one comes in order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from imagemill.db.repository import Repository
from imagemill.domain import JobStatus
from imagemill.events.bus import Event, EventBus, Subscription

RECHECK_SECONDS = 5.0  # with nothing on the bus, read the log again this often


async def job_events(
    repo: Repository,
    bus: EventBus,
    job_id: str,
    after_seq: int = 0,
    recheck: float = RECHECK_SECONDS,
) -> AsyncIterator[list[Event]]:
    """One job's events after ``after_seq``, until (and including) a ``done`` that is the
    last of them: a job its owner retried goes on after its first ``done``."""
    with bus.subscribe({job_id}) as live:
        last = after_seq
        while True:
            live.resync()
            logged = await repo.events_after(job_id, last)
            yield logged  # empty after a quiet spell: the caller may send a keep-alive
            if logged:
                last = logged[-1]["seq"]
                if logged[-1]["type"] == "done":
                    return
            while (batch := await _available(live, recheck)) is not None:
                fresh, gap = _following(batch, last)
                yield fresh
                stored = [e for e in fresh if not e.get("live")]
                if stored:
                    last = stored[-1]["seq"]
                    if stored[-1]["type"] == "done":
                        return
                if gap:
                    break  # one is missing: the log has it


async def owner_events(
    repo: Repository,
    bus: EventBus,
    owner_id: str,
    after_id: int | None = None,
    recheck: float = RECHECK_SECONDS,
) -> AsyncIterator[list[Event]]:
    """Every event of the owner's jobs after log position ``after_id`` (``None``: from
    now on), including jobs submitted later. Never ends."""
    with bus.subscribe(owner_id=owner_id) as live:
        last = await repo.last_event_id(owner_id) if after_id is None else after_id
        while True:
            live.resync()
            logged = await repo.owner_events_after(owner_id, last)
            yield logged  # empty after a quiet spell: the caller may send a keep-alive
            while logged:
                last = logged[-1]["id"]
                if logged := await repo.owner_events_after(owner_id, last):
                    yield logged
            while (batch := await _available(live, recheck)) is not None:
                if not bus.in_log_order:
                    # 30 may arrive before 29: take the bus as a doorbell, read the log
                    # (live reports are not in it: they go as they come).
                    if reports := [e for e in batch if e.get("live")]:
                        yield reports
                    break
                fresh = [e for e in batch if e.get("live") or e["id"] > last]
                yield fresh
                stored = [e for e in fresh if not e.get("live")]
                if stored:
                    last = stored[-1]["id"]


async def batch_events(
    repo: Repository,
    bus: EventBus,
    batch_id: str,
    job_ids: set[str],
    tally: Callable[[], Awaitable[dict[str, Any]]],
    after_id: int = 0,
    recheck: float = RECHECK_SECONDS,
) -> AsyncIterator[list[Event]]:
    """Every event of a batch's items after log position ``after_id``, each change of the
    batch's tally as a ``batch`` event (no ``id``: not in the log), and a final ``done``
    (``batch_id``, ``status``) once every item ended."""
    with bus.subscribe(job_ids) as live:
        last = after_id
        shown: dict[str, Any] | None = None
        while True:
            live.resync()
            while logged := await repo.batch_events_after(batch_id, last):
                yield logged
                last = logged[-1]["id"]
            now = await tally()
            if now != shown:
                shown = now
                yield [{"type": "batch", "data": now}]
            if JobStatus(now["status"]).terminal:
                # The last item's own events may have landed after the log was read.
                while logged := await repo.batch_events_after(batch_id, last):
                    yield logged
                    last = logged[-1]["id"]
                yield [{"type": "done", "data": {"batch_id": batch_id, "status": now["status"]}}]
                return
            arrived = await _available(live, recheck)
            # Live reports go as they come; stored events are read from the log, in order.
            yield [e for e in arrived if e.get("live")] if arrived is not None else []


def _following(batch: list[Event], last: int) -> tuple[list[Event], bool]:
    """The events of ``batch`` that follow position ``last`` of one job's log, in order,
    and whether one is missing (the log has it). A live report (not stored: ``live``)
    follows when it was made right after the stored event ``last``; an older one is
    dropped, a newer one means a stored event was missed."""
    fresh: list[Event] = []
    for event in batch:
        if event.get("live"):
            if event["seq"] > last:
                return fresh, True
            if event["seq"] == last:
                fresh.append(event)
        elif event["seq"] == last + 1:
            fresh.append(event)
            last += 1
        elif event["seq"] > last:
            return fresh, True
    return fresh, False


async def _available(live: Subscription, recheck: float) -> list[Event] | None:
    """The next event and all queued behind it; ``None`` after a quiet spell or when the
    subscriber fell behind (either way the log is read next)."""
    first = await live.next(within=recheck)
    if first is None:
        return None
    batch = [first]
    while not live.queue.empty():
        batch.append(live.queue.get_nowait())
    return batch
