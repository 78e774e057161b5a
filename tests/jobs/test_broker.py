"""The task transport: job-id wake-ups through a taskiq broker."""

from __future__ import annotations

import asyncio

import pytest

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
