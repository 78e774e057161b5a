"""The task transport: taskiq carries "run job <id>" wake-ups from submitters to workers.

Only the job id travels; the job row is the truth, so a lost message costs a sweep and a
duplicate loses its claim. Chosen by ``broker_url``:

- ``memory://``: taskiq's ``InMemoryBroker``, workers in the same process;
- ``amqp://`` (RabbitMQ, through taskiq-aio-pika);
- ``redis://`` (a Redis list, through taskiq-redis).

A process that runs workers consumes messages (``start(consume=True)``); an API process
started with ``--no-workers`` only sends them. A consumer never stops on its own: a
listener that fails or ends (a broker restarting, a connection lost) is started again
after a pause, and the log says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

from taskiq import AsyncBroker, InMemoryBroker
from taskiq.receiver import Receiver

from imagemill.boundary import quoted
from imagemill.errors import InvalidInput, describe

log = logging.getLogger(__name__)

RUN_JOB_TASK = "imagemill.run_job"
QUEUE = "imagemill.jobs"
RELISTEN_SECONDS = 1.0  # first pause before listening again after the broker failed
RELISTEN_MAX_SECONDS = 30.0
REDIS_BLOCK_SECONDS = 2  # longest blocking pop of a Redis list, well under a read's timeout


def make_broker(url: str, prefetch: int = 16, queue: str = QUEUE) -> AsyncBroker:
    if url.startswith("memory://"):
        return InMemoryBroker(max_stored_results=1, propagate_exceptions=False)
    if url.startswith(("amqp://", "amqps://")):
        from taskiq_aio_pika import AioPikaBroker
        from taskiq_aio_pika.queue import Queue

        return AioPikaBroker(url, qos=prefetch, task_queues=[Queue(name=queue)])
    if url.startswith(("redis://", "rediss://")):
        return _redis_list_broker(url, queue)
    raise InvalidInput(
        f"unsupported broker URL {quoted(url)}; use memory://, amqp:// or redis://",
        field="broker_url",
    )


def _redis_list_broker(url: str, queue: str) -> AsyncBroker:
    """taskiq-redis' list broker, reading in short blocking pops.

    taskiq-redis pops with ``BRPOP`` and no timeout, while redis-py (8.0 on) gives every
    read 5 s (``socket_timeout``): a worker idle for 5 s had its read time out with an
    error the broker does not retry, and stopped receiving without a word. Here each
    pop blocks for at most ``REDIS_BLOCK_SECONDS`` (or half the URL's
    ``socket_timeout``), an empty answer just pops again, and a lost connection is the
    transport's to retry (``Transport``).

    One client serves every push and pop (taskiq-redis builds a client per message: a
    tenth of an API process's time submitting jobs went to building them); its
    connections come from the broker's pool as before."""
    from redis.asyncio import Redis
    from taskiq import BrokerMessage
    from taskiq_redis import ListQueueBroker

    class RedisListBroker(ListQueueBroker):
        _popping: asyncio.Task[Any] | None = None

        def __init__(self, url: str, queue_name: str) -> None:
            super().__init__(url, queue_name=queue_name)
            self.client = Redis(connection_pool=self.connection_pool)

        async def kick(self, message: BrokerMessage) -> None:
            queue_name = message.labels.get("queue_name") or self.queue_name
            await self.client.lpush(queue_name, message.message)

        async def listen(self) -> AsyncGenerator[bytes, None]:
            socket_timeout = self.connection_pool.connection_kwargs.get("socket_timeout")
            block: float = REDIS_BLOCK_SECONDS  # whole seconds: Redis before 6 wants them
            if socket_timeout and float(socket_timeout) < 2 * block:
                block = float(socket_timeout) / 2
            while True:
                self._popping = asyncio.create_task(self._pop(block))
                self._popping.add_done_callback(_retrieved)
                # redis-py cannot cancel a blocking read: the connection's next read
                # waits forever. A pop is left to end on its own (within ``block``, or at
                # ``shutdown``); a message it takes then is the sweeper's to send again.
                popped = await asyncio.shield(self._popping)
                if popped is not None:
                    yield popped[1]

        async def _pop(self, block: float) -> Any:
            return await self.client.brpop([self.queue_name], timeout=block)

        async def shutdown(self) -> None:
            try:
                await super().shutdown()  # closes the connections, the popping one's too
            finally:
                if self._popping is not None:
                    await asyncio.wait([self._popping], timeout=REDIS_BLOCK_SECONDS)

    return RedisListBroker(url, queue_name=queue)


def _retrieved(task: asyncio.Task[Any]) -> None:
    """Mark a finished pop's error as seen: one that failed while nobody awaited it (a
    connection closed at shutdown) is not an unhandled error."""
    if not task.cancelled():
        task.exception()


class Transport:
    """Sends job wake-ups through a broker and hands received ones to a handler."""

    def __init__(
        self,
        broker: AsyncBroker,
        handler: Callable[[str], Awaitable[None]],
        concurrency: int = 8,
    ) -> None:
        self.broker = broker
        self.concurrency = concurrency

        async def run_job(job_id: str) -> None:
            await handler(job_id)

        self._task: Any = broker.register_task(run_job, task_name=RUN_JOB_TASK)
        self._finished = asyncio.Event()
        self._receiving: asyncio.Task[None] | None = None

    @property
    def in_process(self) -> bool:
        return isinstance(self.broker, InMemoryBroker)

    async def send(self, job_id: str) -> None:
        await self._task.kiq(job_id)

    async def start(self, *, consume: bool = True) -> None:
        consuming = consume and not self.in_process
        self.broker.is_worker_process = consuming  # brokers open their reading side for it
        await self.broker.startup()
        if consuming:
            # Messages are acknowledged when received: a job lost with its worker is the
            # sweeper's to send again, not the broker's.
            self._finished.clear()
            self._receiving = asyncio.create_task(self._receive())

    async def _receive(self) -> None:
        """Hand every message received to the handler until ``stop``; a listener that
        fails or ends before then is started again, after ``RELISTEN_SECONDS`` doubling
        while it keeps failing at once (up to ``RELISTEN_MAX_SECONDS``)."""
        pause = RELISTEN_SECONDS
        loop = asyncio.get_running_loop()
        while not self._finished.is_set():
            receiver = Receiver(
                self.broker,
                max_async_tasks=self.concurrency * 2,
                propagate_exceptions=False,
                run_startup=False,
            )
            started = loop.time()
            try:
                await receiver.listen(self._finished)
            except Exception as exc:
                while isinstance(exc, ExceptionGroup):  # the listener's task group's
                    exc = exc.exceptions[0]
                reason = describe(exc)
            else:
                reason = "the broker stopped sending"
            if self._finished.is_set():
                return
            if loop.time() - started > RELISTEN_MAX_SECONDS:
                pause = RELISTEN_SECONDS  # it listened a good while: a fresh failure
            log.warning("receiving job wake-ups failed: %s; listening again in %g s", reason, pause)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._finished.wait(), pause)
            pause = min(pause * 2, RELISTEN_MAX_SECONDS)

    async def stop(self) -> None:
        if self._receiving is not None:
            self._finished.set()
            self._receiving.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._receiving
            self._receiving = None
        await self.broker.shutdown()
