"""``/metrics`` (``telemetry/metrics.py``): Prometheus' text format, and after a known mix
of jobs every counter holds the known value, embedded and distributed (each process
counting what it did: their sum is the deployment's)."""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fakes.server import free_port, serve_here
from imagemill.api.app import create_app
from imagemill.auth import new_key
from imagemill.config import Settings
from imagemill.jobs.service import utcnow
from imagemill.runtime import Runtime
from imagemill.specs import Pricing
from imagemill.telemetry.metrics import Metrics

PRICE = 0.25
WAIT = {"Prefer": "wait=30"}
Served = Callable[[Settings], AbstractAsyncContextManager[httpx.AsyncClient]]  # conftest's
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of an exposition, by name and labels (``prometheus_client.parser``)."""
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            found[key] = found.get(key, 0.0) + sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


async def run_the_mix(http: httpx.AsyncClient) -> None:
    """Two plain jobs of 2 images, a seeded one and its cache hit, one failing for good,
    one failing once and then succeeding, one made by its fallback (the model asked for
    has no key here); each waited for."""
    image = {"model": "placeholder", "prompt": "mix", "size": "32x32"}
    requests = [
        {**image, "n": 2},
        {**image, "n": 2, "prompt": "mix 2"},
        {**image, "seed": 5},
        {**image, "params": {"fail": "permanent"}},
        {**image, "prompt": "once", "params": {"fail": "transient", "fail_attempts": 1}},
        {
            **image,
            "model": "openai/gpt-image-1",
            "size": "64x64",
            "fallback": [{"model": "placeholder"}],
        },
    ]
    for body in requests:
        response = await http.post("/v1/jobs", json=body, headers=WAIT)
        assert response.status_code == 200, response.text
    hit = await http.post("/v1/jobs", json={**image, "seed": 5}, headers=WAIT)
    assert hit.json()["cached"] is True


def check_the_mix(found: Samples) -> None:
    p, gpt = "placeholder", "openai/gpt-image-1"
    assert value(found, "imagemill_jobs_submitted_total", model=p, kind="image") == 6
    assert value(found, "imagemill_jobs_submitted_total", model=gpt, kind="image") == 1
    assert value(found, "imagemill_jobs_total", model=p, kind="image", status="succeeded") == 5
    assert value(found, "imagemill_jobs_total", model=p, kind="image", status="failed") == 1
    assert value(found, "imagemill_jobs_total", model=gpt, kind="image", status="succeeded") == 1
    assert value(found, "imagemill_cache_hits_total", model=p) == 1
    assert value(found, "imagemill_cache_misses_total", model=p) == 5
    assert value(found, "imagemill_job_attempts_total", model=p) == 6  # the retried one twice
    assert value(found, "imagemill_job_retries_total", model=p, code="provider_unavailable") == 1
    assert value(found, "imagemill_provider_errors_total", model=p, code="provider_error") == 1
    assert value(found, "imagemill_fallbacks_total", model=gpt, fallback=p) == 1
    # Five calls of the placeholder made something (the cache hit made no call), one failed
    # for good, one failed once; gpt-image-1 was never called (no key here): its fallback was.
    assert value(found, "imagemill_provider_calls_total", model=p, outcome="ok") == 5
    assert value(found, "imagemill_provider_calls_total", model=p, outcome="provider_error") == 1
    calls_unavailable = {"model": p, "outcome": "provider_unavailable"}
    assert value(found, "imagemill_provider_calls_total", **calls_unavailable) == 1
    assert value(found, "imagemill_provider_calls_total", model=gpt, outcome="ok") == 0
    assert value(found, "imagemill_outputs_total", model=p) == 7  # 2+2+1+1, and the fallback's
    assert value(found, "imagemill_cost_usd_total", model=p) == pytest.approx(6 * PRICE)
    assert value(found, "imagemill_cost_usd_total", model=gpt) == pytest.approx(PRICE)
    ended = value(found, "imagemill_job_duration_seconds_count", model=p, status="succeeded")
    assert ended == 4  # the cache hit is not timed
    assert value(found, "imagemill_job_queue_wait_seconds_count", model=p) == 5


@pytest.fixture
def priced(settings: Settings) -> Settings:
    return settings.model_copy(update={"prices": {"placeholder": Pricing(per_image=PRICE)}})


async def test_the_counters_after_a_known_mix_embedded(priced: Settings, served: Served) -> None:
    async with served(priced) as http:
        await run_the_mix(http)
        scraped = await http.get("/metrics")
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    found = samples(scraped.text)
    check_the_mix(found)
    stored = sum(f.stat().st_size for f in (priced.data_dir / "blobs").rglob("*") if f.is_file())
    assert value(found, "imagemill_storage_written_bytes_total") == stored > 0


async def test_the_counters_after_a_known_mix_distributed(
    api_and_worker: tuple[str, Runtime],
) -> None:
    url, worker = api_and_worker
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        await run_the_mix(http)
        api_scrape = (await http.get("/metrics")).text
    worker_scrape = worker.metrics.exposition()[0].decode()
    api, on_worker = samples(api_scrape), samples(worker_scrape)
    # Each process counted what it did: the API the submits, the worker the rest.
    assert value(api, "imagemill_jobs_submitted_total", model="placeholder", kind="image") == 6
    assert (
        value(on_worker, "imagemill_jobs_submitted_total", model="placeholder", kind="image") == 0
    )
    assert value(api, "imagemill_job_attempts_total", model="placeholder") == 0
    total = {key: api.get(key, 0.0) + on_worker.get(key, 0.0) for key in {*api, *on_worker}}
    check_the_mix(total)


async def test_a_canceled_job_is_counted(settings: Settings, served: Served) -> None:
    async with served(settings) as http:
        slow = await http.post(
            "/v1/jobs",
            json={"model": "placeholder", "prompt": "s", "params": {"latency_ms": 30_000}},
        )
        await http.post(f"/v1/jobs/{slow.json()['id']}/cancel")
        found = samples((await http.get("/metrics")).text)
    status = {"model": "placeholder", "kind": "image", "status": "canceled"}
    assert value(found, "imagemill_jobs_total", **status) == 1
    assert (
        value(found, "imagemill_job_duration_seconds_count", model="placeholder", status="canceled")
        == 1
    )


async def test_an_open_event_stream_is_counted_until_it_closes(settings: Settings) -> None:
    async with Runtime(settings) as runtime:
        app = create_app(runtime=runtime)
        # On a socket: an in-process transport would hold the stream until it ended.
        async with (
            app.router.lifespan_context(app),
            serve_here(app) as url,
            httpx.AsyncClient(base_url=url, timeout=30) as http,
        ):
            slow = {"model": "placeholder", "prompt": "s", "params": {"latency_ms": 30_000}}
            job_id = (await http.post("/v1/jobs", json=slow)).json()["id"]
            async with http.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
                chunks = stream.aiter_bytes()
                await anext(chunks)  # the stream is open: its first events came
                during = samples((await http.get("/metrics")).text)
                await http.post(f"/v1/jobs/{job_id}/cancel")
                async for _ in chunks:  # to its end, after done
                    pass
            after = samples((await http.get("/metrics")).text)
    assert value(during, "imagemill_sse_subscribers") == 1
    assert value(after, "imagemill_sse_subscribers") == 0


async def test_where_keys_are_required_only_admin_keys_read_metrics(owners: Any) -> None:
    runtime = owners.runtime
    operator = await runtime.accounts.owner_named("operator", utcnow())
    admin = new_key()
    await runtime.accounts.add_key(
        operator.id, "ops", admin.prefix, admin.key_hash, utcnow(), admin=True
    )
    headers = {"Authorization": f"Bearer {admin.plaintext}"}
    assert (await owners.anonymous.get("/metrics")).status_code == 401
    assert (await owners.alice.get("/metrics")).status_code == 403
    scraped = await owners.anonymous.get("/metrics", headers=headers)
    assert scraped.status_code == 200
    assert "imagemill_jobs_submitted_total" in scraped.text


def test_the_readme_and_the_dashboard_name_only_metrics_that_exist() -> None:
    served_names = {
        sample.name
        for family in text_string_to_metric_families(Metrics().exposition()[0].decode())
        for sample in family.samples
    } | {family.name for family in Metrics().registry.collect()}
    root = Path(__file__).parents[2]
    readme = (root / "README.md").read_text()
    section = readme[readme.index("## Metrics") : readme.index("## Configuration")]
    dashboard = (root / "docs" / "grafana-dashboard.json").read_text()
    named = set(re.findall(r"imagemill_[a-z_]+", section + dashboard))
    exposed = served_names | {f"{n}_total" for n in served_names}
    exposed |= {f"{n}_{part}" for n in served_names for part in ("bucket", "count", "sum")}
    assert named and named <= exposed, sorted(named - exposed)
    table = set(re.findall(r"`(imagemill_[a-z_]+)`", section))
    defined = {family.name for family in Metrics().registry.collect()}
    assert {n.removesuffix("_total") for n in table} == defined  # every metric documented


def test_a_worker_serves_its_metrics_on_a_port_of_its_own() -> None:
    metrics = Metrics()
    metrics.outputs.labels("placeholder").inc(3)
    port = free_port()
    metrics.serve("127.0.0.1", port)
    scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert value(samples(scraped.text), "imagemill_outputs_total", model="placeholder") == 3
