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
        # Given once (which one was meant?), integers as JSON writes them:
        ("/v1/jobs?limit=1&limit=2", "limit"),  # which one? not the last one silently
        ("/v1/jobs?status=queued&status=failed", "status"),
        ("/v1/jobs?limit=1_0", "limit"),  # Python reads 10; no JSON or HTTP client writes it
        ("/v1/jobs?limit=+1", "limit"),
        ("/v1/jobs?limit=%201", "limit"),
        ("/v1/jobs?limit=01", "limit"),
        ("/v1/jobs?limit=10", None),
        ("/v1/jobs?unread=1&unread=2", None),  # a parameter no route reads is ignored
        ("/v1/usage?since=2026-01-01&since=2026-02-01", "since"),
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


@pytest.mark.parametrize(
    ("path", "field", "words"),
    [
        ("/v1/jobs?created_after=2026-01-01T00:00:60Z", "created_after", "leap second"),
        ("/v1/jobs?created_after=2026-02-30", "created_after", "exist"),
        ("/v1/jobs?created_after=2026-01-01T00:00:00%2B25:00", "created_after", "exist"),
        ("/v1/jobs?created_after=0001-01-01T00:00:00%2B01:00", "created_after", "9999"),
        ("/v1/jobs?created_before=9999-12-31T23:59:59-01:00", "created_before", "9999"),
        ("/v1/usage?since=2026-02-29", "since", "exist"),
    ],
)
async def test_dates_and_times_that_do_not_exist_are_422(
    served: httpx.AsyncClient, path: str, field: str, words: str
) -> None:
    error = await _error(await served.get(path))
    assert error["field"] == field
    assert words in error["message"]


async def test_the_last_day_there_is_is_a_valid_until(served: httpx.AsyncClient) -> None:
    response = await served.get("/v1/usage", params={"until": "9999-12-31"})
    assert response.status_code == 200, response.text
    assert response.json()["until"] == "9999-12-31"
    edge = await served.get("/v1/jobs", params={"created_before": "9999-12-31T23:59:59Z"})
    assert edge.status_code == 200, edge.text


async def test_a_header_the_route_reads_is_given_once(served: httpx.AsyncClient) -> None:
    body = json.dumps({"model": "placeholder", "prompt": "x"}).encode()
    twice = [
        ("content-type", "application/json"),
        ("Idempotency-Key", "a"),
        ("Idempotency-Key", "b"),
    ]
    response = await served.post("/v1/jobs", content=body, headers=twice)
    assert (await _error(response))["field"] == "Idempotency-Key"
    assert (await served.get("/v1/jobs")).json()["data"] == [], "nothing was submitted"


async def test_blanks_around_an_idempotency_key_are_not_part_of_it(
    served: httpx.AsyncClient,
) -> None:
    body = {"model": "placeholder", "prompt": "x"}
    first = await served.post("/v1/jobs", json=body, headers={"Idempotency-Key": "key-1"})
    again = await served.post("/v1/jobs", json=body, headers={"Idempotency-Key": " key-1\t"})
    assert first.status_code == 202, first.text
    assert again.json()["id"] == first.json()["id"]
    inside = await served.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k\x7fy"})
    assert (await _error(inside))["field"] == "Idempotency-Key"


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v1/jobs"), ("POST", "/v1/presets"), ("PUT", "/v1/webhooks/default")],
)
@pytest.mark.parametrize("content_type", ["text/plain", None])
async def test_a_json_body_sent_as_something_else_is_415(
    served: httpx.AsyncClient, method: str, path: str, content_type: str | None
) -> None:
    body = json.dumps({"model": "placeholder", "prompt": "x", "name": "n", "url": "x"})
    headers = {"content-type": content_type} if content_type else {}
    response = await served.request(method, path, content=body.encode(), headers=headers)
    assert response.status_code == 415, response.text
    assert "application/json" in response.json()["error"]["message"]
    assert (await served.get("/v1/jobs")).json()["data"] == []


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/in#fragment",  # never sent: the receiver sees another URL
        "https://hooks.example.com/in%zz",
        "https://hooks.example.com/caf\u00e9",
        "https://hooks.example.com/in?q=\u00e9",
    ],
)
async def test_a_webhook_url_is_sent_as_given_or_refused(
    served: httpx.AsyncClient, url: str
) -> None:
    job = {"model": "placeholder", "prompt": "x", "webhook_url": url}
    error = await _error(await served.post("/v1/jobs", json=job))
    assert error["field"] == "webhook_url"
    endpoint = await served.put("/v1/webhooks/default", json={"url": url})
    assert (await _error(endpoint))["field"] == "url"


async def test_each_event_is_named_once(served: httpx.AsyncClient) -> None:
    job = {"model": "placeholder", "prompt": "x", "webhook_events": ["done", "done"]}
    error = await _error(await served.post("/v1/jobs", json=job))
    assert error["field"] == "webhook_events"
    assert "more than once" in error["message"]
    endpoint = {"url": "https://hooks.example.com/in", "events": ["done", "done"]}
    response = await served.put("/v1/webhooks/default", json=endpoint)
    assert (await _error(response))["field"] == "events"


async def test_model_and_models_together_name_the_field(served: httpx.AsyncClient) -> None:
    body = {"model": "placeholder", "models": ["placeholder"], "prompt": "x"}
    error = await _error(await served.post("/v1/jobs", json=body))
    assert error["field"] == "models"
