"""Circuit breakers: a provider failing by its own fault opens after the threshold,
skips calls for the cool-down, lets one trial through, and closes on its success."""

from __future__ import annotations

import pytest

from imagemill.errors import (
    AuthError,
    CircuitOpen,
    ContentRejected,
    InvalidInput,
    ProviderError,
    ProviderInputError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    UnusableAnswer,
)
from imagemill.providers.circuits import Circuits, CircuitState, is_providers_fault


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def circuits(clock: Clock) -> Circuits:
    return Circuits(threshold=3, cooldown=30.0, clock=clock)


def _fail(circuits: Circuits, times: int, error: Exception | None = None) -> None:
    for _ in range(times):
        circuits.check("p")
        circuits.failed("p", error or ProviderUnavailable("503"))


def test_it_opens_after_the_threshold_of_failures_in_a_row(circuits: Circuits) -> None:
    _fail(circuits, 2)
    assert circuits.state("p") == (CircuitState.CLOSED, 0.0)
    circuits.succeeded("p")  # a success in between starts the count again
    _fail(circuits, 2)
    assert circuits.state("p")[0] is CircuitState.CLOSED
    _fail(circuits, 1)
    assert circuits.state("p") == (CircuitState.OPEN, 30.0)
    with pytest.raises(CircuitOpen, match="p failed 3 times in a row") as raised:
        circuits.check("p")
    assert raised.value.retry_after == 30.0 and raised.value.retryable
    circuits.check("other")  # each provider has its own


def test_after_the_cooldown_one_trial_goes_through_and_its_success_closes(
    circuits: Circuits, clock: Clock
) -> None:
    _fail(circuits, 3)
    clock.now += 29.9
    with pytest.raises(CircuitOpen):
        circuits.check("p")
    clock.now += 0.1
    assert circuits.state("p")[0] is CircuitState.HALF_OPEN
    circuits.check("p")  # the trial
    with pytest.raises(CircuitOpen):
        circuits.check("p")  # only one at a time
    circuits.succeeded("p")
    assert circuits.state("p")[0] is CircuitState.CLOSED
    circuits.check("p")


def test_a_failed_trial_opens_it_again_at_once(circuits: Circuits, clock: Clock) -> None:
    _fail(circuits, 3)
    clock.now += 30
    circuits.check("p")
    circuits.failed("p", ProviderTimeout("slow"))
    assert circuits.state("p") == (CircuitState.OPEN, 30.0)


def test_a_trial_that_never_reports_back_lets_another_through_a_cooldown_later(
    circuits: Circuits, clock: Clock
) -> None:
    _fail(circuits, 3)
    clock.now += 30
    circuits.check("p")  # its worker died, say
    clock.now += 30
    circuits.check("p")


@pytest.mark.parametrize(
    ("error", "counts"),
    [
        (ProviderUnavailable("down"), True),
        (ProviderTimeout("slow"), True),
        (TimeoutError(), True),
        (AuthError("bad key"), True),
        (ProviderError("500", retryable=True), True),
        (ProviderError("broken for good", retryable=False), False),
        (RateLimited("slow down", retry_after=2), False),
        (ContentRejected("no"), False),
        (ProviderInputError("bad size"), False),
        (InvalidInput("bad"), False),
        (CircuitOpen("open", retry_after=1), False),
    ],
)
def test_only_the_providers_own_faults_count(error: Exception, counts: bool) -> None:
    assert is_providers_fault(error) is counts


def test_a_threshold_of_zero_never_opens(clock: Clock) -> None:
    circuits = Circuits(threshold=0, cooldown=30.0, clock=clock)
    _fail(circuits, 100)
    assert circuits.state("p")[0] is CircuitState.CLOSED


def test_a_trial_that_ends_without_an_answer_lets_the_next_call_be_the_trial(
    circuits: Circuits, clock: Clock
) -> None:
    _fail(circuits, 3)
    clock.now += 30
    circuits.check("p")
    assert circuits.wait("p") == 30.0, "the trial is in flight"
    circuits.abandoned("p")  # canceled by its owner, say
    assert circuits.wait("p") == 0.0
    circuits.check("p")
    circuits.failed("p", RateLimited("slow down", retry_after=1))  # up, but no verdict
    circuits.check("p")


def test_wait_is_the_rest_of_the_cooldown_while_open(circuits: Circuits, clock: Clock) -> None:
    assert circuits.wait("p") == 0.0
    _fail(circuits, 3)
    clock.now += 10
    assert circuits.wait("p") == 20.0


def test_an_answer_that_breaks_its_brief_is_not_the_providers_fault() -> None:
    assert not is_providers_fault(UnusableAnswer("2 hashtags of the 5 asked"))
