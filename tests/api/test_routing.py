"""The boundary at the HTTP door (``api/routing.py``): every JSON body, query and path
parameter of every route is held to I-JSON, so a value that could not be stored or sent
on is a 422 naming it, and nothing half-stored ever breaks a listing. These run on
SQLite and on PostgreSQL (which refuses NUL in text and lone surrogates in JSON)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from imagemill.db.records import JobDraft
from imagemill.domain import Request
from imagemill.jobs.service import utcnow
from imagemill.runtime import Runtime

JSON = {"content-type": "application/json"}
LONE_SURROGATE = b'{"model": "placeholder", "prompt": "x", "metadata": {"note": "cut \\ud83d"}}'


async def _error(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 422, response.text[:300]
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == "invalid_input"
    return error


async def test_a_lone_surrogate_in_metadata_is_422_and_history_stays_readable(
    served: httpx.AsyncClient,
) -> None:
    before = (await served.get("/v1/jobs")).json()["data"]

    error = await _error(await served.post("/v1/jobs", content=LONE_SURROGATE, headers=JSON))

    assert error["field"] == "metadata.note"
    assert "surrogate" in error["message"]
    listing = await served.get("/v1/jobs")
    assert listing.status_code == 200
    assert listing.json()["data"] == before, "nothing was stored"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "placeholder", "prompt": "nul \x00 inside"}, "prompt"),
        ({"model": "placeholder", "prompt": "x", "negative_prompt": "\ud800"}, "negative_prompt"),
        ({"model": "placeholder", "prompt": "x", "params": {"latency_ms\x00": 1}}, "params"),
        ({"model": "placeholder", "prompt": "x", "metadata": {"a": [{"b": "\x00"}]}}, "metadata"),
        ({"model": "placeholder\x00", "prompt": "x"}, "model"),
        ({"models": ["placeholder", "\udfff"], "prompt": "x"}, "models.1"),
        ({"model": "placeholder", "prompt": "x", "input_assets": ["ast_\x00"]}, "input_assets.0"),
        ({"model": "placeholder", "prompt": "x", "webhook_events": ["done\x00"]}, "webhook_events"),
    ],
)
async def test_text_that_cannot_be_stored_is_refused_in_every_field(
    served: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    # Escaped, as a client sends them (json= would refuse to encode a lone surrogate).
    raw = json.dumps(body).encode()
    error = await _error(await served.post("/v1/jobs", content=raw, headers=JSON))
    assert error["field"].startswith(field)
    assert (await served.get("/v1/jobs")).status_code == 200


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"model": "placeholder", "prompt": "x", "n": 1, "n": 2}', None),
        (b'{"model": "placeholder", "prompt": "x", "metadata": {"v": NaN}}', "metadata.v"),
        (b'{"model": "placeholder", "prompt": "x", "metadata": {"v": 1e999}}', "metadata.v"),
        (
            b'{"model": "placeholder", "prompt": "x", "metadata": {"id": 9007199254740993}}',
            "metadata.id",
        ),
        (b'{"model": "placeholder", "prompt": "x", "seed": 1' + b"0" * 5000 + b"}", None),
    ],
)
async def test_json_that_does_not_round_trip_is_refused(
    served: httpx.AsyncClient, raw: bytes, field: str | None
) -> None:
    error = await _error(await served.post("/v1/jobs", content=raw, headers=JSON))
    assert error.get("field") == field


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"n": True}, "n"),
        ({"n": 2.5}, "n"),
        ({"n": "2"}, "n"),
        ({"seed": True}, "seed"),
        ({"seed": "7"}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"deadline_seconds": True}, "deadline_seconds"),
        ({"deadline_seconds": "60"}, "deadline_seconds"),
        ({"size": "\uff16\uff14x64"}, "size"),  # full-width digits
        ({"size": "64\u00d764"}, "size"),
        ({"aspect_ratio": "\uff11\uff16:9"}, "aspect_ratio"),
    ],
)
async def test_wire_types_are_strict(
    served: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await served.post("/v1/jobs", json={"model": "placeholder", "prompt": "x", **body})
    assert (await _error(response))["field"] == field


async def test_metadata_has_a_size_limit(served: httpx.AsyncClient) -> None:
    body = {"model": "placeholder", "prompt": "x", "metadata": {"blob": "x" * 100_000}}
    error = await _error(await served.post("/v1/jobs", json=body))
    assert error["field"] == "metadata"
    assert "16384" in error["message"].replace(",", "")

    body["metadata"] = {"blob": "x" * 5_000_000}
    too_large = await served.post("/v1/jobs", json=body)
    assert too_large.status_code == 413
    assert too_large.json()["error"]["code"] == "too_large"


async def test_params_and_preset_params_have_size_and_depth_limits(
    served: httpx.AsyncClient,
) -> None:
    deep: dict[str, Any] = {}
    inner = deep
    for _ in range(12):
        inner["k"] = {}
        inner = inner["k"]
    body = {"model": "placeholder", "prompt": "x", "params": {"latency_ms": 0, "x": deep}}
    assert (await _error(await served.post("/v1/jobs", json=body)))["field"] == "params"
    preset = {"name": "huge", "params": {"blob": "x" * 40_000}}
    assert (await _error(await served.post("/v1/presets", json=preset)))["field"] == "params"
    fallback = {"model": "placeholder", "params": {"x": "y" * 40_000}}
    body = {"model": "placeholder", "prompt": "x", "fallback": [fallback]}
    error = await _error(await served.post("/v1/jobs", json=body))
    assert error["field"].startswith("fallback.0")


async def test_preset_and_webhook_bodies_are_checked_too(served: httpx.AsyncClient) -> None:
    raw = b'{"name": "p", "prompt_template": "{prompt} \\u0000"}'
    error = await _error(await served.post("/v1/presets", content=raw, headers=JSON))
    assert error["field"] == "prompt_template"
    raw = b'{"url": "https://example.com/\\ud83d"}'
    error = await _error(await served.put("/v1/webhooks/default", content=raw, headers=JSON))
    assert error["field"] == "url"


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/jobs?q=a%00b", "q"),
        ("/v1/jobs?q=%FF", "q"),  # not UTF-8: never read as U+FFFD and matched
        ("/v1/jobs?model=%ED%A0%BD", "model"),  # a surrogate, in UTF-8's form
        ("/v1/jobs?q=%C0%80", "q"),  # NUL, written overlong
        ("/v1/jobs?unread=%FF", None),  # a parameter no route reads is ignored
        ("/v1/presets/p%FF", "preset"),
        ("/v1/jobs?created_after=2024-01-01%0A", "created_after"),  # a newline after it
        ("/v1/usage?since=2024-01-01%0A", "since"),
        ("/v1/jobs?cursor=abc", "cursor"),  # not a job id: not an empty page
        ("/v1/jobs?cursor=" + "x" * 30, "cursor"),
        ("/v1/jobs/job_%00", "job_id"),
        ("/v1/presets/p%00", "preset"),
    ],
)
async def test_query_and_path_parameters_are_checked(
    served: httpx.AsyncClient, path: str, field: str | None
) -> None:
    response = await served.get(path)
    if field is None:
        assert response.status_code == 200, response.text
        return
    assert (await _error(response))["field"] == field


async def test_a_row_stored_before_the_checks_does_not_break_history(
    runtime: Runtime, served: httpx.AsyncClient
) -> None:
    """A job written by an older version (or by hand) with text no response can carry:
    every listing still answers, showing U+FFFD where the broken character was."""
    owner = await runtime.local_owner()
    request = Request(model="placeholder", prompt="old", metadata={"note": "cut \ud83d\x00!"})
    draft = JobDraft(id="job_legacy", owner_id=owner.id, request=request, max_attempts=1)
    await runtime.repo.create_jobs([draft], utcnow())

    listing = await served.get("/v1/jobs")
    assert listing.status_code == 200, listing.text
    [job] = [j for j in listing.json()["data"] if j["id"] == "job_legacy"]
    assert job["metadata"] == {"note": "cut \ufffd!"}
    assert (await served.get("/v1/jobs/job_legacy")).status_code == 200


@pytest.mark.parametrize(
    "raw",
    [
        b"\xef\xbb\xbf" + b'{"model": "placeholder", "prompt": "x"}',  # a byte order mark
        '{"model": "placeholder", "prompt": "x"}'.encode("utf-16"),
        b'{"model": "placeholder", "prompt": "x", "params": {"a": '
        + b"[" * 5000
        + b"]" * 5000
        + b"}}",  # deeper than the JSON reader goes
    ],
)
async def test_a_body_that_is_not_plain_utf8_json_is_422(
    served: httpx.AsyncClient, raw: bytes
) -> None:
    for path in ("/v1/jobs", "/v1/presets"):
        error = await _error(await served.post(path, content=raw, headers=JSON))
        assert "body" in error["message"]
    assert (await served.get("/v1/jobs")).status_code == 200, "and the server still answers"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"size": "64x64\n"}, "size"),  # Python's $ matches before a final newline
        ({"aspect_ratio": "16:9\n"}, "aspect_ratio"),
        ({"size": "64x64", "aspect_ratio": "1:1"}, "aspect_ratio"),  # which one is meant?
        ({"fallback": [{"model": "placeholder", "bogus": 1}]}, "fallback.0.bogus"),
        ({"metadata": {"a": {"\x00": 1}}}, "metadata.a.\\u0000"),
        ({"\x00": 1}, "\\u0000"),
        ({"webhook_url": "http://a..com/"}, "webhook_url"),
        ({"webhook_url": "http://" + "a" * 64 + ".com/"}, "webhook_url"),
        ({"webhook_url": "http://8.8.8.8:0/"}, "webhook_url"),
    ],
)
async def test_fields_are_named_exactly_and_refused_before_anything_runs(
    served: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    raw = json.dumps({"model": "placeholder", "prompt": "x", **body}).encode()
    error = await _error(await served.post("/v1/jobs", content=raw, headers=JSON))
    assert error["field"] == field
    assert error["message"].strip() == error["message"], "no blank where a name should be"
    assert "<" not in error["message"] and "\\'" not in error["message"], "no Python reprs"


async def test_an_empty_idempotency_key_is_refused(served: httpx.AsyncClient) -> None:
    body = {"model": "placeholder", "prompt": "x"}
    response = await served.post("/v1/jobs", json=body, headers={"Idempotency-Key": ""})
    assert (await _error(response))["field"] == "Idempotency-Key"
