"""Events of other processes, on this process's bus: PostgreSQL ``LISTEN``/``NOTIFY``.

With several API and worker processes on one PostgreSQL database, every write
transaction that stores events also sends ``NOTIFY imagemill_events`` with them (sent
on commit, never for a rollback; see ``Repository``). Each process listens and
publishes what other processes wrote on its own bus, so an SSE stream in one process
follows a job run by a worker in another, live. An event too big for a notification
(a preview) travels without its data, marked ``partial``: subscribers then read the
log, which has it.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy.engine import URL

from imagemill.events.bus import Event, EventBus

log = logging.getLogger(__name__)

CHANNEL = "imagemill_events"
MAX_PAYLOAD = 7900  # PostgreSQL refuses notifications of 8000 bytes or more


def notification(origin: str, events: list[Event]) -> str:
    """The payload announcing ``events``: with their data if it fits, else without."""
    whole = [{k: v for k, v in e.items() if not k.startswith("_")} for e in events]
    payload = json.dumps({"origin": origin, "events": whole}, default=_json)
    if len(payload.encode()) <= MAX_PAYLOAD:
        return payload
    slim = [{**e, "data": None, "partial": True} for e in whole]
    payload = json.dumps({"origin": origin, "events": slim}, default=_json)
    if len(payload.encode()) <= MAX_PAYLOAD:
        return payload
    job_ids = sorted({e["job_id"] for e in whole})
    owners = sorted({e["owner_id"] for e in whole})
    nudge = [{"job_id": j, "owner_id": o, "partial": True} for j in job_ids for o in owners]
    return json.dumps({"origin": origin, "events": nudge})


class PostgresFanout:
    def __init__(self, url: URL, bus: EventBus, origin: str) -> None:
        self.dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.bus = bus
        bus.in_log_order = False
        self.origin = origin
        self._connection: asyncpg.Connection | None = None

    async def start(self) -> None:
        self._connection = await asyncpg.connect(self.dsn)
        await self._connection.add_listener(CHANNEL, self._received)

    async def stop(self) -> None:
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
        self.bus.publish(events)


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot send {type(value).__name__} in a notification")
