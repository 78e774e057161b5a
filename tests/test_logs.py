"""Logging: a level for imagemill's and uvicorn's loggers (``IMAGEMILL_LOG_LEVEL`` or
``--log-level``), and no secret in any line at any level, whoever wrote it."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from fakes.openai_images import FakeOpenAI
from fakes.server import free_port, serve, wait_until_ready
from imagemill import logs
from imagemill.config import Settings

PROVIDER_KEY = "sk-secret-openai-0d1e2f3a4b5c6d7e"
DATABASE_PASSWORD = "pw-3c7f9a1b"


def test_redact_blanks_configured_secrets_and_credential_shapes() -> None:
    redact = logs.Redact([PROVIDER_KEY, DATABASE_PASSWORD]).redact
    line = (
        f"key {PROVIDER_KEY}, url postgresql://u:{DATABASE_PASSWORD}@db/x, "
        "Authorization: Bearer im_AbCdEfGhIjKlMnOpQrStUv, whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    )
    redacted = redact(line)
    for secret in (PROVIDER_KEY, DATABASE_PASSWORD, "im_AbCdEf", "MfKQ9r8GKYqr"):
        assert secret not in redacted
    assert "Bearer [redacted]" in redacted


def test_the_secrets_of_the_settings_are_all_known() -> None:
    settings = Settings(
        openai_api_key=SecretStr(PROVIDER_KEY),
        database_url=f"postgresql://imagemill:{DATABASE_PASSWORD}@127.0.0.1/imagemill",
        broker_url="amqp://guest:broker-pass-9@127.0.0.1/",
        storage_options={"secret_access_key": "s3-secret-77", "region": "eu"},
    )
    found = logs.secrets_of(settings)
    assert {PROVIDER_KEY, DATABASE_PASSWORD, "broker-pass-9", "s3-secret-77"} <= set(found)
    assert "eu" not in found


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """``logging.config.dictConfig`` changes the process's logging: put it back after."""
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    named = {
        n: (logging.getLogger(n).level, logging.getLogger(n).handlers[:])
        for n in ("imagemill", "uvicorn", "uvicorn.error", "uvicorn.access")
    }
    yield
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    for name, (level, handlers) in named.items():
        logging.getLogger(name).setLevel(level)
        logging.getLogger(name).handlers[:] = handlers


def test_the_level_applies_and_a_traceback_is_redacted_too(
    restored_logging: None, capfd: pytest.CaptureFixture[str]
) -> None:
    logs.configure(Settings(log_level="DEBUG", openai_api_key=SecretStr(PROVIDER_KEY)))
    log = logging.getLogger("imagemill.test")
    log.debug("calling with %s", PROVIDER_KEY)
    try:
        raise RuntimeError(f"refused key {PROVIDER_KEY}")
    except RuntimeError:
        log.exception("failed")
    logging.getLogger("httpx").debug("a library speaks at debug too")
    logs.configure(Settings(log_level="warning"))
    log.info("not shown at warning")

    err = capfd.readouterr().err
    assert PROVIDER_KEY not in err
    assert "calling with [redacted]" in err and "refused key [redacted]" in err
    assert "a library speaks at debug too" in err
    assert "not shown at warning" not in err


def test_a_level_that_does_not_exist_is_one_clear_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "imagemill", "serve", "--log-level", "loud", "--data-dir", tmp_path],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "IMAGEMILL_LOG_LEVEL" in result.stderr and "Traceback" not in result.stderr


def test_serve_at_debug_never_writes_a_secret(tmp_path: Path) -> None:
    """A whole server at debug, whose OpenAI calls are refused (the libraries log every
    request and answer): the provider key and the caller's API key appear nowhere."""
    fake = FakeOpenAI(api_key="sk-another-key-entirely")
    port = free_port()
    log_file = tmp_path / "serve.log"
    env = {
        **os.environ,
        "OPENAI_API_KEY": PROVIDER_KEY,
        "IMAGEMILL_LOG_LEVEL": "debug",
        "IMAGEMILL_MAX_ATTEMPTS": "1",
    }
    with serve(fake.app) as fake_url, log_file.open("w") as log:
        env["OPENAI_BASE_URL"] = f"{fake_url}/v1"
        command = [sys.executable, "-m", "imagemill", "serve", "--port", str(port)]
        server = subprocess.Popen(
            [*command, "--data-dir", str(tmp_path / "data")], stdout=log, stderr=log, env=env
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_ready(url, server, log_file)
            headers = {
                "Authorization": "Bearer im_NotARealKeyButShapedLikeOne1234",
                "Prefer": "wait=20",
            }
            body = {"model": "openai/gpt-image-1", "prompt": "a key in the logs?"}
            job = httpx.post(f"{url}/v1/jobs", json=body, headers=headers, timeout=30).json()
            assert job["status"] == "failed" and job["error"]["code"] == "provider_auth"
        finally:
            server.terminate()
            server.wait(timeout=20)
    text = log_file.read_text()
    assert " DEBUG " in text, "debug lines were written"
    assert PROVIDER_KEY not in text
    assert "im_NotARealKey" not in text


def test_json_logs_are_one_object_a_line_with_request_and_job_ids(tmp_path: Path) -> None:
    """``IMAGEMILL_LOG_FORMAT=json`` on a whole server: every line parses; the job's
    status changes and its provider call are lines carrying the job's id, model and
    attempt; the API's lines carry the request's id, which the answer echoes."""
    port = free_port()
    log_file = tmp_path / "serve.log"
    env = {**os.environ, "IMAGEMILL_LOG_FORMAT": "json", "IMAGEMILL_MAX_ATTEMPTS": "2"}
    with log_file.open("w") as log, (tmp_path / "banner.txt").open("w") as banner:
        command = [sys.executable, "-m", "imagemill", "serve", "--port", str(port)]
        server = subprocess.Popen(  # the logs on standard error, the banner on the output
            [*command, "--data-dir", str(tmp_path / "data")], stdout=banner, stderr=log, env=env
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_ready(url, server, log_file)
            headers = {"Prefer": "wait=20", "X-Request-Id": "trace-4f2a.7"}
            body = {
                "model": "placeholder",
                "prompt": "logged",
                "size": "32x32",
                "params": {"fail": "transient", "fail_attempts": 1},
            }
            answer = httpx.post(f"{url}/v1/jobs", json=body, headers=headers, timeout=30)
            fresh = httpx.get(f"{url}/healthz", headers={"X-Request-Id": "bad id\\x01"})
        finally:
            server.terminate()
            server.wait(timeout=20)
    job = answer.json()
    assert job["status"] == "succeeded"
    assert answer.headers["X-Request-Id"] == "trace-4f2a.7"
    assert fresh.headers["X-Request-Id"].startswith("req_")  # not a sane id: a new one
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]  # every one
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    mine = [line for line in lines if line.get("job_id") == job["id"]]
    statuses = [line["status"] for line in mine if line["logger"] == "imagemill.jobs"]
    assert statuses == ["queued", "running", "queued", "running", "succeeded"]
    calls = [line for line in mine if line["logger"] == "imagemill.providers.calls"]
    assert [(c["attempt"], c["outcome"]) for c in calls] == [(1, "error"), (2, "ok")]
    assert calls[0]["error_code"] == "provider_unavailable"
    assert all(c["model"] == "placeholder" and c["duration_ms"] >= 0 for c in calls)
    ended = next(line for line in mine if line.get("status") == "succeeded")
    assert ended["cost_usd"] == 0 and ended["owner_id"].startswith("own_")
    access = [line for line in lines if line["logger"] == "uvicorn.access"]
    assert any(line.get("request_id") == "trace-4f2a.7" for line in access)
    submitted = next(line for line in mine if line.get("status") == "queued")
    assert submitted.get("request_id") == "trace-4f2a.7"  # written while the request ran
