"""Notifications between processes: events travel whole when they fit, else marked
partial (subscribers then read the log), and a receiving bus treats them accordingly;
nudges reach the receiving process's attempts, never the sender's twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from datetime import UTC, datetime

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from imagemill.events import fanout as fanout_module
from imagemill.events.bus import EventBus
from imagemill.events.fanout import (
    CHANNEL,
    MAX_PAYLOAD,
    NUDGES,
    PostgresFanout,
    notification,
    nudge_notification,
    numbered,
)


def _event(seq: int, data: dict[str, object]) -> dict[str, object]:
    return {
        "id": 100 + seq,
        "job_id": "job_a",
        "seq": seq,
        "owner_id": "own_1",
        "type": "progress",
        "data": data,
        "created_at": datetime(2026, 11, 21, tzinfo=UTC),
        "_sse_seq": b"cached bytes stay home",
    }


def test_small_events_travel_whole_without_local_caches() -> None:
    payload = json.loads(notification("proc_1", [_event(1, {"progress": 0.5})]))
    assert payload["origin"] == "proc_1"
    [event] = payload["events"]
    assert event["data"] == {"progress": 0.5} and "partial" not in event
    assert "_sse_seq" not in event


def test_big_events_travel_without_their_data_marked_partial() -> None:
    big = _event(2, {"image": "x" * (MAX_PAYLOAD * 2)})
    raw = notification("proc_1", [big])
    assert len(raw.encode()) <= MAX_PAYLOAD
    [event] = json.loads(raw)["events"]
    assert event["partial"] is True and event["data"] is None and event["seq"] == 2


def test_many_events_become_one_nudge_per_job() -> None:
    many = [_event(seq, {"message": "y" * 200}) for seq in range(1, 200)]
    raw = notification("proc_1", many)
    assert len(raw.encode()) <= MAX_PAYLOAD
    assert json.loads(raw)["events"] == [{"job_id": "job_a", "owner_id": "own_1", "partial": True}]


def _unnumbered(job_id: str, seq: int, data: dict[str, object]) -> dict[str, object]:
    event = {**_event(seq, data), "job_id": job_id}
    del event["id"]
    return event


@pytest.mark.parametrize(
    ("count", "data", "form"),
    [
        (3, {"progress": 0.5}, "whole"),
        (1, {"image": "x" * MAX_PAYLOAD}, "slim"),
        (40, {"message": "y" * 150}, "slim"),
        (199, {"message": "y" * 200}, "nudge"),
    ],
)
def test_a_payload_numbered_later_fits_with_the_longest_ids_and_the_receiver_numbers_them(
    count: int, data: dict[str, object], form: str
) -> None:
    """Stored events' ids are appended by the statement that stores them: the payload
    leaves room for ids of 19 digits, and a receiver gives each event its own."""
    events = [_unnumbered(f"job_{'zyx'[i % 3]}", i, data) for i in range(1, count + 1)]
    head = notification("proc_other", numbered(events), numbered_later=True)
    ids = [10**18 + index for index in range(count)]
    raw = head + json.dumps(ids) + "}"
    assert len(raw.encode()) <= MAX_PAYLOAD
    message = json.loads(raw)
    partial = [event.get("partial", False) for event in message["events"]]
    assert partial == [form != "whole"] * len(message["events"])
    bus = EventBus()
    seen: list[dict[str, object]] = []
    bus.add_listener(seen.append)
    PostgresFanout(make_url("postgresql+asyncpg://u@h/db"), bus, origin="proc_me")._received(
        None, 1, CHANNEL, raw
    )
    if form == "nudge":
        assert all("id" not in event and "seq" not in event for event in seen)
        return
    # Ids follow the events by job id, byte by byte, then by sequence number.
    expected = dict(zip([(e["job_id"], e["seq"]) for e in numbered(events)], ids, strict=True))
    assert {(e["job_id"], e["seq"]): e["id"] for e in seen} == expected


def test_a_receiver_publishes_others_events_and_skips_its_own() -> None:
    bus = EventBus()
    fanout = PostgresFanout(make_url("postgresql+asyncpg://u@h/db"), bus, origin="proc_me")
    seen: list[dict[str, object]] = []
    bus.add_listener(seen.append)

    fanout._received(None, 1, "imagemill_events", notification("proc_me", [_event(1, {})]))
    fanout._received(None, 1, "imagemill_events", notification("proc_other", [_event(2, {})]))

    assert [e["seq"] for e in seen] == [2]
    assert seen[0]["created_at"] == datetime(2026, 11, 21, tzinfo=UTC)
    assert fanout.dsn == "postgresql://u@h/db"


def test_a_partial_event_makes_subscribers_read_the_log() -> None:
    bus = EventBus()
    with bus.subscribe({"job_a"}) as subscription:
        bus.publish([{"job_id": "job_a", "owner_id": "own_1", "partial": True}])
        assert subscription.lagged and subscription.queue.empty()


def test_a_receiver_passes_on_others_nudges_and_skips_its_own() -> None:
    nudged: list[str] = []
    url = make_url("postgresql+asyncpg://u@h/db")
    fanout = PostgresFanout(url, EventBus(), origin="proc_me", on_nudge=nudged.append)

    fanout._nudged(None, 1, NUDGES, nudge_notification("proc_me", "job_mine"))
    fanout._nudged(None, 1, NUDGES, nudge_notification("proc_other", "job_theirs"))
    fanout._nudged(None, 1, NUDGES, "not json")
    fanout._nudged(None, 1, NUDGES, '{"origin": "proc_other"}')

    assert nudged == ["job_theirs"]


async def _moved_off(fanout: PostgresFanout, first: asyncpg.Connection) -> bool:
    """Whether the fan-out listens on a connection other than ``first`` within ~10 s."""
    for _ in range(200):
        if fanout._connection not in (None, first):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_listener_whose_connection_is_lost_listens_again(postgres_url: str) -> None:
    """Other processes' events keep arriving after the server dropped the listening
    connection (a restart, a proxy's idle timeout): it is opened again."""
    bus = EventBus()
    arrived: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    bus.add_listener(arrived.put_nowait)
    fanout = PostgresFanout(make_url(postgres_url), bus, origin="proc_me")
    await fanout.start()
    sender = await asyncpg.connect(fanout.dsn)
    try:
        first = fanout._connection
        assert first is not None
        await sender.execute("SELECT pg_terminate_backend($1)", first.get_server_pid())
        assert await _moved_off(fanout, first), "it did not listen again"
        payload = notification("proc_other", [_event(7, {"progress": 0.5})])
        await sender.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
        event = await asyncio.wait_for(arrived.get(), 10)
        assert event["seq"] == 7
    finally:
        await sender.close()
        await fanout.stop()
    assert fanout._connection is None


async def test_a_listening_connection_that_stops_answering_is_replaced(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A link that dies without a word (no FIN, no RST) never ends the connection: the
    periodic check does. The server process behind it is stopped to play that link."""
    monkeypatch.setattr(fanout_module, "CHECK_SECONDS", 0.2)
    monkeypatch.setattr(fanout_module, "CHECK_TIMEOUT_SECONDS", 0.5)
    fanout = PostgresFanout(make_url(postgres_url), EventBus(), origin="proc_me")
    await fanout.start()
    first = fanout._connection
    assert first is not None
    backend = first.get_server_pid()
    os.kill(backend, signal.SIGSTOP)
    try:
        assert await _moved_off(fanout, first), "the silent connection was kept"
        assert await fanout._connection.fetchval("SELECT 1") == 1
    finally:
        os.kill(backend, signal.SIGCONT)
        await fanout.stop()
