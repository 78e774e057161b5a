"""The studio in headless Chromium, second part: the image viewer, "use these settings",
a fresh install's form, and dark mode."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx

from browser import require_chromium
from fakes.server import serve
from imagemill.api.app import create_app
from imagemill.config import Settings

require_chromium()

from playwright.sync_api import Browser, Locator, Page, expect  # noqa: E402


def _made(studio: str, **body: Any) -> dict[str, Any]:
    request = {"model": "placeholder", "size": "96x64", **body}
    response = httpx.post(f"{studio}/v1/jobs", json=request, headers={"Prefer": "wait=20"})
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


def test_the_viewer_steps_through_the_gallery_by_keyboard_and_zooms(
    studio: str, page: Page
) -> None:
    for word in ["viewer one", "viewer two", "viewer three"]:
        _made(studio, prompt=word, size="320x200")
    page.goto(f"{studio}/gallery?q=viewer")
    tiles = page.locator(".tile a[data-view]")
    expect(tiles).to_have_count(3)

    tiles.first.click()  # newest first: "viewer three"
    viewer = page.get_by_role("dialog", name="Image viewer")
    expect(viewer.locator(".prompt")).to_have_text("viewer three")
    expect(viewer.locator(".where")).to_have_text("1 of 3")
    page.keyboard.press("ArrowRight")
    expect(viewer.locator(".prompt")).to_have_text("viewer two")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")  # past the last: back to the first
    expect(viewer.locator(".where")).to_have_text("1 of 3")
    page.keyboard.press("ArrowLeft")
    expect(viewer.locator(".prompt")).to_have_text("viewer one")

    # Fit never enlarges a small image; 1:1 and the wheel zoom; 0 fits again.
    image = viewer.locator(".stage img")
    assert image.evaluate("img => img.getBoundingClientRect().width") == 320
    viewer.get_by_role("button", name="Zoom in").click()
    expect(viewer).to_have_attribute("data-zoom", "1.5")
    page.keyboard.press("0")
    expect(viewer).to_have_attribute("data-zoom", "fit")
    viewer.locator(".stage").hover()
    page.mouse.wheel(0, -300)
    expect(viewer).not_to_have_attribute("data-zoom", "fit")
    assert image.evaluate("img => img.getBoundingClientRect().width") > 320

    download = viewer.get_by_role("link", name="Download")
    assert re.fullmatch(r"viewer-one-seed-\d+\.png", download.get_attribute("download") or "")
    with page.expect_download() as saved:
        download.click()
    assert saved.value.suggested_filename == download.get_attribute("download")

    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()


def test_copy_prompt_and_seed(studio: str, browser: Browser) -> None:
    job = _made(studio, prompt="copy me, please")
    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.goto(f"{studio}/gallery/{job['id']}")
    page.get_by_role("button", name="View larger").click()
    viewer = page.get_by_role("dialog", name="Image viewer")

    viewer.get_by_role("button", name="Copy prompt").click()
    expect(viewer.locator(".copied")).to_have_text("Copied the prompt.")
    assert page.evaluate("navigator.clipboard.readText()") == "copy me, please"
    viewer.get_by_role("button", name="Copy seed").click()
    expect(viewer.locator(".copied")).to_have_text("Copied the seed.")
    assert page.evaluate("navigator.clipboard.readText()") == str(job["outputs"][0]["seed"])
    context.close()


def test_use_these_settings_refills_the_form_and_makes_the_same_image(
    studio: str, page: Page
) -> None:
    job = _made(studio, prompt="a paper boat", size="80x48", params={"latency_ms": 5})
    seed = job["outputs"][0]["seed"]
    page.goto(f"{studio}/gallery/{job['id']}")
    page.get_by_role("button", name="View larger").click()
    page.get_by_role("dialog", name="Image viewer").get_by_role(
        "link", name="Use these settings"
    ).click()

    expect(page.get_by_label("Prompt", exact=True)).to_have_value("a paper boat")
    expect(page.get_by_label("Size")).to_have_value("80x48")
    expect(page.get_by_label("Seed")).to_have_value(str(seed))
    expect(page.locator("#params").get_by_label("Simulated latency (ms)")).to_have_value("5")
    expect(page.locator("input[name=model]:checked")).to_have_count(1)
    expect(page.locator("input[name=model][value=placeholder]")).to_be_checked()
    cards = page.locator("#jobs .job")
    before = cards.count()
    page.get_by_role("button", name="Generate").click()

    expect(cards).to_have_count(before + 1)  # the new one, first
    card = cards.first
    expect(card.locator(".status")).to_have_text("succeeded")
    again = httpx.get(f"{studio}/v1/jobs/{card.get_attribute('data-job')}").json()
    assert again["id"] != job["id"]
    assert again["request"]["params"] == {"latency_ms": 5}
    assert again["outputs"][0]["sha256"] == job["outputs"][0]["sha256"]  # the same image


def test_a_fresh_install_offers_what_it_can_and_says_why_not_the_rest(
    browser: Browser, tmp_path: Path
) -> None:
    with serve(create_app(Settings(data_dir=tmp_path / "data")), lifespan="on") as url:
        page = browser.new_context().new_page()
        page.goto(url)
        # The placeholder is all there is to make images with: ticked, free, and
        # comparing says what it needs.
        expect(page.locator("input[name=model]:checked")).to_have_count(1)
        expect(page.locator("input[name=model][value=placeholder]")).to_be_checked()
        expect(page.locator(".models label:not([hidden]) .price").first).to_have_text("free")
        expect(page.locator("#compare-hint")).to_contain_text("needs a second model")
        # No model edits here: the kind is offered disabled, saying so.
        edit = page.locator("#kind option[value=edit]")
        expect(edit).to_be_disabled()
        expect(edit).to_have_text("edit (no model here)")

        job = _made(url, prompt="nothing to edit with")
        page.goto(f"{url}/gallery/{job['id']}")
        expect(page.locator(".images figcaption")).to_contain_text("Download")
        expect(page.get_by_role("link", name="Edit")).to_have_count(0)
        page.goto(f"{url}/?edit={job['outputs'][0]['asset_id']}")
        expect(page.locator(".notice")).to_contain_text("No model here edits images")


def test_the_cheapest_model_set_up_is_ticked_with_prices_beside_each(
    browser: Browser, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data", openai_api_key="sk-test")
    with serve(create_app(settings), lifespan="on") as url:
        page = browser.new_context().new_page()
        page.goto(url)
        checked = page.locator("input[name=model]:checked")
        expect(checked).to_have_count(1)
        ticked = checked.get_attribute("value")
        # Priced as the server prices them (POST /v1/estimate), nothing offered is cheaper.
        offered = page.locator(".models label:not([hidden]) input").evaluate_all(
            "boxes => boxes.map((box) => box.value)"
        )
        assert ticked in offered and "placeholder" in offered and len(offered) > 2

        def cost(model: str) -> float:
            body = {"model": model, "prompt": "a price"}
            answer = httpx.post(f"{url}/v1/estimate", json=body).json()
            return float(answer["total_usd"])

        assert ticked != "placeholder", "a real model is set up"
        assert all(cost(ticked) <= cost(m) for m in offered if m != "placeholder")
        price = page.locator("label:has(input[value='openai/dall-e-3']) .price")
        expect(price).to_have_text(re.compile(r"^(from )?\$0\.\d+ / image$"))
        expect(page.locator("#compare-hint")).to_have_text(
            "Tick several to compare them side by side."
        )


def test_dark_mode_follows_the_system_and_the_toggle_which_is_remembered(
    browser: Browser, studio: str
) -> None:
    context = browser.new_context(color_scheme="dark")
    page = context.new_page()
    page.goto(studio)
    background = "getComputedStyle(document.documentElement).backgroundColor"
    dark = page.evaluate(background)
    assert _lightness(dark) < 0.2, dark

    toggle = page.get_by_role("button", name=re.compile("Colour theme"))
    expect(toggle).to_have_text("Theme: system")
    toggle.click()  # system → light
    expect(toggle).to_have_text("Theme: light")
    assert _lightness(page.evaluate(background)) > 0.8
    page.reload()
    expect(toggle).to_have_text("Theme: light")
    assert _lightness(page.evaluate(background)) > 0.8
    toggle.click()  # light → dark
    page.goto(f"{studio}/gallery")
    assert _lightness(page.evaluate(background)) < 0.2
    context.close()


def _lightness(css_color: str) -> float:
    red, green, blue = (int(v) for v in re.findall(r"\d+", css_color)[:3])
    return (max(red, green, blue) + min(red, green, blue)) / 2 / 255


def _png(width: int, height: int) -> list[int]:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 80, 40)).save(buffer, "PNG")
    return list(buffer.getvalue())


DROP = """([bytes, kind]) => {
  const data = new DataTransfer();
  data.items.add(new File([new Uint8Array(bytes)], "in.png", { type: "image/png" }));
  const target = document.getElementById("drop");
  const event = kind === "drop"
    ? new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true })
    : new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true });
  target.dispatchEvent(event);
}"""


def test_an_input_image_is_dropped_or_pasted_and_used(studio: str, page: Page) -> None:
    page.goto(studio)
    expect(page.locator("#input-images")).to_be_hidden()  # an image from words needs none
    page.get_by_label("Kind").select_option("upscale")
    expect(page.locator("#input-images")).to_be_visible()

    page.evaluate(DROP, [_png(40, 24), "drop"])
    inputs = page.locator("#inputs img[data-role=input]")
    expect(inputs).to_have_count(1)
    first = inputs.get_attribute("data-asset")
    page.evaluate(DROP, [_png(32, 32), "paste"])  # a pasted image replaces it
    expect(inputs).not_to_have_attribute("data-asset", first or "")
    expect(inputs).to_have_count(1)

    page.locator("input[name=model][value='local/realesrgan-x2']").check()
    for box in page.locator("input[name=model]:checked").all():
        if box.get_attribute("value") != "local/realesrgan-x2":
            box.uncheck()
    cards = page.locator("#jobs .job")
    before = cards.count()
    page.get_by_role("button", name="Generate").click()
    expect(cards).to_have_count(before + 1)
    expect(cards.first.locator(".status")).to_have_text("succeeded", timeout=120_000)
    job = httpx.get(f"{studio}/v1/jobs/{cards.first.get_attribute('data-job')}").json()
    assert (job["outputs"][0]["width"], job["outputs"][0]["height"]) == (64, 64)


def test_a_prompt_is_enhanced_reviewed_then_used(studio: str, browser: Browser) -> None:
    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.goto(studio)
    prompt = page.get_by_label("Prompt", exact=True)
    page.get_by_role("button", name="Enhance my prompt").click()
    expect(_field_error(page, prompt)).to_have_text("Write a prompt to enhance first.")

    prompt.fill("a cat on a windowsill")
    page.get_by_role("button", name="Enhance my prompt").click()
    review = page.get_by_role("region", name="Enhanced prompt")
    expect(review.locator("blockquote")).to_contain_text("a cat on a windowsill")
    suggestion = review.locator("blockquote").inner_text()
    assert suggestion != "a cat on a windowsill"
    expect(prompt).to_have_value("a cat on a windowsill")  # nothing changes unasked
    review.get_by_role("button", name="Copy").click()
    assert page.evaluate("navigator.clipboard.readText()") == suggestion
    review.get_by_role("button", name="Use it").click()
    expect(prompt).to_have_value(suggestion)
    expect(review).to_be_hidden()
    context.close()


def _field_error(page: Page, field: Locator) -> Locator:
    expect(field).to_have_attribute("aria-invalid", "true")
    return page.locator(f"#{field.get_attribute('aria-describedby')}")
