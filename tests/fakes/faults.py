"""Faults a fake server injects: 429 with Retry-After, 5xx, hangs and malformed bodies.

A fake calls ``await faults.inject(scope_name)`` at the top of each endpoint that may
fail; it returns a response to send instead of the real one, or ``None`` to go on. A
``hang`` never answers (the client's timeout must cut it). Faults come from a queue
(``faults.queue("500", "429")``: the next calls fail in that order) or at random with
fixed rates and a seed (``Faults(rate_5xx=0.3, rate_429=0.1, rate_hang=0.1, seed=7)``).
Every decision is logged in ``faults.log`` for assertions.

``inject_fault(faults, endpoint, request)`` is ``faults.inject`` for an endpoint that
has read its request: a hang is abandoned once the client hangs up, so a server has no
task left to wait for at shutdown.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

FAULTS = ("429", "500", "502", "503", "hang", "malformed")
HANG_SECONDS = 3600.0

ErrorBody = Callable[[int, str], dict[str, Any]]


@dataclass
class Faults:
    rate_5xx: float = 0.0
    rate_429: float = 0.0
    rate_hang: float = 0.0
    rate_malformed: float = 0.0
    retry_after: float = 1.0  # seconds, sent with every 429
    seed: int = 0
    only: set[str] | None = None  # endpoint names that may fail; None: every endpoint
    log: list[tuple[str, str]] = field(default_factory=list)  # (endpoint, fault or "ok")
    _queued: deque[str] = field(default_factory=deque)
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def queue(self, *faults: str) -> None:
        """The next calls (to endpoints that may fail) get these faults, in order."""
        unknown = set(faults) - {*FAULTS, "ok"}
        if unknown:
            raise ValueError(f"unknown faults {unknown}; known: {FAULTS}")
        self._queued.extend(faults)

    def _choose(self) -> str:
        if self._queued:
            return self._queued.popleft()
        roll = self._rng.random()
        for fault, rate in (
            ("500", self.rate_5xx),
            ("429", self.rate_429),
            ("hang", self.rate_hang),
            ("malformed", self.rate_malformed),
        ):
            if roll < rate:
                return fault
            roll -= rate
        return "ok"

    async def inject(self, endpoint: str, error_body: ErrorBody | None = None) -> Response | None:
        """The fault for this call, as a response (``None``: answer normally).

        ``error_body(status, message)`` shapes error bodies the way the provider does.
        """
        if self.only is not None and endpoint not in self.only:
            return None
        fault = self._choose()
        self.log.append((endpoint, fault))
        if fault == "ok":
            return None
        if fault == "hang":
            await asyncio.sleep(HANG_SECONDS)
        if fault == "malformed":
            return Response(b'{"data": [{"b64_json": ', media_type="application/json")
        shape = error_body or _openai_error
        if fault == "429":
            return JSONResponse(
                shape(429, "Rate limit reached"),
                status_code=429,
                headers={"Retry-After": f"{self.retry_after:g}"},
            )
        return JSONResponse(shape(int(fault), "The server had an error"), status_code=int(fault))

    def count(self, fault: str) -> int:
        return sum(1 for _, f in self.log if f == fault)


def _openai_error(status: int, message: str) -> dict[str, Any]:
    kind = "rate_limit_error" if status == 429 else "server_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


async def inject_fault(
    faults: Faults, endpoint: str, request: Request, error_body: ErrorBody | None = None
) -> Response | None:
    """``faults.inject``, abandoned when the client hangs up.

    A ``hang`` sleeps for an hour; the client's timeout closes the connection, and
    this stops the sleep so the server has no task left to wait for at shutdown.
    Read the request body before calling this: it listens on ``receive``.
    """
    injected = asyncio.ensure_future(faults.inject(endpoint, error_body))
    hung_up = asyncio.ensure_future(_client_gone(request))
    try:
        await asyncio.wait({injected, hung_up}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (injected, hung_up):
            task.cancel()
    if injected.done() and not injected.cancelled():
        return injected.result()
    return Response(status_code=499)  # nobody is listening any more


async def _client_gone(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
