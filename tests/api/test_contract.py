"""The published contract: a bounded schemathesis run, every check, against
``/openapi.json`` of ``imagemill serve`` requiring keys, finds no server error and no
place where the server and its schema disagree.

The server is as people run it (its own process), with the OpenAI models backed by their
fake, so the schema names real models and generated requests run real jobs. Each job is
cut short (5 s, one attempt): schemathesis asks for whatever the schema allows, a 10-second
4096² video included. The run's settings are in ``tests/contract/schemathesis.toml``, its
one replaced check in ``tests/contract/hooks.py``. ``IMAGEMILL_CONTRACT_SEED`` picks other
cases than the fixed seed's.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from fakes.openai_images import FakeOpenAI
from fakes.server import free_port, serve, wait_until_ready
from imagemill.api.patterns import number_pattern, size_pattern
from imagemill.auth import new_key
from imagemill.config import Settings
from imagemill.domain import Size
from imagemill.jobs.service import utcnow
from imagemill.runtime import Runtime

TESTS = Path(__file__).resolve().parents[1]
CONFIG = TESTS / "contract" / "schemathesis.toml"
RUN_SECONDS = 900


async def _key(settings: Settings) -> str:
    async with Runtime(settings, run_workers=False, sweep=False) as runtime:
        owner = await runtime.accounts.owner_named("contract", utcnow())
        key = new_key()
        await runtime.accounts.add_key(owner.id, "contract", key.prefix, key.key_hash, utcnow())
        return key.plaintext


@pytest.mark.timeout(RUN_SECONDS + 120)  # its own limit, not the suite's 300 s per test
def test_schemathesis_finds_no_server_error_and_no_contract_violation(tmp_path: Path) -> None:
    fake = FakeOpenAI(api_key="sk-contract")
    data_dir = tmp_path / "data"
    key = asyncio.run(_key(Settings(data_dir=data_dir)))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with serve(fake.app) as fake_url, log.open("wb") as server_log:
        env = {
            **os.environ,
            "OPENAI_API_KEY": "sk-contract",
            "OPENAI_BASE_URL": f"{fake_url}/v1",
            "IMAGEMILL_REQUIRE_KEYS": "true",
            "IMAGEMILL_JOB_TIMEOUT_SECONDS": "5",
            "IMAGEMILL_MAX_ATTEMPTS": "1",
            "IMAGEMILL_OPENAI_WAIT_SECONDS": "10",
            "IMAGEMILL_MAX_WAIT_SECONDS": "5",
        }
        command = [sys.executable, "-m", "imagemill", "serve", "--port", str(port)]
        server = subprocess.Popen(
            [*command, "--data-dir", str(data_dir)], stdout=server_log, stderr=server_log, env=env
        )
        try:
            wait_until_ready(url, server, log)
            seed = os.environ.get("IMAGEMILL_CONTRACT_SEED")
            run = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "schemathesis.cli",
                    "--config-file",
                    str(CONFIG),
                    "run",
                    f"{url}/openapi.json",
                    "--checks",
                    "all",
                    "--exclude-checks",  # replaced by contract.hooks' version (see there)
                    "positive_data_acceptance",
                    "--header",
                    f"Authorization: Bearer {key}",
                    *(["--seed", seed] if seed else []),
                ],
                capture_output=True,
                text=True,
                timeout=RUN_SECONDS,
                cwd=tmp_path,
                env={
                    **os.environ,
                    "PYTHONPATH": str(TESTS),
                    "SCHEMATHESIS_HOOKS": "contract.hooks",
                },
            )
        finally:
            server.terminate()
            server.wait(timeout=30)
    report = run.stdout + run.stderr
    (tmp_path / "schemathesis.txt").write_text(report)
    assert run.returncode == 0, report[-12_000:]
    assert "Server error" not in report
    assert " passed" in report


# -- the document itself, quickly ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("low", "high", "even"), [(16, 8192, False), (64, 1920, True), (7, 7, False)]
)
def test_number_patterns_match_exactly_the_range(low: int, high: int, even: bool) -> None:
    pattern = re.compile(f"^{number_pattern(low, high, even=even)}$")
    matched = [n for n in range(0, 10_000) if pattern.match(str(n))]
    assert matched == [n for n in range(low, high + 1) if not even or n % 2 == 0]
    assert not pattern.match(f"0{low}"), "no leading zeros"


def test_size_patterns_match_the_servers_own_size_check() -> None:
    pattern = re.compile(size_pattern(16, 8192))
    for text in ("16x16", "8192X8192", "1920x1080", "15x16", "0016x16", "1024 x 768", "8193x10"):
        try:
            Size.parse(text)
            parsed = True
        except ValueError:
            parsed = False
        assert bool(pattern.match(text)) == parsed, text


async def test_the_document_states_every_answer_and_the_models(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    document = (await client.get("/openapi.json")).json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            statuses = set(operation["responses"])
            if not path.startswith(("/healthz", "/readyz", "/v1/providers/")):
                assert "401" in statuses, (method, path)
            if operation.get("requestBody"):
                assert "413" in statuses, (method, path)
            compatible = path.startswith("/v1/images/")
            for status, answer in operation["responses"].items():
                if status.startswith(("4", "5")):
                    [schema] = [c["schema"] for c in answer["content"].values()]
                    expected = "OpenAIErrorOut" if compatible else "ErrorOut"
                    assert schema["$ref"].endswith(expected), (method, path, status)
    events = document["paths"]["/v1/jobs/{job_id}/events"]["get"]["responses"]["200"]
    assert events["content"]["text/event-stream"]["itemSchema"]["properties"]["event"]["enum"]
    submission = document["components"]["schemas"]["Submission"]
    models = submission["properties"]["model"]["anyOf"][0]["enum"]
    assert "placeholder" in models
    assert all(spec.id in models for spec in runtime.registry.models() if spec.available)
    assert "HTTPValidationError" not in document["components"]["schemas"]
