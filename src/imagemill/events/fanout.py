"""Events of other processes, on this process's bus: PostgreSQL ``LISTEN``/``NOTIFY``.

With several API and worker processes on one PostgreSQL database, every write
transaction that stores events also sends ``NOTIFY imagemill_events`` with them (sent
on commit, never for a rollback; see ``db/appending.py``). Each process listens and
publishes what other processes wrote on its own bus, so an SSE stream in one process
follows a job run by a worker in another, live. An event too big for a notification
(a preview) travels without its data, marked ``partial``: subscribers then read the
log, which has it.

Nudges travel the same way, on their own channel (``NOTIFY imagemill_nudges``): a
provider's callback about a job, received by an API process, wakes the job's attempt in
whichever worker process runs it (``jobs/contexts.py``). A nudge is never stored: one
sent while no process runs the job's attempt is lost, and the attempt's polling covers it.

The listening connection is kept: lost (the server restarted, a proxy dropped it) or
silent to a check every ``CHECK_SECONDS`` (a link that died without a word), it is
opened again, with growing pauses, and the log says so. What was notified meanwhile
is not heard (the log keeps the events; a stream resumed with ``Last-Event-ID`` has them).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy.engine import URL

from imagemill.errors import describe
from imagemill.events.bus import Event, EventBus

log = logging.getLogger(__name__)

CHANNEL = "imagemill_events"
NUDGES = "imagemill_nudges"
MAX_PAYLOAD = 7900  # PostgreSQL refuses notifications of 8000 bytes or more
ID_BYTES = 20  # room for one log position in a payload: up to 19 digits and a comma
_IDS_KEY = ', "ids": '
RECONNECT_SECONDS = (0.5, 30.0)  # the first and the longest pause between tries
CHECK_SECONDS = 30.0  # how often the listening connection is asked whether it still answers
CHECK_TIMEOUT_SECONDS = 10.0


def notification(origin: str, events: list[Event], *, numbered_later: bool = False) -> str:
    """The payload announcing ``events``: with their data if it fits, else without.

    ``numbered_later``: the events have no log position yet; the payload then stops where
    their ids go, and the statement that stores them appends ``[id, …]}`` (the ids in
    the order of ``numbered``), so the notification and the rows are one round trip
    (``db/appending.py``).
    """
    whole = [{k: v for k, v in e.items() if not k.startswith("_")} for e in events]
    slim = [{**e, "data": None, "partial": True} for e in whole]
    room = MAX_PAYLOAD - (len(events) * ID_BYTES + len(_IDS_KEY) + 2 if numbered_later else 0)
    for candidate in (whole, slim):
        payload = json.dumps({"origin": origin, "events": candidate}, default=_json)
        if len(payload.encode()) <= room:
            return payload[:-1] + _IDS_KEY if numbered_later else payload
    job_ids = sorted({e["job_id"] for e in whole})
    owners = sorted({e["owner_id"] for e in whole})
    nudge = [{"job_id": j, "owner_id": o, "partial": True} for j in job_ids for o in owners]
    payload = json.dumps({"origin": origin, "events": nudge})
    return payload[:-1] + _IDS_KEY if numbered_later else payload


def numbered(events: list[Event]) -> list[Event]:
    """``events`` in the order their ids follow in a notification: by job id, byte by
    byte (PostgreSQL's ``COLLATE "C"``), then by sequence number."""
    return sorted(events, key=lambda e: (e["job_id"], e["seq"]))


def nudge_notification(origin: str, job_id: str) -> str:
    """The payload of a nudge for ``job_id``'s attempt."""
    return json.dumps({"origin": origin, "job_id": job_id})


class PostgresFanout:
    def __init__(
        self,
        url: URL,
        bus: EventBus,
        origin: str,
        on_nudge: Callable[[str], object] | None = None,
    ) -> None:
        """``on_nudge(job_id)``: another process received a provider's callback about
        the job (called for nudges sent by other processes only)."""
        self.dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.bus = bus
        bus.in_log_order = False
        self.origin = origin
        self.on_nudge = on_nudge
        self._connection: asyncpg.Connection | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._checking: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        self._stopping = False
        await self._connect()

    async def _connect(self) -> None:
        connection = await asyncpg.connect(self.dsn)
        try:
            await connection.add_listener(CHANNEL, self._received)
            await connection.add_listener(NUDGES, self._nudged)
        except BaseException:
            connection.terminate()
            raise
        connection.add_termination_listener(self._lost)
        if connection.is_closed():  # lost before the listener was there to hear it
            raise ConnectionError("the connection closed as it was opened")
        self._connection = connection
        if self._checking is None or self._checking.done():
            self._checking = asyncio.create_task(self._check())

    async def _check(self) -> None:
        """Ask the listening connection every ``CHECK_SECONDS`` whether it still answers;
        one that does not is ended, and so opened again."""
        while not self._stopping:
            await asyncio.sleep(CHECK_SECONDS)
            connection = self._connection
            if connection is None:
                continue  # being opened again
            silent = not await _answers(connection)
            if silent and connection is self._connection:  # not replaced meanwhile
                self._connection.terminate()  # its termination listener reconnects

    def _lost(self, connection: asyncpg.Connection) -> None:
        if self._stopping or connection is not self._connection:
            return  # closed by ``stop``, or one replaced already
        self._connection = None
        log.warning("lost the connection that hears other processes' events; reconnecting")
        self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        pause, longest = RECONNECT_SECONDS
        while not self._stopping:
            try:
                await self._connect()
            except Exception as exc:
                log.warning(
                    "could not listen to other processes' events again (%s); next try in %g s",
                    describe(exc),
                    pause,
                )
                await asyncio.sleep(pause)
                pause = min(pause * 2, longest)
            else:
                log.info("listening to other processes' events again")
                return

    async def stop(self) -> None:
        self._stopping = True
        for task in (self._reconnecting, self._checking):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._reconnecting = self._checking = None
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    def _received(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            log.warning("a notification on %s was not JSON", CHANNEL)
            return
        if message.get("origin") == self.origin:
            return  # published here already, after the commit
        events = message.get("events", [])
        for event in events:
            if isinstance(event.get("created_at"), str):
                event["created_at"] = datetime.fromisoformat(event["created_at"])
        ids = message.get("ids")
        # Stored events' ids follow them (a nudge of partial events has none to number).
        if ids and len(ids) == len(events) and all("seq" in event for event in events):
            for event, id_ in zip(numbered(events), ids, strict=True):
                event["id"] = id_
        self.bus.publish(events)

    def _nudged(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            message = json.loads(payload)
            origin, job_id = message["origin"], message["job_id"]
        except (ValueError, TypeError, KeyError):
            log.warning("a notification on %s was not a nudge", NUDGES)
            return
        if origin != self.origin and isinstance(job_id, str) and self.on_nudge is not None:
            self.on_nudge(job_id)  # this process's own nudges were handled as they were sent


async def _answers(connection: asyncpg.Connection) -> bool:
    try:
        await asyncio.wait_for(connection.fetchval("SELECT 1"), CHECK_TIMEOUT_SECONDS)
    except Exception:
        return False
    return True


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot send {type(value).__name__} in a notification")
