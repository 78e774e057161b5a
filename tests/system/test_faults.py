"""Fault test: 100 jobs against provider fakes that answer 30% 5xx, 10% 429 with
Retry-After and hang 10% of the time. Every job ends, succeeded or failed with a clear
error, before its deadline; none is left queued or running; no output is stored twice."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest

from fakes.faults import Faults
from fakes.gemini import FakeGemini
from fakes.openai_images import FakeOpenAI
from fakes.server import serve
from imagemill.config import Settings
from imagemill.domain import JobStatus, Submission
from imagemill.runtime import Runtime

JOBS = 100
DEADLINE_SECONDS = 25.0
MODELS = ("openai/gpt-image-1", "openai/dall-e-3", "gemini/gemini-2.5-flash-image")
CLEAR_ERRORS = {
    "provider_error",
    "rate_limited",
    "provider_timeout",
    "provider_unavailable",
    "circuit_open",
}


def _faults(seed: int) -> Faults:
    return Faults(rate_5xx=0.3, rate_429=0.1, rate_hang=0.1, retry_after=0.2, seed=seed)


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, str]]:
    openai_fake = FakeOpenAI(api_key="sk-faults", faults=_faults(1))
    openai_fake.faults.only = {"generations", "edits"}
    gemini_fake = FakeGemini(api_key="gm-faults", faults=_faults(2))
    with serve(openai_fake.app) as openai_url, serve(gemini_fake.app) as gemini_url:
        yield {"openai": f"{openai_url}/v1", "gemini": gemini_url}


@pytest.mark.slow
async def test_every_job_ends_cleanly_before_its_deadline(
    settings: Settings, fakes: dict[str, str]
) -> None:
    configured = Settings(
        **{
            **settings.model_dump(),
            "openai_api_key": "sk-faults",
            "openai_base_url": fakes["openai"],
            "gemini_api_key": "gm-faults",
            "gemini_base_url": fakes["gemini"],
            "provider_timeout_seconds": 0.5,
            "max_attempts": 4,
            "retry_base_seconds": 0.05,
            "retry_max_seconds": 0.5,
            "circuit_cooldown_seconds": 1.0,  # every timing here is scaled down alike
            "worker_concurrency": 16,
            "job_deadline_seconds": DEADLINE_SECONDS,
        }
    )
    async with Runtime(configured) as runtime:
        owner = await runtime.local_owner()
        ids = []
        for i in range(JOBS):
            submission = Submission(
                model=MODELS[i % len(MODELS)], prompt=f"fault test {i}", size="512x512"
            )
            ids.append((await runtime.service.submit(owner.id, submission))[0].id)

        started = time.monotonic()
        jobs = await runtime.service.wait(owner.id, ids, timeout=DEADLINE_SECONDS + 10)
        took = time.monotonic() - started

        statuses = Counter(job.status for job in jobs)
        assert set(statuses) <= {JobStatus.SUCCEEDED, JobStatus.FAILED}, statuses
        assert statuses[JobStatus.SUCCEEDED] >= JOBS // 2, statuses  # the retries pay off
        for job in jobs:
            assert job.deadline_at is not None and job.finished_at is not None
            assert job.finished_at <= job.deadline_at + timedelta(seconds=1), job.id
            if job.status is JobStatus.FAILED:
                assert job.error is not None and job.error.message
                assert job.error.code in CLEAR_ERRORS, job.error
                assert job.outputs == []
            else:
                assert len(job.outputs) == 1
        assert took < DEADLINE_SECONDS + 5

        assets = [o.sha256 for job in jobs for o in job.outputs]
        assert len(assets) == len(set(assets))
        blob_dir = configured.data_dir / "blobs" / "sha256"
        stored = [p.name for p in blob_dir.rglob("*") if p.is_file()]
        assert sorted(stored) == sorted(assets), "a blob was stored twice or orphaned"
