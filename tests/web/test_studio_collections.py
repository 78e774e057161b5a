"""The studio's favourites, collections and multi-select in headless Chromium: what is
marked and filed survives a reload; selected images download as one zip or go."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from browser import require_chromium
from fakes.server import serve
from imagemill.api.app import create_app
from imagemill.config import Settings

require_chromium()

from playwright.sync_api import Browser, Locator, Page, expect  # noqa: E402


@pytest.fixture
def fresh(browser: Browser, tmp_path: Path) -> Any:
    """A studio of its own (nothing else in its gallery) and a page on it."""
    with serve(create_app(Settings(data_dir=tmp_path / "data")), lifespan="on") as url:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        yield url, context.new_page()
        context.close()


def _made(url: str, *prompts: str) -> list[dict[str, Any]]:
    jobs = []
    for prompt in prompts:
        body = {"model": "placeholder", "prompt": prompt, "size": "64x48", "seed": 5}
        response = httpx.post(f"{url}/v1/jobs", json=body, headers={"Prefer": "wait=20"})
        assert response.status_code == 200, response.text
        jobs.append(response.json())
    return jobs


def _tile(page: Page, prompt: str) -> Locator:
    return page.locator(".tile").filter(has=page.locator(".caption", has_text=prompt))


def test_a_favourite_survives_a_reload_and_filters_the_gallery(fresh: Any) -> None:
    url, page = fresh
    _made(url, "a plain hill", "a loved lake")
    page.goto(f"{url}/gallery")
    lake = _tile(page, "a loved lake")
    heart = lake.get_by_role("button", name=re.compile("Favourite"))
    expect(heart).to_have_attribute("aria-pressed", "false")
    lake.hover()
    heart.click()
    expect(heart).to_have_attribute("aria-pressed", "true")

    page.reload()
    expect(_tile(page, "a loved lake").locator(".fave")).to_have_attribute("aria-pressed", "true")
    expect(_tile(page, "a plain hill").locator(".fave")).to_have_attribute("aria-pressed", "false")
    page.get_by_label("Favourites only").check()
    page.get_by_role("button", name="Filter").click()
    expect(page.locator(".tile")).to_have_count(1)
    expect(page.locator(".tile .caption")).to_have_text("a loved lake")

    # The viewer's heart says the same and unmarks it.
    page.locator(".tile a.open").click()
    viewer = page.get_by_role("dialog", name="Image viewer")
    viewer_heart = viewer.locator(".fave")
    expect(viewer_heart).to_have_attribute("aria-pressed", "true")
    viewer_heart.click()
    expect(viewer_heart).to_have_attribute("aria-pressed", "false")
    page.reload()
    expect(page.locator(".tile")).to_have_count(0)
    expect(page.locator(".empty")).to_contain_text("Nothing matches these filters")


def test_selected_images_go_into_a_new_collection_which_survives_a_reload(fresh: Any) -> None:
    url, page = fresh
    _made(url, "red kite", "blue heron", "grey gull")
    page.goto(f"{url}/gallery")
    bar = page.get_by_role("region", name="Selected images")
    expect(bar).to_be_hidden()
    _tile(page, "red kite").get_by_role("checkbox").check()
    _tile(page, "grey gull").get_by_role("checkbox").check()
    expect(bar.locator(".count")).to_have_text("2 selected")

    page.once("dialog", lambda dialog: dialog.accept("Birds"))
    bar.get_by_label("Add to").select_option("new")
    expect(bar.locator(".count")).to_have_text("Added to Birds (2 in all).")

    page.get_by_role("link", name="Collections").click()
    expect(page.locator(".collections li")).to_have_text(re.compile(r"Birds\s+2 images"))
    page.get_by_role("link", name="Birds").click()
    page.reload()
    expect(page.get_by_role("heading", name="Birds")).to_be_visible()
    expect(page.locator(".tile .caption")).to_have_text(["grey gull", "red kite"])

    # Taken out of the collection, the image stays in the gallery.
    _tile(page, "red kite").get_by_role("checkbox").check()
    page.get_by_role("button", name="Remove from this collection").click()
    expect(page.locator(".tile")).to_have_count(1)
    page.reload()
    expect(page.locator(".tile .caption")).to_have_text(["grey gull"])
    page.goto(f"{url}/gallery")
    expect(page.locator(".tile")).to_have_count(3)


def test_selected_images_download_as_one_zip_named_from_their_prompts(fresh: Any) -> None:
    url, page = fresh
    _made(url, "one lemon", "two pears")
    page.goto(f"{url}/gallery")
    for tile in page.locator(".tile").all():
        tile.get_by_role("checkbox").check()
    with page.expect_download() as saved:
        page.get_by_role("button", name="Download zip").click()

    assert saved.value.suggested_filename == "imagemill.zip"
    with zipfile.ZipFile(saved.value.path()) as archive:
        assert archive.namelist() == ["two-pears-seed-5.png", "one-lemon-seed-5.png"]


def test_selected_jobs_are_deleted_together(fresh: Any) -> None:
    url, page = fresh
    kept, *gone = _made(url, "kept", "gone one", "gone two")
    page.goto(f"{url}/gallery")
    for prompt in ["gone one", "gone two"]:
        _tile(page, prompt).get_by_role("checkbox").check()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("region", name="Selected images").get_by_role("button", name="Delete").click()

    expect(page.locator(".tile")).to_have_count(1)
    page.reload()
    expect(page.locator(".tile .caption")).to_have_text(["kept"])
    assert all(httpx.get(f"{url}/v1/jobs/{job['id']}").status_code == 404 for job in gone)
    assert httpx.get(f"{url}/v1/jobs/{kept['id']}").status_code == 200


def test_the_gallery_searches_by_meaning(fresh: Any) -> None:
    url, page = fresh
    _made(url, "a small boat at sea", "a bowl of ramen", "a red fox in snow")
    page.goto(f"{url}/gallery")
    search = page.get_by_label("Search")
    expect(search).to_have_attribute("placeholder", "words or meaning")
    search.fill("ship on the ocean")
    search.press("Enter")

    expect(page.locator(".tile .caption")).to_have_text(["a small boat at sea"])
    search.fill("fox")  # words still find what contains them
    search.press("Enter")
    expect(page.locator(".tile .caption").first).to_have_text("a red fox in snow")


def test_presets_are_made_copied_and_deleted_in_the_studio(fresh: Any) -> None:
    url, page = fresh
    page.goto(url)
    page.get_by_role("link", name="Presets", exact=True).click()
    form = page.locator("#new-preset")
    form.get_by_label("Name").fill("poster")
    form.get_by_label("Prompt template").fill("{prompt}, flat colour poster")
    form.get_by_label("Size").fill("huge")
    form.get_by_role("button", name="Save preset").click()
    expect(form.get_by_label("Size")).to_have_attribute("aria-invalid", "true")
    form.get_by_label("Size").fill("64x48")
    form.get_by_role("button", name="Save preset").click()
    mine = page.locator("li[data-preset]").filter(has_text="poster")
    expect(mine).to_contain_text("{prompt}, flat colour poster")

    page.get_by_role("button", name="Copy style watercolor as a preset of yours").click()
    expect(
        page.locator("section li[data-preset^='pre_']").filter(has_text="watercolor")
    ).to_have_count(2)

    # Yours and the styles are offered on the generate form; a preset shapes the job.
    page.goto(url)
    page.get_by_label("Prompt", exact=True).fill("a harbour")
    page.get_by_label("Preset or style").select_option(label="poster")
    page.get_by_role("button", name="Generate").click()
    card = page.locator("#jobs .job").first
    expect(card.locator(".prompt")).to_have_text("a harbour, flat colour poster")

    page.goto(f"{url}/presets")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete preset poster").click()
    expect(page.locator("li[data-preset]").filter(has_text="flat colour poster")).to_have_count(0)
