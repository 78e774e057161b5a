"""The studio's live cards in headless Chromium: how long a job has run and has left,
which attempt it is on, when it retries, and a job page that follows its job."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from browser import require_chromium
from fakes.server import serve
from imagemill.api.app import create_app
from imagemill.config import Settings

require_chromium()

from playwright.sync_api import Browser, expect  # noqa: E402

SLOW = 5000  # ms each attempt takes: long enough to be watched on a busy machine


def test_a_card_says_how_long_which_attempt_and_when_it_retries(
    browser: Browser, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data", retry_base_seconds=5)
    with serve(create_app(settings), lifespan="on") as url:
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.goto(url)
        page.get_by_label("Prompt", exact=True).fill("a kite that stumbles once")
        params = page.locator("#params")
        params.get_by_label("Simulated latency (ms)").fill(str(SLOW))
        params.get_by_label("Fail on purpose").select_option(label="transient")
        params.get_by_label("Failing attempts").fill("1")
        page.get_by_role("button", name="Generate").click()

        card = page.locator("#jobs .job").first
        when = card.locator(".when")
        expect(card.locator(".status")).to_have_text("running")
        expect(when).to_have_text(re.compile(r"^0:0\d"))  # the time it has run
        expect(when).to_contain_text("left", timeout=SLOW)  # and about how long it has left
        expect(when).to_have_text(
            re.compile(r"^attempt 1 of 3 failed · retrying in [1-5] s$"), timeout=2 * SLOW
        )
        expect(card.locator(".message")).to_contain_text("simulated transient failure")
        expect(when).to_contain_text("attempt 2 of 3", timeout=3 * SLOW)
        expect(card.locator(".message")).not_to_contain_text("failure")  # stale: cleared
        expect(card.locator(".status")).to_have_text("succeeded", timeout=3 * SLOW)
        expect(when).to_have_text("")

        # Its page, opened while it ran, would have followed it to the end: so does one
        # opened on a running job now.
        page.get_by_label("Prompt", exact=True).fill("a page that follows")
        params.get_by_label("Fail on purpose").select_option(label="default")
        page.get_by_role("button", name="Generate").click()
        running = page.locator("#jobs .job").first
        expect(running.locator(".status")).to_have_text("running")
        page.goto(f"{url}/gallery/{running.get_attribute('data-job')}")
        expect(page.locator("[data-field=status]")).to_have_text("running")
        expect(page.locator(".images figure img")).to_have_count(1, timeout=3 * SLOW)
        expect(page.locator("[data-field=status]")).to_have_text("succeeded")


def test_a_batch_page_follows_every_item_from_one_stream(browser: Browser, tmp_path: Path) -> None:
    with serve(create_app(Settings(data_dir=tmp_path / "data")), lifespan="on") as url:
        items = [
            {
                "model": "placeholder",
                "prompt": f"page {i}",
                "size": "32x32",
                "params": {"latency_ms": 1500},
            }
            for i in range(8)
        ]
        batch = httpx.post(f"{url}/v1/batches", json={"requests": items, "concurrency": 2}).json()
        page = browser.new_context().new_page()
        page.goto(f"{url}/batches/{batch['id']}")

        cards = page.locator(".batch .job")
        expect(cards).to_have_count(8)  # more than a browser's 6 streams per host: one stream
        expect(page.locator(".batch-status")).to_have_text("succeeded", timeout=60_000)
        expect(cards.locator(".status")).to_have_text(["succeeded"] * 8)
        expect(cards.locator(".outputs img")).to_have_count(8)
        assert page.locator(".batch-progress").evaluate("p => p.value") == 1
        expect(page.locator(".counts")).to_have_text("8 succeeded")

        job = httpx.get(f"{url}/v1/jobs/{batch['job_ids'][0]}").json()
        page.goto(f"{url}/gallery/{job['id']}")
        page.get_by_role("link", name="all its items").click()
        expect(page).to_have_url(f"{url}/batches/{batch['id']}")
