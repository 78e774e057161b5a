"""Circuit breakers, one per provider: stop calling a provider that keeps failing.

After ``threshold`` calls in a row fail by the provider's fault (unreachable, timed out,
a 5xx, a refused key), its circuit *opens* for ``cooldown`` seconds: jobs skip it at
once, to their fallback, or wait and retry when it has none (``CircuitOpen`` carries
how long). After the cool-down the circuit is *half open*: one call goes through as a
trial; if it succeeds the circuit closes, if it fails it opens again. A refusal that is
the request's (bad input, content rejected) or a rate limit (the provider is up, and
says when to come back) counts neither way.

State is per process: each worker process judges the providers it calls (as a
connection pool judges its hosts), and ``GET /v1/models`` shows the state as the
serving process sees it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from imagemill.errors import (
    AuthError,
    CircuitOpen,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    UnusableAnswer,
)


class CircuitState(StrEnum):
    CLOSED = "closed"  # calls go through
    OPEN = "open"  # calls are skipped until the cool-down ends
    HALF_OPEN = "half_open"  # one trial call is in flight


@dataclass(slots=True)
class _Circuit:
    failures: int = 0  # in a row
    opened_at: float | None = None
    trial_at: float | None = None  # when the half-open trial call started


def is_providers_fault(error: BaseException) -> bool:
    """Whether ``error`` says the provider is failing, not the request or its quota."""
    if isinstance(error, CircuitOpen | RateLimited | UnusableAnswer):
        return False  # skipped, throttled, or answered badly: the provider is up
    if isinstance(error, ProviderUnavailable | ProviderTimeout | AuthError | TimeoutError):
        return True
    return isinstance(error, ProviderError) and error.retryable


class Circuits:
    """The circuits of every provider this process calls. ``threshold`` 0: never open."""

    def __init__(
        self, threshold: int, cooldown: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._circuits: dict[str, _Circuit] = {}

    def state(self, provider: str) -> tuple[CircuitState, float]:
        """The provider's state, and the seconds until an open circuit lets a call through."""
        circuit = self._circuits.get(provider)
        if circuit is None or circuit.opened_at is None:
            return CircuitState.CLOSED, 0.0
        now = self._clock()
        if circuit.trial_at is not None and now - circuit.trial_at < self.cooldown:
            return CircuitState.HALF_OPEN, 0.0
        left = circuit.opened_at + self.cooldown - now
        return (CircuitState.OPEN, left) if left > 0 else (CircuitState.HALF_OPEN, 0.0)

    def wait(self, provider: str) -> float:
        """Seconds until a call to ``provider`` may go through: while its circuit is
        open, the rest of the cool-down; while a trial call is in flight, until the trial
        is given up on; else 0."""
        circuit = self._circuits.get(provider)
        if circuit is None or circuit.opened_at is None:
            return 0.0
        now = self._clock()
        if circuit.trial_at is not None and now - circuit.trial_at < self.cooldown:
            return circuit.trial_at + self.cooldown - now
        return max(0.0, circuit.opened_at + self.cooldown - now)

    def check(self, provider: str) -> None:
        """Let a call to ``provider`` through, or raise ``CircuitOpen`` saying how long
        it stays open. Past the cool-down, the first caller gets through as the trial
        (and so does the next, should that trial never report back within a cool-down)."""
        circuit = self._circuits.get(provider)
        if circuit is None or circuit.opened_at is None:
            return
        now = self._clock()
        left = circuit.opened_at + self.cooldown - now
        trial_running = circuit.trial_at is not None and now - circuit.trial_at < self.cooldown
        if left > 0 or trial_running:
            wait = max(left, 0.0) or self.cooldown - (now - (circuit.trial_at or now))
            raise CircuitOpen(
                f"{provider} failed {circuit.failures} times in a row; its circuit is open "
                f"for {wait:.0f} s more",
                retry_after=wait,
            )
        circuit.trial_at = now

    def succeeded(self, provider: str) -> None:
        """A call went well: the circuit closes."""
        self._circuits.pop(provider, None)

    @contextlib.contextmanager
    def counted(self, provider: str) -> Iterator[None]:
        """A call's outcome, counted: a success, or a failure (the attempt's time running
        out included); a call canceled (by its owner, a shutdown, the job's deadline)
        counts neither way."""
        try:
            yield
        except Exception as exc:
            self.failed(provider, exc)
            raise
        except BaseException:
            self.abandoned(provider)
            raise
        self.succeeded(provider)

    def abandoned(self, provider: str) -> None:
        """A call ended without an answer either way (canceled): were it the trial, the
        next call may be the trial instead."""
        circuit = self._circuits.get(provider)
        if circuit is not None:
            circuit.trial_at = None

    def failed(self, provider: str, error: BaseException) -> None:
        """A call failed: count it if it was the provider's fault, opening the circuit at
        the threshold (at once again after a failed trial); else it says nothing of the
        provider's health (as a canceled call)."""
        if not self.threshold or not is_providers_fault(error):
            self.abandoned(provider)
            return
        circuit = self._circuits.setdefault(provider, _Circuit())
        circuit.failures += 1
        if circuit.failures >= self.threshold or circuit.trial_at is not None:
            circuit.opened_at = self._clock()
            circuit.trial_at = None
