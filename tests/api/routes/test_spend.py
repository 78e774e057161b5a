"""Spend controls over the API: budgets per key and per owner (402 past a limit, nothing
lost to failures or cache hits, no overshoot under concurrent submits), the admin API,
``/v1/usage``'s budget lines, ``POST /v1/estimate`` agreeing with what jobs cost, and
keys' rate limits (429 with ``Retry-After`` and the IETF headers)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from fakes.openai_images import FakeOpenAI
from fakes.server import serve
from imagemill.api.app import create_app
from imagemill.auth import new_key
from imagemill.config import Settings
from imagemill.domain import Output, Size, Task
from imagemill.jobs.service import utcnow
from imagemill.providers.base import RunContext
from imagemill.providers.placeholder import PlaceholderProvider
from imagemill.providers.registry import Registry
from imagemill.providers.sizes import nearest_size
from imagemill.runtime import Runtime
from imagemill.specs import ModelSpec, Pricing, SizeRange
from imagemill.spend.budgets import parse_limit

BASE_URL = "http://imagemill.test"
WAIT = {"Prefer": "wait=30"}
PRICE = 0.04  # per placeholder image, configured: the gpt-image-1 price


class PricedModels(PlaceholderProvider):
    """Three priced models drawing as the placeholder does, the way hosted ones bill: a
    flat price, a price by size at fixed sizes (the nearest made, as DALL·E's), and one
    by quality."""

    name = "priced"

    def models(self) -> list[ModelSpec]:
        [base] = super().models()
        quality = {
            "type": "object",
            "additionalProperties": False,
            "properties": {"quality": {"enum": ["standard", "hd"]}},
        }
        common = {"provider": self.name, "params_schema": quality, "limits": base.limits}
        return [
            ModelSpec(id="priced/flat", name="flat", pricing=Pricing(per_image=0.011), **common),
            ModelSpec(
                id="priced/sized",
                name="sized",
                sizes=SizeRange(fixed=["64x64", "128x64"], default="64x64"),
                pricing=Pricing(per_image=0.02, by_size={"128x64": 0.03}),
                **common,
            ),
            ModelSpec(
                id="priced/quality",
                name="quality",
                pricing=Pricing(per_image=0.05, by_quality={"hd": {"*": 0.125}}),
                **common,
            ),
        ]

    async def run(self, task: Task, ctx: RunContext) -> list[Output]:
        if task.model == "sized":  # made at the nearest fixed size, as billed
            made = nearest_size(Size(task.width, task.height), ["64x64", "128x64"])
            task = dataclasses.replace(task, width=made.width, height=made.height)
        made = await super().run(dataclasses.replace(task, params={}), ctx)
        quality = task.params.get("quality")  # billed at the quality made, as OpenAI reports
        return [dataclasses.replace(output, quality=quality) for output in made]


@dataclasses.dataclass
class Server:
    runtime: Runtime
    admin: httpx.AsyncClient
    client: Callable[[str], httpx.AsyncClient]

    async def key(self, owner: str, budget: str | None = None) -> tuple[str, str]:
        """A new key of ``owner`` (with ``budget``, as ``keys create --budget``): its
        plaintext and id."""
        account = await self.runtime.accounts.owner_named(owner, utcnow())
        key = new_key()
        key_id = await self.runtime.accounts.add_key(
            account.id, "test", key.prefix, key.key_hash, utcnow()
        )
        if budget is not None:
            await self.runtime.budgets.set(key_id, account.id, parse_limit(budget), utcnow())
        return key.plaintext, key_id


@asynccontextmanager
async def serving(
    settings: Settings, *, run_workers: bool = True, registry: Registry | None = None
) -> AsyncIterator[Server]:
    registry = registry or Registry([PlaceholderProvider(), PricedModels()], settings.prices)
    runtime = Runtime(settings, registry=registry, run_workers=run_workers)
    async with runtime, AsyncExitStack() as stack:
        admin_key = new_key()
        operator = await runtime.accounts.owner_named("operator", utcnow())
        await runtime.accounts.add_key(
            operator.id, "ops", admin_key.prefix, admin_key.key_hash, utcnow(), admin=True
        )
        app = create_app(runtime=runtime)
        await stack.enter_async_context(app.router.lifespan_context(app))

        def client(key: str) -> httpx.AsyncClient:
            transport = httpx.ASGITransport(app=app)
            headers = {"Authorization": f"Bearer {key}"}
            return httpx.AsyncClient(transport=transport, base_url=BASE_URL, headers=headers)

        admin = await stack.enter_async_context(client(admin_key.plaintext))
        yield Server(runtime, admin, client)


@pytest.fixture
def priced(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "require_keys": True,
            "prices": {"placeholder": Pricing(per_image=PRICE)},
            "data_dir": settings.data_dir.with_name("budgeted"),
        }
    )


@pytest.fixture
async def server(priced: Settings) -> AsyncIterator[Server]:
    async with serving(priced) as started:
        yield started


def _image(**fields: Any) -> dict[str, Any]:
    return {"model": "placeholder", "prompt": "a poster", "size": "32x32", **fields}


async def test_a_daily_dollar_buys_25_images_and_the_26th_is_a_402_naming_it(
    server: Server,
) -> None:
    key, key_id = await server.key("shop", "1/day")
    other, _ = await server.key("shop")  # the same owner's other key: no budget of its own
    async with server.client(key) as http, server.client(other) as unbudgeted:
        for number in range(25):
            response = await http.post("/v1/jobs", json=_image(prompt=f"{number}"), headers=WAIT)
            assert response.status_code == 200, (number, response.text)
            assert response.json()["cost_usd"] == pytest.approx(PRICE)

        refused = await http.post("/v1/jobs", json=_image(prompt="26"), headers=WAIT)
        assert (await unbudgeted.post("/v1/jobs", json=_image(), headers=WAIT)).status_code == 200
        usage = (await http.get("/v1/usage")).json()
        history = (await http.get("/v1/jobs", params={"limit": 100})).json()

    assert refused.status_code == 402, refused.text
    error = refused.json()["error"]
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    assert error["code"] == "budget_exceeded"
    assert "budget of $1/day" in error["message"]
    assert (error["scope"], error["period"], error["limit"]) == ("key", "day", 1.0)
    assert (error["spent"], error["reserved"], error["remaining"]) == (1.0, 0.0, 0.0)
    assert error["requested"] == PRICE
    assert error["resets_at"] == f"{tomorrow.isoformat()}T00:00:00Z"
    assert len(history["data"]) == 26  # 25, and the other key's: the refused left none
    [budget] = usage["budgets"]
    assert budget["id"] == key_id and budget["scope"] == "key"
    assert _counted(server, 'imagemill_budget_rejections_total{scope="key"}') == 1
    assert (budget["limit_usd"], budget["spent_usd"], budget["reserved_usd"]) == (1.0, 1.0, 0.0)
    assert budget["remaining_usd"] == 0.0


async def test_gpt_image_1_at_a_configured_4_cents_fills_a_daily_dollar_in_25_images(
    priced: Settings,
) -> None:
    """The issue's case itself: the real OpenAI SDK against the fake, which reports token
    usage (about $0.042 an image at list prices); the operator's $0.04 is what counts."""
    fake = FakeOpenAI(api_key="sk-budget")
    with serve(fake.app) as url:
        configured = priced.model_copy(
            update={
                "openai_api_key": SecretStr("sk-budget"),
                "openai_base_url": f"{url}/v1",
                "prices": {"openai/gpt-image-1": Pricing(per_image=PRICE)},
            }
        )
        async with serving(configured, registry=Registry.from_entry_points(configured)) as server:
            key, _ = await server.key("shop", "1/day")
            body = {"model": "openai/gpt-image-1", "prompt": "a poster", "size": "1024x1024"}
            async with server.client(key) as http:
                made = [
                    await http.post(
                        "/v1/jobs", json={**body, "prompt": f"poster {n}"}, headers=WAIT
                    )
                    for n in range(26)
                ]
    assert [m.status_code for m in made] == [200] * 25 + [402]
    assert {m.json()["cost_usd"] for m in made[:25]} == {PRICE}
    assert made[25].json()["error"]["spent"] == 1.0
    assert len(fake.calls) == 25  # the refused one never reached the provider


async def test_failed_canceled_and_cached_jobs_cost_nothing_against_a_budget(
    server: Server,
) -> None:
    key, _ = await server.key("shop", f"{2 * PRICE}/total")
    async with server.client(key) as http:
        for _ in range(3):  # more than the budget buys, had failures been charged
            failed = await http.post(
                "/v1/jobs", json=_image(params={"fail": "permanent"}), headers=WAIT
            )
            assert failed.json()["status"] == "failed"
        slow = await http.post("/v1/jobs", json=_image(params={"latency_ms": 30_000}))
        canceled = await http.post(f"/v1/jobs/{slow.json()['id']}/cancel")
        assert canceled.json()["status"] == "canceled"
        seeded = await http.post("/v1/jobs", json=_image(seed=7), headers=WAIT)
        assert seeded.json()["cost_usd"] == pytest.approx(PRICE)
        another = await http.post("/v1/jobs", json=_image(seed=8), headers=WAIT)
        assert another.status_code == 200  # the budget is now spent
        over = await http.post("/v1/jobs", json=_image(seed=9), headers=WAIT)
        hit = await http.post("/v1/jobs", json=_image(seed=7), headers=WAIT)  # cached: free
        [budget] = (await http.get("/v1/usage")).json()["budgets"]

    assert over.status_code == 402
    assert hit.status_code == 200 and hit.json()["cached"] is True
    assert hit.json()["cost_usd"] == 0
    assert (budget["spent_usd"], budget["reserved_usd"]) == (2 * PRICE, 0.0)


async def test_a_running_job_holds_its_estimate_until_it_ends(server: Server) -> None:
    key, _ = await server.key("shop", f"{PRICE}/total")
    async with server.client(key) as http:
        slow = await http.post("/v1/jobs", json=_image(params={"latency_ms": 30_000}))
        assert slow.status_code == 202
        [held] = (await http.get("/v1/usage")).json()["budgets"]
        refused = await http.post("/v1/jobs", json=_image())
        await http.post(f"/v1/jobs/{slow.json()['id']}/cancel")
        [released] = (await http.get("/v1/usage")).json()["budgets"]
        retried = await http.post(f"/v1/jobs/{slow.json()['id']}/retry")
        second = await http.post("/v1/jobs", json=_image())

    assert (held["reserved_usd"], held["remaining_usd"]) == (PRICE, 0.0)
    assert refused.status_code == 402
    assert (released["reserved_usd"], released["remaining_usd"]) == (0.0, PRICE)
    assert retried.status_code == 202  # a retry holds the estimate again...
    assert second.status_code == 402  # ...so nothing else fits meanwhile


async def test_a_retry_past_the_budget_is_a_402_and_the_job_stays_as_it_was(
    server: Server,
) -> None:
    key, _ = await server.key("shop", f"{PRICE}/total")
    async with server.client(key) as http:
        failed = await http.post(
            "/v1/jobs", json=_image(params={"fail": "permanent"}), headers=WAIT
        )
        job_id = failed.json()["id"]
        spent = await http.post("/v1/jobs", json=_image(), headers=WAIT)
        assert spent.status_code == 200
        retried = await http.post(f"/v1/jobs/{job_id}/retry")
        job = (await http.get(f"/v1/jobs/{job_id}")).json()

    assert retried.status_code == 402
    assert retried.json()["error"]["code"] == "budget_exceeded"
    assert job["status"] == "failed"


async def test_a_batch_reserves_its_whole_estimate_or_is_refused_whole(server: Server) -> None:
    key, _ = await server.key("studio", f"{5 * PRICE}/month")
    items = [_image(prompt=f"scene {i}") for i in range(6)]
    async with server.client(key) as http:
        refused = await http.post("/v1/batches", json={"requests": items})
        listed = (await http.get("/v1/batches")).json()
        fits = await http.post("/v1/batches", json={"requests": items[:5]})
        [budget] = (await http.get("/v1/usage")).json()["budgets"]

    assert refused.status_code == 402, refused.text
    assert refused.json()["error"]["requested"] == PRICE  # the item that did not fit
    assert listed["data"] == []  # nothing of the refused batch was recorded
    assert fits.status_code == 202
    assert budget["spent_usd"] + budget["reserved_usd"] == pytest.approx(5 * PRICE)


async def test_an_owner_budget_covers_all_its_keys_together(server: Server) -> None:
    first, _ = await server.key("team")
    second, _ = await server.key("team")
    team = await server.runtime.accounts.find_owner("team")
    set_ = await server.admin.put(
        f"/v1/admin/budgets/{team.id}", json={"limit_usd": 2 * PRICE, "period": "week"}
    )
    assert set_.status_code == 200, set_.text
    async with server.client(first) as one, server.client(second) as two:
        assert (await one.post("/v1/jobs", json=_image(), headers=WAIT)).status_code == 200
        assert (await two.post("/v1/jobs", json=_image(), headers=WAIT)).status_code == 200
        refused = await one.post("/v1/jobs", json=_image(), headers=WAIT)
    assert refused.status_code == 402
    assert refused.json()["error"]["scope"] == "owner"
    assert refused.json()["error"]["period"] == "week"


async def _concurrent_submits(
    clients: list[httpx.AsyncClient], count: int
) -> tuple[list[int], list[str]]:
    """``count`` submits at once, spread over ``clients``: their statuses, and the ids of
    the jobs accepted."""

    async def submit(number: int) -> httpx.Response:
        http = clients[number % len(clients)]
        return await http.post("/v1/jobs", json=_image(prompt=f"burst {number}"))

    responses = await asyncio.gather(*(submit(n) for n in range(count)))
    accepted = [r.json()["id"] for r in responses if r.status_code == 202]
    return [r.status_code for r in responses], accepted


async def _finished(runtime: Runtime, owner: str, job_ids: list[str]) -> None:
    """Until every one of ``job_ids`` ended (a generous deadline)."""
    owner_id = (await runtime.accounts.find_owner(owner)).id
    jobs = await runtime.service.wait(owner_id, job_ids, timeout=120)
    assert all(job.status.terminal for job in jobs), [job.status for job in jobs]


async def test_64_concurrent_submits_never_overshoot_a_nearly_spent_budget(
    server: Server,
) -> None:
    key, _ = await server.key("shop", "1/day")
    async with server.client(key) as http:
        for number in range(20):  # $0.80 of $1.00 spent: room for 5 more
            made = await http.post("/v1/jobs", json=_image(prompt=f"{number}"), headers=WAIT)
            assert made.status_code == 200
        statuses, accepted = await _concurrent_submits([http], 64)
        await _finished(server.runtime, "shop", accepted)
        [budget] = (await http.get("/v1/usage")).json()["budgets"]

    assert (statuses.count(202), statuses.count(402)) == (5, 59)
    assert (budget["spent_usd"], budget["reserved_usd"]) == (1.0, 0.0)


# -- estimates --------------------------------------------------------------------------------


async def test_an_estimate_of_a_comparison_is_what_its_jobs_then_cost(server: Server) -> None:
    key, _ = await server.key("studio")
    request = {
        "models": ["priced/flat", "priced/sized", "priced/quality"],
        "prompt": "a lighthouse",
        "size": "120x60",  # "sized" makes 128x64, its dearer size
        "n": 2,
        "params": {"quality": "hd"},
    }
    async with server.client(key) as http:
        estimated = await http.post("/v1/estimate", json=request)
        made = await http.post("/v1/jobs", json=request, headers=WAIT)
    assert estimated.status_code == 200, estimated.text
    assert made.status_code == 200, made.text
    estimate = estimated.json()
    costs = {job["model"]: job["cost_usd"] for job in made.json()["jobs"]}
    assert {item["model"]: item["cost_usd"] for item in estimate["items"]} == pytest.approx(costs)
    assert costs == pytest.approx(
        {"priced/flat": 0.022, "priced/sized": 0.06, "priced/quality": 0.25}
    )
    assert estimate["total_usd"] == pytest.approx(sum(costs.values()))
    assert (estimate["fits_budget"], estimate["budgets"]) == (True, [])


async def test_an_estimate_of_a_batch_is_what_its_items_then_cost(server: Server) -> None:
    key, _ = await server.key("studio", "0.5/month")
    models = ["priced/flat", "priced/sized", "placeholder"]
    items = [{"model": models[i % 3], "prompt": f"scene {i}", "size": "64x64"} for i in range(12)]
    async with server.client(key) as http:
        estimated = (await http.post("/v1/estimate", json={"requests": items})).json()
        batch = await http.post("/v1/batches", json={"requests": items})
        assert batch.status_code == 202, batch.text
        ids = batch.json()["job_ids"]
        await _finished(server.runtime, "studio", ids)
        jobs = [(await http.get(f"/v1/jobs/{i}")).json() for i in ids]

    assert len(estimated["items"]) == 12
    assert estimated["total_usd"] == pytest.approx(sum(job["cost_usd"] for job in jobs))
    assert estimated["total_usd"] == pytest.approx(4 * (0.011 + 0.02 + PRICE))
    assert estimated["fits_budget"] is True
    [budget] = estimated["budgets"]
    assert (budget["limit_usd"], budget["period"]) == (0.5, "month")


async def test_an_estimate_says_what_a_fallback_may_hold_and_whether_it_fits(
    server: Server,
) -> None:
    key, _ = await server.key("shop", "0.02/day")
    request = {
        "model": "priced/flat",
        "prompt": "a poster",
        "size": "64x64",
        "fallback": [{"model": "priced/sized"}],
    }
    async with server.client(key) as http:
        estimate = (await http.post("/v1/estimate", json=request)).json()
        refused = await http.post("/v1/jobs", json=request)
    [item] = estimate["items"]
    assert (item["cost_usd"], item["reserve_usd"]) == (0.011, 0.02)
    assert estimate["fits_budget"] is True
    assert refused.status_code == 202  # 0.02 fits 0.02 exactly


async def test_an_estimate_of_a_cached_request_is_free(server: Server) -> None:
    key, _ = await server.key("shop")
    request = _image(seed=11)
    async with server.client(key) as http:
        await http.post("/v1/jobs", json=request, headers=WAIT)
        [item] = (await http.post("/v1/estimate", json=request)).json()["items"]
    assert (item["cached"], item["cost_usd"], item["unit_usd"]) == (True, 0.0, PRICE)


async def test_an_estimate_refuses_what_submit_refuses_naming_the_field(server: Server) -> None:
    key, _ = await server.key("shop")
    async with server.client(key) as http:
        unknown = await http.post("/v1/estimate", json=_image(model="nope/nothing"))
        extra = await http.post("/v1/estimate", json=_image(colour="red"))
        item = await http.post("/v1/estimate", json={"requests": [_image(n=0)]})
        nothing = await http.post("/v1/estimate", json={"requests": []})
    assert (unknown.status_code, unknown.json()["error"]["field"]) == (422, "model")
    assert (extra.status_code, extra.json()["error"]["field"]) == (422, "colour")
    assert (item.status_code, item.json()["error"]["field"]) == (422, "requests.0.n")
    assert (nothing.status_code, nothing.json()["error"]["field"]) == (422, "requests")


# -- the admin API ----------------------------------------------------------------------------


async def test_only_admin_keys_manage_budgets(server: Server) -> None:
    key, key_id = await server.key("shop")
    async with server.client(key) as http:
        assert (await http.get("/v1/admin/budgets")).status_code == 403
        forbidden = await http.put(f"/v1/admin/budgets/{key_id}", json={"limit_usd": 100})
    assert forbidden.status_code == 403 and "admin" in forbidden.json()["error"]["message"]

    set_ = await server.admin.put(
        f"/v1/admin/budgets/{key_id}", json={"limit_usd": 20, "period": "month"}
    )
    listed = await server.admin.get("/v1/admin/budgets")
    removed = await server.admin.delete(f"/v1/admin/budgets/{key_id}")
    again = await server.admin.delete(f"/v1/admin/budgets/{key_id}")
    assert set_.status_code == 200, set_.text
    assert (set_.json()["scope"], set_.json()["limit_usd"], set_.json()["period"]) == (
        "key",
        20.0,
        "month",
    )
    assert [b["id"] for b in listed.json()] == [key_id]
    assert (removed.status_code, again.status_code) == (204, 404)


async def test_the_admin_api_names_what_is_wrong(server: Server) -> None:
    _, key_id = await server.key("shop")
    unknown = await server.admin.put("/v1/admin/budgets/key_nobody", json={"limit_usd": 5})
    zero = await server.admin.put(f"/v1/admin/budgets/{key_id}", json={"limit_usd": 0})
    fine = await server.admin.put(f"/v1/admin/budgets/{key_id}", json={"limit_usd": 0.0000001})
    period = await server.admin.put(
        f"/v1/admin/budgets/{key_id}", json={"limit_usd": 5, "period": "year"}
    )
    assert unknown.status_code == 404
    assert (zero.status_code, zero.json()["error"]["field"]) == (422, "limit_usd")
    assert (fine.status_code, fine.json()["error"]["field"]) == (422, "limit_usd")
    assert (period.status_code, period.json()["error"]["field"]) == (422, "period")


# -- rate limits ------------------------------------------------------------------------------


async def _limited(server: Server, owner: str, **limits: int) -> str:
    key, key_id = await server.key(owner)
    response = await server.admin.put(f"/v1/admin/keys/{key_id}/limits", json=limits)
    assert response.status_code == 200, response.text
    return key


async def test_the_61st_request_in_a_minute_gets_429_and_another_key_is_not_affected(
    server: Server,
) -> None:
    key = await _limited(server, "shop", requests_per_minute=60)
    other, _ = await server.key("shop")
    async with server.client(key) as http, server.client(other) as unlimited:
        answers = [await http.get("/v1/usage") for _ in range(60)]
        refused = await http.get("/v1/usage")
        others = [await unlimited.get("/v1/usage") for _ in range(61)]

    assert [a.status_code for a in answers] == [200] * 60
    assert answers[0].headers["RateLimit-Policy"] == '"requests";q=60;w=60'
    assert answers[0].headers["RateLimit"].startswith('"requests";r=59;t=')
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert refused.json()["error"]["policy"] == "requests"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["RateLimit"].startswith('"requests";r=0;t=')
    assert {a.status_code for a in others} == {200}
    assert "RateLimit" not in others[0].headers
    assert _counted(server, 'imagemill_rate_limit_rejections_total{policy="requests"}') == 1


async def test_images_a_minute_count_what_requests_make(server: Server) -> None:
    key = await _limited(server, "shop", images_per_minute=5)
    async with server.client(key) as http:
        first = await http.post("/v1/jobs", json=_image(n=3))
        second = await http.post("/v1/jobs", json=_image(n=3))
        smaller = await http.post("/v1/jobs", json=_image(n=2))
        too_many = await http.post("/v1/jobs", json=_image(n=6))
    assert (first.status_code, second.status_code, smaller.status_code) == (202, 429, 202)
    assert second.json()["error"]["policy"] == "images"
    assert "Retry-After" in second.headers
    assert too_many.status_code == 429
    assert "Retry-After" not in too_many.headers  # waiting would not help
    assert "more than this API key's limit of 5" in too_many.json()["error"]["message"]


async def test_jobs_in_flight_are_limited_exactly_under_concurrent_submits(
    server: Server,
) -> None:
    key = await _limited(server, "shop", concurrent_jobs=3)
    slow = _image(params={"latency_ms": 60_000})
    async with server.client(key) as http:
        answers = await asyncio.gather(*(http.post("/v1/jobs", json=slow) for _ in range(16)))
        statuses = [a.status_code for a in answers]
        refused = next(a for a in answers if a.status_code == 429)
        running = [a.json()["id"] for a in answers if a.status_code == 202]
        await http.post(f"/v1/jobs/{running[0]}/cancel")
        room = await http.post("/v1/jobs", json=slow)
        for job_id in [*running[1:], room.json()["id"]]:
            await http.post(f"/v1/jobs/{job_id}/cancel")

    assert (statuses.count(202), statuses.count(429)) == (3, 13)
    assert refused.json()["error"]["policy"] == "jobs"
    assert room.status_code == 202  # a canceled job frees its place


async def test_the_admin_api_sets_and_lifts_a_keys_limits(server: Server) -> None:
    key, key_id = await server.key("shop")
    await server.admin.put(f"/v1/admin/keys/{key_id}/limits", json={"requests_per_minute": 1})
    async with server.client(key) as http:
        assert (await http.get("/v1/usage")).status_code == 200
        assert (await http.get("/v1/usage")).status_code == 429
        lifted = await server.admin.put(f"/v1/admin/keys/{key_id}/limits", json={})
        assert (await http.get("/v1/usage")).status_code == 200
    unknown = await server.admin.put("/v1/admin/keys/key_nobody/limits", json={})
    zero = await server.admin.put(f"/v1/admin/keys/{key_id}/limits", json={"images_per_minute": 0})
    assert lifted.json() == {
        "key_id": key_id,
        "requests_per_minute": None,
        "images_per_minute": None,
        "concurrent_jobs": None,
    }
    assert unknown.status_code == 404
    assert (zero.status_code, zero.json()["error"]["field"]) == (422, "images_per_minute")


def _counted(server: Server, sample: str) -> float:
    """A sample of the server's ``/metrics`` text (``name{labels}``), 0 if absent."""
    for line in server.runtime.metrics.exposition()[0].decode().splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_a_batch_retry_holds_every_items_estimate_or_none(server: Server) -> None:
    key, _ = await server.key("studio", f"{3 * PRICE}/total")
    failing = [_image(prompt=f"f{i}", params={"fail": "permanent"}) for i in range(3)]
    async with server.client(key) as http:
        batch = (await http.post("/v1/batches", json={"requests": failing})).json()
        await _finished(server.runtime, "studio", batch["job_ids"])
        spent = await http.post("/v1/jobs", json=_image(), headers=WAIT)  # $0.04 of $0.12
        refused = await http.post(f"/v1/batches/{batch['id']}/retry")
        after_refusal = (await http.get(f"/v1/batches/{batch['id']}")).json()
        [budget] = (await http.get("/v1/usage")).json()["budgets"]
    assert spent.status_code == 200
    assert refused.status_code == 402  # three would hold $0.12 where $0.08 is left
    assert after_refusal["counts"]["failed"] == 3  # none of them was queued
    assert (budget["spent_usd"], budget["reserved_usd"]) == (PRICE, 0.0)


# -- found in review ----------------------------------------------------------------------------


async def test_what_was_spent_before_a_budget_existed_counts_against_it(server: Server) -> None:
    key, key_id = await server.key("shop")
    async with server.client(key) as http:
        for n in range(2):  # $0.08 spent with no budget
            assert (
                await http.post("/v1/jobs", json=_image(prompt=f"{n}"), headers=WAIT)
            ).status_code == 200
        set_ = await server.admin.put(
            f"/v1/admin/budgets/{key_id}", json={"limit_usd": 0.1, "period": "day"}
        )
        refused = await http.post("/v1/jobs", json=_image(), headers=WAIT)
        monthly = await server.admin.put(
            f"/v1/admin/budgets/{key_id}", json={"limit_usd": 0.2, "period": "month"}
        )
    assert set_.json()["spent_usd"] == pytest.approx(2 * PRICE)
    assert refused.status_code == 402
    assert monthly.json()["spent_usd"] == pytest.approx(2 * PRICE)  # the month holds today


async def test_a_paid_enhancement_is_spent_even_when_the_render_then_fails(server: Server) -> None:
    key, _ = await server.key("shop", "1/total")
    enhanced = {"enhance": {"model": "placeholder"}}
    async with server.client(key) as http:
        failed = await http.post(
            "/v1/jobs", json=_image(**enhanced, params={"fail": "permanent"}), headers=WAIT
        )
        made = await http.post("/v1/jobs", json=_image(prompt="b", **enhanced), headers=WAIT)
        [budget] = (await http.get("/v1/usage")).json()["budgets"]
    assert failed.json()["status"] == "failed"
    assert made.json()["cost_usd"] == pytest.approx(2 * PRICE)  # enhancing, then the image
    assert (budget["spent_usd"], budget["reserved_usd"]) == (pytest.approx(3 * PRICE), 0.0)


async def test_one_idempotency_key_sent_twice_at_once_is_one_job_even_on_a_tight_budget(
    server: Server,
) -> None:
    key, _ = await server.key("shop", f"{PRICE}/total")
    async with server.client(key) as http:
        headers = {"Idempotency-Key": "poster-1"}
        both = await asyncio.gather(
            *(http.post("/v1/jobs", json=_image(), headers=headers) for _ in range(2))
        )
    assert {a.status_code for a in both} <= {200, 202}, [a.text for a in both]
    assert both[0].json()["id"] == both[1].json()["id"]


async def test_requests_refused_otherwise_do_not_use_up_images_a_minute(server: Server) -> None:
    key, key_id = await server.key("shop", f"{PRICE}/total")
    await server.admin.put(f"/v1/admin/keys/{key_id}/limits", json={"images_per_minute": 2})
    async with server.client(key) as http:
        assert (await http.post("/v1/jobs", json=_image(prompt="1"))).status_code == 202
        for n in range(3):  # over the budget: refused, and not counted as images
            assert (await http.post("/v1/jobs", json=_image(prompt=f"x{n}"))).status_code == 402
        await server.admin.put(f"/v1/admin/budgets/{key_id}", json={"limit_usd": 1})
        second = await http.post("/v1/jobs", json=_image(prompt="2"))
        third = await http.post("/v1/jobs", json=_image(prompt="3"))
    assert second.status_code == 202
    assert (third.status_code, third.json()["error"]["policy"]) == (429, "images")


async def test_a_studio_session_counts_against_the_keys_requests_a_minute(server: Server) -> None:
    key, key_id = await server.key("shop")
    await server.admin.put(f"/v1/admin/keys/{key_id}/limits", json={"requests_per_minute": 2})
    async with server.client(key) as http:
        http.headers.pop("Authorization")
        http.cookies.set("imagemill_session", key)
        answers = [(await http.get("/v1/usage")).status_code for _ in range(3)]
    assert answers == [200, 200, 429]


async def test_the_openai_compatible_answer_carries_the_rate_limit_headers(server: Server) -> None:
    key, key_id = await server.key("shop")
    await server.admin.put(f"/v1/admin/keys/{key_id}/limits", json={"requests_per_minute": 5})
    async with server.client(key) as http:
        answer = await http.post(
            "/v1/images/generations",
            json={"model": "placeholder", "prompt": "compatible", "size": "256x256"},
        )
    assert answer.status_code == 200, answer.text
    assert answer.headers["RateLimit-Policy"] == '"requests";q=5;w=60'
    assert answer.headers["RateLimit"].startswith('"requests";r=4;t=')


async def test_a_non_admin_key_is_no_admin_on_a_keyless_server(
    settings: Settings, make_key: Callable[[str], Any], client: httpx.AsyncClient
) -> None:
    key = await make_key("someone")
    keyed = await client.get("/v1/admin/budgets", headers={"Authorization": f"Bearer {key}"})
    keyless = await client.get("/v1/admin/budgets")
    assert (keyed.status_code, keyless.status_code) == (403, 200)
