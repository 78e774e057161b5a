"""Rate limits per API key: requests per minute and images per minute, counted over a
moving window by the ``limits`` library (in this process's memory by default; in Redis,
``IMAGEMILL_RATE_LIMIT_STORAGE_URL``, when several API processes share the limits), and
jobs in flight (queued or running), counted in the database as jobs are recorded
(``db/budgets.py``'s ``check_in_flight``).

Should the storage not answer (Redis down), requests go through uncounted, with a
warning in the log, rather than all failing. A request past a limit is refused with
429, a ``Retry-After`` and the IETF rate-limit
headers (draft-ietf-httpapi-ratelimit-headers): ``RateLimit-Policy: "requests";q=60;w=60``
(the quota ``q`` per window ``w`` seconds) and ``RateLimit: "requests";r=0;t=12``
(``r`` remaining, ``t`` seconds until the window frees room). Answers to a key with a
request limit carry both headers.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from imagemill.errors import TooManyRequests

WINDOW_SECONDS = 60
log = logging.getLogger(__name__)


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

    async def check_images(self, key_id: str, limits: KeyLimits, count: int) -> None:
        """``TooManyRequests`` if ``count`` more images would take ``key_id`` past its
        limit now; nothing is counted (``count_images`` does, once they are recorded)."""
        quota = limits.images_per_minute
        if quota is None or count <= 0:
            return
        if count > quota:
            raise TooManyRequests(
                f"this request makes {count} images, more than this API key's limit of "
                f"{quota} a minute",
                policy="images",
                retry_after=None,
            )
        await self._take("images", key_id, quota, count, count_it=False)

    async def count_images(self, key_id: str, limits: KeyLimits, count: int) -> None:
        """Count ``count`` images recorded for ``key_id`` (a concurrent request may have
        taken the room meanwhile: they count all the same, never refused after the fact)."""
        if limits.images_per_minute is not None and count > 0:
            item = RateLimitItemPerMinute(limits.images_per_minute, namespace="imagemill")
            try:
                await self._limiter.hit(item, "images", key_id, cost=count)
            except Exception:
                log.warning("could not count images for %s: rate limits unavailable", key_id)

    async def _take(
        self, policy: str, key_id: str, quota: int, cost: int, *, count_it: bool = True
    ) -> Window | None:
        item = RateLimitItemPerMinute(quota, namespace="imagemill")
        try:
            if count_it:
                taken = await self._limiter.hit(item, policy, key_id, cost=cost)
            else:
                taken = await self._limiter.test(item, policy, key_id, cost=cost)
            stats = await self._limiter.get_window_stats(item, policy, key_id)
        except Exception:
            # Redis unreachable: requests go through uncounted rather than all failing.
            log.warning("rate limits unavailable (their storage did not answer): not counted")
            return None
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
