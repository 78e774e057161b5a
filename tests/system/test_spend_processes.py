"""Budgets across processes: two ``imagemill serve`` processes on one PostgreSQL database
take 64 concurrent submits against a nearly spent budget, and together overshoot it by
nothing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fakes.server import free_port, wait_until_ready
from imagemill.auth import new_key
from imagemill.config import Settings
from imagemill.jobs.service import utcnow
from imagemill.runtime import Runtime
from imagemill.spend.budgets import parse_limit

PRICE = 0.04


@pytest.fixture
def key(postgres_url: str, tmp_path: Path) -> str:
    """A key with $0.20 a day left, on the database both servers share."""

    async def made() -> str:
        settings = Settings(data_dir=tmp_path / "setup", database_url=postgres_url)
        async with Runtime(settings, run_workers=False, sweep=False) as runtime:
            owner = await runtime.accounts.owner_named("shop", utcnow())
            plaintext = new_key()
            key_id = await runtime.accounts.add_key(
                owner.id, "shop", plaintext.prefix, plaintext.key_hash, utcnow()
            )
            await runtime.budgets.set(key_id, owner.id, parse_limit("0.20/day"), utcnow())
            return plaintext.plaintext

    return asyncio.run(made())


@pytest.fixture
def two_servers(postgres_url: str, tmp_path: Path, key: str) -> Iterator[list[str]]:
    """Two API processes (no workers: the jobs stay queued, their estimates held)."""
    env = {
        **os.environ,
        "IMAGEMILL_DATABASE_URL": postgres_url,
        "IMAGEMILL_PRICES": f'{{"placeholder": {{"per_image": {PRICE}}}}}',
    }
    processes, urls = [], []
    try:
        for name in ("one", "two"):
            port, log = free_port(), tmp_path / f"{name}.log"
            command = [sys.executable, "-m", "imagemill", "serve", "--no-workers"]
            with log.open("w") as out:
                process = subprocess.Popen(
                    [*command, "--port", str(port), "--data-dir", str(tmp_path / name)],
                    stdout=out,
                    stderr=out,
                    env=env,
                )
            processes.append(process)
            urls.append(f"http://127.0.0.1:{port}")
            wait_until_ready(urls[-1], process, log)
        yield urls
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=20)


def test_two_server_processes_never_overshoot_a_budget_together(
    two_servers: list[str], key: str
) -> None:
    async def submit_all() -> list[int]:
        headers = {"Authorization": f"Bearer {key}"}
        clients = [httpx.AsyncClient(base_url=u, headers=headers, timeout=60) for u in two_servers]
        try:
            answers = await asyncio.gather(
                *(
                    clients[n % 2].post(
                        "/v1/jobs",
                        json={"model": "placeholder", "prompt": f"p{n}", "size": "32x32"},
                    )
                    for n in range(64)
                )
            )
            return [a.status_code for a in answers]
        finally:
            for client in clients:
                await client.aclose()

    statuses = asyncio.run(submit_all())
    assert (statuses.count(202), statuses.count(402)) == (5, 59)
