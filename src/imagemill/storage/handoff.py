"""Outputs, and the finished job, handed over in memory to a request waiting in this
process for its job.

An OpenAI-compatible call answers with its images' base64. Its job's outputs were bytes
in this process a moment before (the provider's answer, stored by the worker), so the
answer takes them from here instead of reading the blob back, and reuses the base64
text the provider sent when the bytes kept it (``images.with_png_params``); the job as
the worker recorded it finished comes too, instead of being read again. Only jobs a
request is ``expect``ing are kept, and only until it has its answer; a job run by
another process, or finished before the request got here, is read from storage as ever.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from imagemill.domain import Job


@dataclass(frozen=True, slots=True)
class Fresh:
    """An output just stored: its base64 where the provider's was kept (ASCII), else its
    bytes (the answer encodes them); never both, to hold megabytes once."""

    data: bytes | None
    encoded: bytes | None


@dataclass(slots=True)
class Arrivals:
    """What arrived for one expected job: its outputs by sha256, and the job itself once
    it was recorded finished (by id, as ``JobService.wait`` takes it)."""

    outputs: dict[str, Fresh] = field(default_factory=dict)
    finished: dict[str, Job] = field(default_factory=dict)


class Handoff:
    def __init__(self) -> None:
        self._expected: dict[str, Arrivals] = {}

    @contextmanager
    def expect(self, job_id: str) -> Iterator[Arrivals]:
        """While in this block, what this process records of ``job_id`` arrives in the
        ``Arrivals`` yielded."""
        arrived = self._expected.setdefault(job_id, Arrivals())
        try:
            yield arrived
        finally:
            if self._expected.get(job_id) is arrived:
                del self._expected[job_id]

    def offer(self, job_id: str, sha256: str, data: bytes | None, encoded: bytes | None) -> None:
        """An output of ``job_id`` was stored: kept if a request here expects it."""
        arrived = self._expected.get(job_id)
        if arrived is not None:
            arrived.outputs[sha256] = Fresh(data, encoded)

    def finished(self, job: Job) -> None:
        """``job`` was recorded finished: kept if a request here expects it."""
        arrived = self._expected.get(job.id)
        if arrived is not None:
            arrived.finished[job.id] = job
