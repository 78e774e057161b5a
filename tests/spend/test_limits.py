"""Rate limits (``spend/limits.py``): counted per key over a moving minute, in memory or
shared through Redis by several API processes."""

from __future__ import annotations

import uuid

import pytest

from imagemill.errors import TooManyRequests
from imagemill.spend.limits import KeyLimits, RateLimits, storage_for


async def test_requests_are_counted_per_key_in_memory() -> None:
    limits = RateLimits()
    five = KeyLimits(requests_per_minute=5)
    windows = [await limits.request("key_a", five) for _ in range(5)]
    with pytest.raises(TooManyRequests) as refused:
        await limits.request("key_a", five)
    assert await limits.request("key_b", five) is not None  # its own count
    assert await limits.request("key_a", KeyLimits()) is None  # no limit: nothing counted
    assert [w.remaining for w in windows if w] == [4, 3, 2, 1, 0]
    assert refused.value.policy == "requests"
    assert refused.value.retry_after is not None and 1 <= refused.value.retry_after <= 60


async def test_images_are_checked_first_and_counted_once_recorded() -> None:
    limits = RateLimits()
    ten = KeyLimits(images_per_minute=10)
    await limits.check_images("key_a", ten, 8)  # fits; nothing counted yet
    await limits.count_images("key_a", ten, 8)
    with pytest.raises(TooManyRequests) as refused:
        await limits.check_images("key_a", ten, 3)
    await limits.check_images("key_a", ten, 2)  # the refused 3 took nothing
    with pytest.raises(TooManyRequests) as too_many:
        await limits.check_images("key_b", ten, 11)  # more than a minute's worth
    assert refused.value.retry_after is not None
    assert too_many.value.retry_after is None


async def test_two_processes_share_a_keys_limit_through_redis(redis_url: str) -> None:
    """Each API process has its own ``RateLimits`` on the same Redis."""
    key = f"key_{uuid.uuid4().hex}"
    first, second = RateLimits(storage_for(redis_url)), RateLimits(storage_for(redis_url))
    four = KeyLimits(requests_per_minute=4)
    for limits in (first, second, first, second):
        await limits.request(key, four)
    with pytest.raises(TooManyRequests):
        await second.request(key, four)
    with pytest.raises(TooManyRequests):
        await first.request(key, four)


def test_only_memory_and_redis_storage_are_taken() -> None:
    with pytest.raises(ValueError, match="memory:// or redis://"):
        storage_for("memcached://localhost:11211")
