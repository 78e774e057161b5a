"""Outputs, and the finished job, handed over in memory to a request waiting in this
process for its job.

An OpenAI-compatible call answers with its images' base64. Its job's outputs were bytes
in this process a moment before (the provider's answer, stored by the worker), so the
answer takes them from here instead of reading the blob back; the job as the worker
recorded it finished comes too, instead of being read again. (The provider's own base64
is not kept for the answer: encoding 2 MB again takes pybase64 0.2 ms, and keeping the
text would hold a third more megabytes per image until the answer is sent.) Only jobs a
request is ``expect``ing are kept, and only until it has its answer; a job run by
another process, or finished before the request got here, is read from storage as ever.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from imagemill.domain import Job


@dataclass(slots=True)
class Arrivals:
    """What arrived for one expected job: its outputs' bytes by sha256, and the job itself
    once it was recorded finished (by id, as ``JobService.wait`` takes it)."""

    outputs: dict[str, bytes] = field(default_factory=dict)
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

    def offer(self, job_id: str, sha256: str, data: bytes) -> None:
        """An output of ``job_id`` was stored: kept if a request here expects it."""
        arrived = self._expected.get(job_id)
        if arrived is not None:
            arrived.outputs[sha256] = data

    def finished(self, job: Job) -> None:
        """``job`` was recorded finished: kept if a request here expects it."""
        arrived = self._expected.get(job.id)
        if arrived is not None:
            arrived.finished[job.id] = job
