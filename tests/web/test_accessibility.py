"""Every studio page, on a wide screen and a 390 px phone, light and dark: no serious or
critical accessibility violation (axe-core, run in the page), no sideways scroll on the
phone, and no layout shift while its images load."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from browser import AXE, LAYOUT_SHIFT, require_chromium

require_chromium()
if not AXE.exists():
    why = f"axe-core is not installed at {AXE} (scripts/test runs npm ci in tests/web)"
    if os.environ.get("CI"):
        pytest.fail(why, pytrace=False)
    pytest.skip(why, allow_module_level=True)

from playwright.sync_api import Browser, Page, expect  # noqa: E402

PHONE = {"width": 390, "height": 844}
WIDE = {"width": 1280, "height": 900}


@pytest.fixture(scope="module")
def paths(studio: str) -> dict[str, str]:
    """A path of every page, with something on it."""
    with httpx.Client(base_url=studio, headers={"Prefer": "wait=60"}, timeout=120) as http:
        job = http.post(
            "/v1/jobs", json={"model": "placeholder", "prompt": "a11y", "size": "96x64"}
        )
        body = {
            "models": ["placeholder", "local/tiny"],
            "prompt": "a11y pair",
            "size": "64x64",
            "params": {},
        }
        group = http.post("/v1/jobs", json=body).json()
        for caption in range(2):
            http.post(
                "/v1/jobs",
                json={
                    "model": "placeholder",
                    "kind": "caption",
                    "prompt": f"Linen dress {caption}",
                },
            )
        items = [{"model": "placeholder", "prompt": f"a11y {i}", "size": "32x32"} for i in range(2)]
        batch = http.post("/v1/batches", json={"requests": items}, headers={"Prefer": ""}).json()
        board = http.post("/v1/collections", json={"name": "a11y board"}).json()
        item = {"job_id": job.json()["id"], "index": 0}
        http.post(f"/v1/collections/{board['id']}/items", json={"items": [item]})
    return {
        "generate": "/",
        "collections": "/collections",
        "collection": f"/collections/{board['id']}",
        "gallery": "/gallery",
        "empty gallery": "/gallery?q=nothing-matches-this",
        "job": f"/gallery/{job.json()['id']}",
        "comparison": f"/compare/{group['group_id']}",
        "comparisons": "/compare",
        "batch": f"/batches/{batch['id']}",
        "presets": "/presets",
        "sign-in": "/signin",
        "not found": "/gallery/job_missing",
    }


@pytest.fixture(params=["light", "dark"])
def scheme(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["wide", "phone"])
def screen(request: pytest.FixtureRequest, browser: Browser, scheme: str) -> Iterator[Page]:
    phone = request.param == "phone"
    context = browser.new_context(
        viewport=PHONE if phone else WIDE,
        is_mobile=phone,
        has_touch=phone,
        color_scheme=scheme,  # type: ignore[arg-type]
        bypass_csp=True,  # axe is added to the page as a script of its own
    )
    yield context.new_page()
    context.close()


def _violations(page: Page) -> list[dict[str, Any]]:
    page.add_script_tag(path=str(AXE))
    found: list[dict[str, Any]] = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations
          .filter((v) => v.impact === "serious" || v.impact === "critical")
          .map((v) => ({id: v.id, impact: v.impact, help: v.help,
                        nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" "))}))"""
    )
    return found


@pytest.mark.parametrize(
    "name",
    [
        "generate",
        "gallery",
        "empty gallery",
        "job",
        "comparison",
        "comparisons",
        "batch",
        "presets",
        "collections",
        "collection",
        "sign-in",
        "not found",
    ],
)
def test_every_page_is_accessible_fits_a_phone_and_does_not_shift(
    studio: str, paths: dict[str, str], screen: Page, name: str
) -> None:
    screen.goto(studio + paths[name])
    screen.wait_for_load_state("networkidle")

    assert _violations(screen) == [], name
    width = screen.viewport_size["width"] if screen.viewport_size else 0
    assert screen.evaluate("document.documentElement.scrollWidth") <= width, name
    assert screen.evaluate(LAYOUT_SHIFT) == 0, name


def test_the_open_viewer_is_accessible_and_fits_a_phone(
    studio: str, paths: dict[str, str], screen: Page
) -> None:
    screen.goto(f"{studio}/gallery")
    screen.locator(".tile a[data-view]").first.click()
    expect(screen.get_by_role("dialog", name="Image viewer")).to_be_visible()

    assert _violations(screen) == []
    width = screen.viewport_size["width"] if screen.viewport_size else 0
    assert screen.evaluate("document.documentElement.scrollWidth") <= width


def test_the_selection_bar_is_accessible_and_fits_a_phone(
    studio: str, paths: dict[str, str], screen: Page
) -> None:
    screen.goto(f"{studio}/gallery")
    screen.locator(".tile .pick").first.check()
    expect(screen.get_by_role("region", name="Selected images")).to_be_visible()

    assert _violations(screen) == []
    width = screen.viewport_size["width"] if screen.viewport_size else 0
    assert screen.evaluate("document.documentElement.scrollWidth") <= width
