"""The task transport: taskiq carries "run job <id>" wake-ups from submitters to workers.

Only the job id travels; the job row is the truth. ``memory://`` runs workers in the
same process (taskiq's ``InMemoryBroker``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from taskiq import AsyncBroker, InMemoryBroker

from imagemill.errors import InvalidInput

RUN_JOB_TASK = "imagemill.run_job"


def make_broker(url: str) -> AsyncBroker:
    if url.startswith("memory://"):
        return InMemoryBroker(max_stored_results=1, propagate_exceptions=False)
    raise InvalidInput(f"unsupported broker URL {url!r}; use memory://", field="broker_url")


class Transport:
    """Sends job wake-ups through a broker and hands received ones to a handler."""

    def __init__(self, broker: AsyncBroker, handler: Callable[[str], Awaitable[None]]) -> None:
        self.broker = broker

        async def run_job(job_id: str) -> None:
            await handler(job_id)

        self._task: Any = broker.register_task(run_job, task_name=RUN_JOB_TASK)

    async def send(self, job_id: str) -> None:
        await self._task.kiq(job_id)

    async def start(self) -> None:
        await self.broker.startup()

    async def stop(self) -> None:
        await self.broker.shutdown()
