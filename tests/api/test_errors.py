"""The error envelope: ``{"error": {"code", "message", "field"?}}`` with the right status."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from imagemill.api.app import create_app
from imagemill.api.errors import error_response
from imagemill.errors import Forbidden, InvalidInput, RateLimited, Unauthorized
from imagemill.runtime import Runtime

BASE_URL = "http://imagemill.test"


async def boom() -> None:
    raise RuntimeError("secret internals: password=hunter2")


async def rate_limited() -> None:
    raise RateLimited("slow down", retry_after=2.4)


async def forbidden() -> None:
    raise Forbidden("not yours")


async def unauthorized() -> None:
    raise Unauthorized("who are you")


async def invalid() -> None:
    raise InvalidInput("too purple", field="params.colour")


@pytest.fixture
async def http(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """The real app with throwaway routes that raise; 500s come back as a server sends them."""
    app: FastAPI = create_app(runtime=runtime)
    for path, endpoint in (
        ("/boom", boom),
        ("/rate-limited", rate_limited),
        ("/forbidden", forbidden),
        ("/unauthorized", unauthorized),
        ("/invalid", invalid),
    ):
        app.add_api_route(path, endpoint)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client,
    ):
        yield client


def error_of(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert {"code", "message"} <= set(error) <= {"code", "message", "field"}
    assert isinstance(error["message"], str)
    assert error["message"]
    return error


async def test_404_shape(http: httpx.AsyncClient) -> None:
    response = await http.get("/v1/jobs/job_missing")

    assert response.status_code == 404
    assert error_of(response) == {"code": "not_found", "message": "no job 'job_missing'"}


async def test_unknown_route_is_404_in_the_same_shape(http: httpx.AsyncClient) -> None:
    response = await http.get("/v1/nothing-here")

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


async def test_wrong_method_is_405_in_the_same_shape(http: httpx.AsyncClient) -> None:
    response = await http.delete("/v1/models")

    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"
    assert "GET" in response.headers["allow"]


async def test_409_shape(http: httpx.AsyncClient) -> None:
    body = {"model": "placeholder", "prompt": "done", "size": "64x64"}
    job = (await http.post("/v1/jobs", json=body, headers={"Prefer": "wait=10"})).json()

    response = await http.post(f"/v1/jobs/{job['id']}/cancel")

    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "conflict"
    assert "succeeded" in error["message"]
    assert "field" not in error


async def test_422_shape_names_the_field(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/jobs", json={"model": "placeholder", "prompt": "x", "n": 0})

    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "invalid_input"
    assert error["field"] == "n"


async def test_422_for_a_body_that_is_not_json(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/jobs", content=b"{not json", headers={"content-type": "application/json"}
    )

    assert response.status_code == 422
    assert error_of(response)["code"] == "invalid_input"


async def test_422_from_a_domain_error_keeps_its_field(http: httpx.AsyncClient) -> None:
    response = await http.get("/invalid")

    assert response.status_code == 422
    assert error_of(response) == {
        "code": "invalid_input",
        "message": "too purple",
        "field": "params.colour",
    }


async def test_unhandled_exception_is_a_500_internal_error_without_details(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = await http.get("/boom")

    assert response.status_code == 500
    error = error_of(response)
    assert error["code"] == "internal_error"
    assert "hunter2" not in response.text, "internals never leak into a response"
    assert any("unhandled error" in r.message and r.exc_info for r in caplog.records), (
        "it is logged"
    )


async def test_rate_limited_carries_retry_after(http: httpx.AsyncClient) -> None:
    response = await http.get("/rate-limited")

    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    assert error_of(response)["code"] == "rate_limited"


async def test_unauthorized_asks_for_a_bearer_token(http: httpx.AsyncClient) -> None:
    response = await http.get("/unauthorized")

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert error_of(response)["code"] == "unauthorized"


async def test_forbidden_is_403(http: httpx.AsyncClient) -> None:
    response = await http.get("/forbidden")

    assert response.status_code == 403
    assert error_of(response) == {"code": "forbidden", "message": "not yours"}


def test_error_response_omits_a_missing_field() -> None:
    without = error_response(404, "not_found", "gone")
    with_field = error_response(422, "invalid_input", "bad", field="size", headers={"X-A": "1"})

    assert without.status_code == 404
    assert json.loads(bytes(without.body)) == {"error": {"code": "not_found", "message": "gone"}}
    assert json.loads(bytes(with_field.body))["error"]["field"] == "size"
    assert with_field.headers["x-a"] == "1"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/v1/jobs", "GET, POST"),
        ("OPTIONS", "/v1/jobs/job_1", "GET, DELETE"),
        ("POST", "/v1/webhooks/default", "GET, PUT, DELETE"),
        ("DELETE", "/v1/presets", "GET, POST"),
    ],
)
async def test_405_allow_names_every_method_of_the_path(
    http: httpx.AsyncClient, method: str, path: str, allowed: str
) -> None:
    """The router answers for the first route of the path; Allow names all of them."""
    response = await http.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allowed


def test_an_error_never_echoes_what_a_response_cannot_carry() -> None:
    body = json.loads(error_response(422, "invalid_input", "bad \x00 key", "params.a\x00").body)
    assert body["error"] == {"code": "invalid_input", "message": "bad  key", "field": "params.a"}
