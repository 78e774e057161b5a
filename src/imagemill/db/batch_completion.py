"""A batch's completion: counted once, with its webhook delivery, in the transaction that
ended its last item.

``transition()`` (``jobs/states.py``) calls ``item_ended`` whenever it ends an item
(succeeded, failed, canceled: every terminal edge), and ``Repository.create_batch``
calls it for a batch born complete (every item a cache hit). When no item is queued or
running any more, the batch's ``completions`` goes up by one (the round: a retry
re-opens the batch, and its next completion is the next round) and, if the batch has a
``webhook_url``, a pending ``batch.done`` delivery is inserted for that round. Both are
part of the item's own transaction, so a crash after the commit still finds the
delivery (the sender sends it from any process, after a restart too), and a rollback
leaves neither.

Exactly once, when the last two items end at the same moment in two processes:

- PostgreSQL (READ COMMITTED): the batch row is locked (``SELECT … FOR UPDATE``)
  *before* the items are counted, in a statement of its own. The second transaction
  waits for the first to commit, and its count, a new statement, sees the first's item
  ended: one of them finds none left, never both, never neither. (Counting inside the
  locking statement would not do: a statement that waited for a row lock still reads
  other rows as they were when it began.)
- SQLite: ``BEGIN IMMEDIATE`` already runs writers one at a time.
- Either way, ``(batch_id, batch_round)`` is unique in ``deliveries``: a second delivery
  of one round cannot be stored.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, bindparam, func, insert, select, update

from imagemill.db.appending import Appending
from imagemill.db.tables import batches, deliveries, jobs
from imagemill.domain import JobStatus, batch_status
from imagemill.ids import new_id

_LOCK_BATCH = (
    select(batches.c.owner_id, batches.c.webhook_url, batches.c.completions)
    .where(batches.c.id == bindparam("batch_id"))
    .with_for_update()  # nothing on SQLite, where the transaction holds the write lock
)
_ITEMS_BY_STATUS = (
    select(jobs.c.status, func.count())
    .where(jobs.c.batch_id == bindparam("batch_id"))
    .group_by(jobs.c.status)
)
_COUNT_COMPLETION = (
    update(batches)
    .where(batches.c.id == bindparam("batch_id"))
    .values(completions=bindparam("completions"))
)
_INSERT_DELIVERY = insert(deliveries)


def item_ended(conn: Connection, batch_id: str, now: datetime, published: Appending) -> int | None:
    """In the transaction that ended an item of ``batch_id`` (or created it with every
    item ended): if no item is queued or running now, count the batch's completion and
    queue its ``batch.done`` delivery. Returns the completion's round, or ``None`` when
    items are still to end."""
    batch = conn.execute(_LOCK_BATCH, {"batch_id": batch_id}).one()
    counts = dict.fromkeys((s.value for s in JobStatus), 0)
    for status, count in conn.execute(_ITEMS_BY_STATUS, {"batch_id": batch_id}):
        counts[status] = count
    if counts[JobStatus.QUEUED.value] or counts[JobStatus.RUNNING.value]:
        return None
    completion: int = batch.completions + 1
    conn.execute(_COUNT_COMPLETION, {"batch_id": batch_id, "completions": completion})
    if batch.webhook_url:
        status = batch_status(counts, started=True)
        delivery = {
            "id": new_id("dlv"),
            "owner_id": batch.owner_id,
            "batch_id": batch_id,
            "batch_round": completion,
            "payload": {"status": status.value, "counts": counts},
            "event_type": "done",
            "url": batch.webhook_url,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        conn.execute(_INSERT_DELIVERY, [delivery])
        published.wake_webhooks()  # once this commits, as a job's delivery does
    return completion
