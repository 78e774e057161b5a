"""Rate limits per API key: requests per minute and images per minute, counted over a
moving window by the ``limits`` library (in this process's memory by default; in Redis,
``IMAGEMILL_RATE_LIMIT_STORAGE_URL``, when several API processes share the limits), and
jobs in flight (queued or running), counted in the database as jobs are recorded
(``db/budgets.py``'s ``check_in_flight``).

A request past a limit is refused with 429, a ``Retry-After`` and the IETF rate-limit
headers (draft-ietf-httpapi-ratelimit-headers): ``RateLimit-Policy: "requests";q=60;w=60``
(the quota ``q`` per window ``w`` seconds) and ``RateLimit: "requests";r=0;t=12``
(``r`` remaining, ``t`` seconds until the window frees room). Answers to a key with a
request limit carry both headers.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from imagemill.errors import TooManyRequests

WINDOW_SECONDS = 60


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """An API key's limits; ``None``: unlimited."""

    requests_per_minute: int | None = None
    images_per_minute: int | None = None
    concurrent_jobs: int | None = None  # queued or running at once


@dataclass(frozen=True, slots=True)
class Window:
    """Where a key stands in one of its limits: the IETF headers' values."""

    policy: str  # "requests" or "images"
    quota: int
    remaining: int
    reset_seconds: int  # until the window frees room

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Policy": f'"{self.policy}";q={self.quota};w={WINDOW_SECONDS}',
            "RateLimit": f'"{self.policy}";r={self.remaining};t={self.reset_seconds}',
        }


def storage_for(url: str) -> Storage:
    """The limits' storage for ``url``: ``memory://`` (this process), or Redis
    (``redis://``, ``rediss://``, as the broker takes them), through redis-py."""
    if url.startswith("memory://"):
        return MemoryStorage()
    if not url.startswith(("redis://", "rediss://")):
        raise ValueError(f"rate limits are counted in memory:// or redis://, not {url}")
    storage = storage_from_string(f"async+{url}", implementation="redispy")
    assert isinstance(storage, Storage)  # an async+ scheme: the asyncio storage
    return storage


class RateLimits:
    def __init__(self, storage: Storage | None = None) -> None:
        self.storage = storage or MemoryStorage()
        self._limiter = MovingWindowRateLimiter(self.storage)

    async def request(self, key_id: str, limits: KeyLimits) -> Window | None:
        """Count one request of ``key_id``; ``TooManyRequests`` past its limit. The
        window as it stands after it (``None``: the key has no request limit)."""
        if limits.requests_per_minute is None:
            return None
        return await self._take("requests", key_id, limits.requests_per_minute, 1)

    async def images(self, key_id: str, limits: KeyLimits, count: int) -> Window | None:
        """Count ``count`` images about to be made for ``key_id``; ``TooManyRequests``
        (nothing counted) if they would pass its limit."""
        if limits.images_per_minute is None or count <= 0:
            return None
        if count > limits.images_per_minute:
            raise TooManyRequests(
                f"this request makes {count} images, more than this API key's limit of "
                f"{limits.images_per_minute} a minute",
                policy="images",
                retry_after=None,
            )
        return await self._take("images", key_id, limits.images_per_minute, count)

    async def _take(self, policy: str, key_id: str, quota: int, cost: int) -> Window:
        item = RateLimitItemPerMinute(quota, namespace="imagemill")
        taken = await self._limiter.hit(item, policy, key_id, cost=cost)
        stats = await self._limiter.get_window_stats(item, policy, key_id)
        reset = max(0, math.ceil(stats.reset_time - time.time()))
        window = Window(policy, quota, max(0, stats.remaining), reset)
        if not taken:
            unit = "requests" if policy == "requests" else "images"
            raise TooManyRequests(
                f"this API key may make {quota} {unit} a minute; try again in {max(1, reset)} s",
                policy=policy,
                retry_after=max(1, reset),
                window=window,
            )
        return window
