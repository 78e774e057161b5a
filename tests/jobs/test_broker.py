"""The task transport: job-id wake-ups through a taskiq broker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator

import pytest
import redis.asyncio as redis
from taskiq import AsyncBroker, BrokerMessage

from imagemill.errors import InvalidInput
from imagemill.jobs.broker import Transport, make_broker


async def test_the_memory_broker_delivers_each_id_to_the_handler() -> None:
    received: list[str] = []
    both = asyncio.Event()

    async def handler(job_id: str) -> None:
        received.append(job_id)
        if len(received) == 2:
            both.set()

    transport = Transport(make_broker("memory://"), handler)
    await transport.start()
    try:
        await transport.send("job_1")
        await transport.send("job_2")
        await asyncio.wait_for(both.wait(), 5)
    finally:
        await transport.stop()
    assert sorted(received) == ["job_1", "job_2"]


async def test_a_failing_handler_does_not_break_the_transport() -> None:
    received: list[str] = []
    second = asyncio.Event()

    async def handler(job_id: str) -> None:
        received.append(job_id)
        if job_id == "bad":
            raise RuntimeError("handler bug")
        second.set()

    transport = Transport(make_broker("memory://"), handler)
    await transport.start()
    try:
        await transport.send("bad")
        await transport.send("good")
        await asyncio.wait_for(second.wait(), 5)
    finally:
        await transport.stop()
    assert received == ["bad", "good"]


@pytest.mark.parametrize("url", ["nonsense://broker", "ftp://example.com/queue", "not a url"])
def test_an_unsupported_broker_url_is_invalid_input(url: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        make_broker(url)
    assert raised.value.field == "broker_url"
    assert url in raised.value.message


async def _received_after(transport: Transport, idle: float, got: asyncio.Queue[str]) -> str:
    await transport.start()
    try:
        await asyncio.sleep(idle)
        await transport.send("job_after_idle")
        return await asyncio.wait_for(got.get(), 10)
    finally:
        await asyncio.wait_for(transport.stop(), 5)  # a blocking pop once made this hang


@pytest.mark.parametrize(
    ("query", "idle"),
    [("", 6.0), ("?socket_timeout=2", 3.5)],
    ids=["redis-py's 5 s", "the URL's 2 s"],
)
async def test_a_redis_consumer_idle_past_the_read_timeout_still_receives(
    redis_url: str, query: str, idle: float
) -> None:
    """redis-py gives each read a timeout; a pop that blocked longer timed out, and
    the consumer stopped for good without a word."""
    got: asyncio.Queue[str] = asyncio.Queue()
    queue = f"imagemill.test.{uuid.uuid4().hex[:8]}"
    transport = Transport(make_broker(redis_url + query, queue=queue), got.put)
    assert await _received_after(transport, idle, got) == "job_after_idle"


async def test_a_consumer_whose_redis_connection_is_killed_listens_again(
    redis_url: str,
) -> None:
    name = f"imagemill-test-{uuid.uuid4().hex[:8]}"
    got: asyncio.Queue[str] = asyncio.Queue()
    url = f"{redis_url}?client_name={name}"
    transport = Transport(make_broker(url, queue=f"imagemill.test.{name}"), got.put)
    await transport.start()
    try:
        async with redis.from_url(redis_url) as admin:
            for _ in range(100):  # until the consumer's first pop is in
                ids = [c["id"] for c in await admin.client_list() if c["name"] == name]
                if ids:
                    break
                await asyncio.sleep(0.05)
            assert ids, "the consumer never connected"
            for client_id in ids:
                await admin.client_kill_filter(_id=client_id)
        await transport.send("job_after_kill")
        assert await asyncio.wait_for(got.get(), 10) == "job_after_kill"
    finally:
        await asyncio.wait_for(transport.stop(), 5)


class _FlakyBroker(AsyncBroker):
    """Delivers what it is sent; its first listener fails at once, like a broker lost."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: asyncio.Queue[bytes] = asyncio.Queue()
        self.listeners = 0

    async def kick(self, message: BrokerMessage) -> None:
        await self.sent.put(message.message)

    async def listen(self) -> AsyncGenerator[bytes, None]:
        self.listeners += 1
        if self.listeners == 1:
            raise ConnectionError("the broker went away")
        while True:
            yield await self.sent.get()


async def test_a_listener_that_fails_is_started_again_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = _FlakyBroker()
    got: asyncio.Queue[str] = asyncio.Queue()
    transport = Transport(broker, got.put)
    await transport.start()
    try:
        await transport.send("job_after_failure")
        assert await asyncio.wait_for(got.get(), 10) == "job_after_failure"
    finally:
        await asyncio.wait_for(transport.stop(), 5)
    assert broker.listeners == 2
    assert (
        "receiving job wake-ups failed: the connection failed (the broker went away)" in caplog.text
    )
