"""The task transport: taskiq carries "run job <id>" wake-ups from submitters to workers.

Only the job id travels; the job row is the truth, so a lost message costs a sweep and a
duplicate loses its claim. Chosen by ``broker_url``:

- ``memory://``: taskiq's ``InMemoryBroker``, workers in the same process;
- ``amqp://`` (RabbitMQ, through taskiq-aio-pika);
- ``redis://`` (a Redis list, through taskiq-redis).

A process that runs workers consumes messages (``start(consume=True)``); an API process
started with ``--no-workers`` only sends them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from taskiq import AsyncBroker, InMemoryBroker
from taskiq.receiver import Receiver

from imagemill.boundary import quoted
from imagemill.errors import InvalidInput

RUN_JOB_TASK = "imagemill.run_job"
QUEUE = "imagemill.jobs"


def make_broker(url: str, prefetch: int = 16, queue: str = QUEUE) -> AsyncBroker:
    if url.startswith("memory://"):
        return InMemoryBroker(max_stored_results=1, propagate_exceptions=False)
    if url.startswith(("amqp://", "amqps://")):
        from taskiq_aio_pika import AioPikaBroker
        from taskiq_aio_pika.queue import Queue

        return AioPikaBroker(url, qos=prefetch, task_queues=[Queue(name=queue)])
    if url.startswith(("redis://", "rediss://")):
        from taskiq_redis import ListQueueBroker

        return ListQueueBroker(url, queue_name=queue)
    raise InvalidInput(
        f"unsupported broker URL {quoted(url)}; use memory://, amqp:// or redis://",
        field="broker_url",
    )


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
            receiver = Receiver(
                self.broker,
                max_async_tasks=self.concurrency * 2,
                propagate_exceptions=False,
                run_startup=False,
            )
            self._finished.clear()
            self._receiving = asyncio.create_task(receiver.listen(self._finished))

    async def stop(self) -> None:
        if self._receiving is not None:
            self._finished.set()
            self._receiving.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._receiving
            self._receiving = None
        await self.broker.shutdown()
