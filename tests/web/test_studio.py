"""The studio in headless Chromium: generate and watch a job, find it in the gallery
after a reload, compare two models, and two owners who never see each other's work."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from browser import LAYOUT_SHIFT, make_keys, require_chromium
from fakes.server import serve
from imagemill.api.app import create_app
from imagemill.config import Settings

require_chromium()

from playwright.sync_api import Browser, Locator, Page, expect  # noqa: E402

SLOW_JOB_MS = 4000


def _card(page: Page, prompt: str) -> Locator:
    """The live card of the job with this prompt (earlier jobs' cards are listed too)."""
    return page.locator("#jobs .job").filter(has=page.locator(".prompt", has_text=prompt)).first


def _choose_only(page: Page, model: str) -> None:
    for box in page.locator("input[name=model]:checked").all():
        box.uncheck()
    page.locator(f"input[name=model][value='{model}']").check()


def test_a_job_shows_progress_then_its_image_which_stays_in_the_gallery(
    studio: str, page: Page
) -> None:
    page.goto(studio)
    page.get_by_label("Prompt", exact=True).fill("a red fox in snow")
    _choose_only(page, "placeholder")
    page.locator("#params input[name=latency_ms]").fill(str(SLOW_JOB_MS))
    page.get_by_label("Size").fill("320x240")
    page.get_by_role("button", name="Generate").click()

    card = _card(page, "a red fox in snow")
    expect(card).to_be_visible()
    # A value strictly between 0 and 1 while no image has arrived yet.
    seen = page.wait_for_function(
        """() => {
          const card = [...document.querySelectorAll("#jobs .job")].find(
            (c) => c.querySelector(".prompt").textContent === "a red fox in snow");
          const value = card && card.querySelector("progress").value;
          const images = card ? card.querySelectorAll(".outputs img").length : 0;
          return value > 0 && value < 1 && images === 0 ? value : null;
        }""",
        timeout=SLOW_JOB_MS,
    ).json_value()
    assert 0 < seen < 1
    expect(card.locator(".status")).to_have_text("running")
    expect(card.locator(".preview")).to_be_visible()  # the placeholder sends one halfway

    image = card.locator(".outputs img")
    expect(image).to_have_count(1, timeout=15_000)
    expect(card.locator(".status")).to_have_text("succeeded")
    assert card.locator("progress").evaluate("p => p.value") == 1
    assert image.evaluate("img => img.complete && img.naturalWidth > 0")
    job_id = card.get_attribute("data-job")

    page.goto(f"{studio}/gallery")
    page.reload()
    tile = page.locator(f".tile a[href^='/gallery/{job_id}']")
    expect(tile).to_have_count(1)
    assert tile.locator("img").evaluate("img => img.decode().then(() => img.naturalWidth)") > 0
    assert page.evaluate(LAYOUT_SHIFT) == 0, "boxes are reserved before images load"

    tile.click()  # opens the viewer over the gallery; Details is the job's page
    viewer = page.get_by_role("dialog", name="Image viewer")
    expect(viewer).to_contain_text("a red fox in snow")
    viewer.get_by_role("link", name="Details").click()
    expect(page.locator(".facts")).to_contain_text("a red fox in snow")
    assert (
        page.locator(".images img").evaluate("img => img.decode().then(() => img.naturalWidth)")
        == 320
    )


def test_two_models_side_by_side(studio: str, page: Page) -> None:
    page.goto(studio)
    page.get_by_label("Prompt", exact=True).fill("a lighthouse at dusk")
    _choose_only(page, "placeholder")
    page.locator("input[name=model][value='local/tiny']").check()
    # Several models: a section of params each, labelled from the schemas' titles.
    tiny = page.locator("#params fieldset[data-model='local/tiny']")
    expect(tiny.locator("legend")).to_contain_text("parameters")
    expect(page.locator("#params fieldset[data-model=placeholder]")).to_be_visible()
    tiny.get_by_label("Steps").fill("3")
    page.get_by_label("Size").fill("64x64")
    page.get_by_role("button", name="Generate").click()

    compare = page.get_by_role("link", name="Compare side by side")
    expect(compare).to_be_visible()
    compare.click()
    expect(page).to_have_url(re.compile(r"/compare/grp_\w+$"))
    columns = page.locator(".compare .column")
    expect(columns).to_have_count(2)
    # Each column follows its job and, once it ends, shows the image and its facts.
    for model in ["placeholder", "local/tiny"]:
        column = columns.filter(has=page.get_by_role("heading", name=model, exact=True))
        expect(column.locator(".frame img")).to_have_count(1, timeout=60_000)
        expect(column.locator("[data-field=time]")).to_have_text(re.compile(r"^\d+\.\d s$"))
        expect(column.locator("[data-field=cost]")).to_have_text(re.compile(r"^\$\d+\.\d{4}$"))
    expect(page.locator(".compare-prompt")).to_have_text("a lighthouse at dusk")  # said once
    group_id = page.url.rsplit("/", 1)[1]
    group = httpx.get(f"{studio}/v1/jobs", params={"group_id": group_id})
    params = {job["model"]: job["request"]["params"] for job in group.json()["data"]}
    assert params == {"local/tiny": {"steps": 3}, "placeholder": {}}  # each its own

    # Zoomed and panned together; a before/after slider for two; a favourite picked.
    page.get_by_role("button", name="Zoom in").click()
    transforms = page.locator(".frame img").evaluate_all(
        "images => images.map((image) => image.style.transform)"
    )
    assert transforms[0] == transforms[1] and "scale(1.5)" in transforms[0]
    page.get_by_role("button", name="Before/after slider").click()
    split = page.get_by_role("slider", name=re.compile("Split between"))
    split.fill("20")
    assert page.locator(".slider").evaluate("s => s.style.getPropertyValue('--split')") == "20%"
    tiny_pick = columns.nth(1).get_by_role("button", name="Pick as favourite")
    tiny_pick.click()
    expect(tiny_pick).to_have_attribute("aria-pressed", "true")

    # Reachable from the navigation and from the gallery's badge.
    page.get_by_role("link", name="Compare", exact=True).click()
    expect(page.locator(".comparisons li").first).to_contain_text("a lighthouse at dusk")
    expect(page.locator(".comparisons li").first).to_contain_text(
        re.compile(r"placeholder · local/tiny|local/tiny · placeholder")
    )
    page.goto(f"{studio}/gallery?q=lighthouse")
    page.locator(".tile .badge.group").first.click()
    expect(page).to_have_url(f"{studio}/compare/{group_id}")


def test_a_failed_job_says_why_and_retries(studio: str, page: Page) -> None:
    page.goto(studio)
    page.get_by_label("Prompt", exact=True).fill("this one breaks")
    _choose_only(page, "placeholder")
    page.locator("#params select[name=fail]").select_option(label="permanent")
    page.get_by_role("button", name="Generate").click()

    card = _card(page, "this one breaks")
    expect(card.locator(".status")).to_have_text("failed")
    expect(card.locator(".failure")).to_be_visible()
    expect(card.locator(".error")).not_to_be_empty()
    first_id = card.get_attribute("data-job")

    card.get_by_role("button", name="Retry").click()
    expect(card).not_to_have_attribute("data-job", first_id or "")
    expect(card.locator(".status")).to_have_text("failed")  # the same request fails again


def _field_error(page: Page, field: Locator) -> Locator:
    """The error shown for ``field``: next to it, and what it is described by."""
    expect(field).to_have_attribute("aria-invalid", "true")
    return page.locator(f"#{field.get_attribute('aria-describedby')}")


def test_bad_input_is_named_next_to_the_field_at_fault(studio: str, page: Page) -> None:
    page.goto(studio)
    generate = page.get_by_role("button", name="Generate")
    for box in page.locator("input[name=model]:checked").all():
        box.uncheck()
    generate.click()
    expect(_field_error(page, page.locator("#models-field"))).to_have_text("Choose a model.")

    _choose_only(page, "placeholder")
    generate.click()
    prompt = page.get_by_label("Prompt", exact=True)
    expect(_field_error(page, prompt)).to_contain_text("prompt is required")
    prompt.fill("a field at fault")
    size = page.get_by_label("Size")
    size.fill("0x0")
    generate.click()
    expect(_field_error(page, size)).to_contain_text("between")
    expect(size).to_be_focused()
    expect(page.locator("#generate .form-error")).to_be_hidden()

    size.fill("64x64")
    latency = page.locator("#params").get_by_label("Simulated latency (ms)")
    latency.fill("-5")
    generate.click()
    expect(_field_error(page, latency)).to_contain_text("0")
    expect(size).not_to_have_attribute("aria-invalid", "true")  # the earlier one is gone

    # In a comparison, the param of the model it was given for.
    latency.fill("")
    page.locator("input[name=model][value='local/tiny']").check()
    steps = page.locator("#params fieldset[data-model='local/tiny']").get_by_label("Steps")
    steps.fill("999")
    generate.click()
    expect(_field_error(page, steps)).to_contain_text("150")


def test_a_phone_sized_screen_has_no_sideways_scroll(studio: str, browser: Browser) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    phone = context.new_page()
    for path in ["/", "/gallery"]:
        phone.goto(studio + path)
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390, path
    context.close()


def test_the_form_works_from_the_keyboard(studio: str, page: Page) -> None:
    page.goto(studio)
    page.get_by_label("Prompt", exact=True).focus()
    page.keyboard.type("typed, not clicked")
    _choose_only(page, "placeholder")
    page.get_by_label("Size").focus()
    page.keyboard.type("48x48")
    page.keyboard.press("Enter")  # submits the form

    expect(page.locator("#jobs .job .prompt").first).to_have_text("typed, not clicked")


def test_another_owner_sees_none_of_your_images(browser: Browser, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", require_keys=True)
    keys = make_keys(settings, "alice", "bob")
    with serve(create_app(settings), lifespan="on") as url:
        alice = browser.new_context().new_page()
        alice.goto(url)
        expect(alice).to_have_url(re.compile(r"/signin"))
        alice.get_by_label("API key").fill(keys["alice"])
        alice.get_by_role("button", name="Sign in").click()
        alice.get_by_label("Prompt", exact=True).fill("alice's secret")
        _choose_only(alice, "placeholder")
        alice.get_by_role("button", name="Generate").click()
        image = alice.locator("#jobs .job .outputs img")
        expect(image).to_have_count(1)
        asset_url = url + re.sub(r"/thumbnail$", "", image.get_attribute("src") or "")

        bob = browser.new_context().new_page()
        bob.goto(f"{url}/gallery")
        bob.get_by_label("API key").fill(keys["bob"])
        bob.get_by_role("button", name="Sign in").click()
        expect(bob).to_have_url(f"{url}/gallery")
        expect(bob.locator(".tile")).to_have_count(0)
        expect(bob.locator(".empty")).to_be_visible()
        assert bob.goto(asset_url).status == 404
        assert alice.goto(asset_url).status == 200


def test_a_job_page_varies_edits_and_deletes(studio: str, page: Page) -> None:
    page.goto(studio)
    page.get_by_label("Prompt", exact=True).fill("a teapot on linen")
    _choose_only(page, "placeholder")
    page.get_by_label("Size").fill("96x64")
    page.get_by_role("button", name="Generate").click()
    card = _card(page, "a teapot on linen")
    expect(card.locator(".outputs img")).to_have_count(1)
    card.locator(".outputs a").click()
    expect(page.locator(".facts")).to_contain_text("a teapot on linen")
    first_job = page.url.split("/gallery/")[1].split("#")[0]

    page.get_by_role("button", name="Vary seed").click()
    expect(page).not_to_have_url(re.compile(first_job))
    expect(page.locator(".facts")).to_contain_text("a teapot on linen")

    page.goto(f"{studio}/gallery/{first_job}")
    page.get_by_role("link", name="Edit").first.click()
    expect(page.locator("#kind")).to_have_value("edit")
    expect(page.locator("#inputs img[data-role=input]")).to_have_count(1)
    # Only models that edit are offered: the placeholder does not, the local model does.
    expect(page.locator("input[name=model][value=placeholder]")).to_be_hidden()
    expect(page.locator("input[name=model][value='local/tiny']")).to_be_checked()
    page.get_by_label("Prompt", exact=True).fill("the same teapot, in blue")
    page.get_by_label("Size").fill("64x64")
    page.locator("#params input[name=steps]").fill("4")
    page.get_by_role("button", name="Generate").click()
    edited = _card(page, "the same teapot, in blue")
    expect(edited.locator(".status")).to_have_text("succeeded", timeout=60_000)
    assert edited.locator(".model").inner_text() == "local/tiny"

    page.goto(f"{studio}/gallery/{first_job}")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete").click()
    expect(page).to_have_url(f"{studio}/gallery")
    expect(page.locator(f".tile a[href^='/gallery/{first_job}']")).to_have_count(0)
    assert page.goto(f"{studio}/gallery/{first_job}").status == 404


def test_the_gallery_loads_more_as_it_scrolls(studio: str, page: Page) -> None:
    with httpx.Client(base_url=studio) as http:
        for index in range(30):
            body = {"model": "placeholder", "prompt": f"scroll {index}", "size": "32x32"}
            http.post("/v1/jobs", json=body, headers={"Prefer": "wait=10"})
    page.set_viewport_size({"width": 420, "height": 500})  # the first page overflows it
    page.goto(f"{studio}/gallery?q=scroll")
    tiles = page.locator(".tile a.open")
    # A page of 24, those containing the word first; what else is about it may follow.
    expect(tiles).to_have_count(24)
    scrolled = page.locator(".tile .caption", has_text=re.compile(r"^scroll \d+$"))
    expect(scrolled).to_have_count(24)

    more = page.locator(".more")
    while more.count():  # page after page, each loaded as the end comes into view
        href = more.get_attribute("href")
        more.scroll_into_view_if_needed()
        page.mouse.wheel(0, 10_000)
        expect(page.locator(f".more[href='{href}']")).to_have_count(0)

    expect(scrolled).to_have_count(30)


def test_a_preset_shapes_the_request(studio: str, page: Page) -> None:
    with httpx.Client(base_url=studio) as http:
        preset = {"name": "watercolour", "prompt_template": "{prompt}, in watercolour"}
        assert http.post("/v1/presets", json=preset).status_code == 201
    page.goto(studio)
    page.get_by_label("Prompt", exact=True).fill("a harbour")
    _choose_only(page, "placeholder")
    page.get_by_label("Preset").select_option("watercolour")
    page.get_by_role("button", name="Generate").click()

    card = _card(page, "a harbour, in watercolour")
    expect(card).to_be_visible()
    expect(card.locator(".status")).to_have_text("succeeded")


def test_captions_are_written_from_the_form_in_the_tones_asked(studio: str, page: Page) -> None:
    page.goto(studio)
    page.get_by_label("Kind").select_option("caption")
    page.get_by_label("Prompt", exact=True).fill("Linen summer dress")
    _choose_only(page, "placeholder")
    expect(page.locator("#params input[name=latency_ms]")).to_be_visible()
    expect(page.locator("#params input[name=style]")).to_have_count(0)  # enhance's only
    page.locator("#params input[name=tones]").fill("playful, elegant")
    page.locator("#params input[name=hashtags]").fill("2")
    page.get_by_role("button", name="Generate").click()

    card = _card(page, "Linen summer dress")
    expect(card.locator(".status")).to_have_text("succeeded")
    texts = card.locator(".outputs blockquote.text")
    expect(card.get_by_role("button", name="Copy")).to_have_count(2)  # each caption its own
    expect(texts).to_have_count(2)
    expect(texts.nth(0)).to_contain_text("[placeholder caption, playful] Linen summer dress")
    expect(texts.nth(1)).to_have_attribute("data-tone", "elegant")
    expect(texts.nth(1)).to_contain_text("#Linen #summer")


def _made_from_an_image(studio: str, page: Page, action: str, media: str) -> Locator:
    """Press ``action`` on a fresh placeholder image's page: the new job's ``media``
    element, once its page (which follows the job while it runs) shows it."""
    with httpx.Client(base_url=studio) as http:
        body = {"model": "placeholder", "prompt": action, "size": "48x32"}
        job = http.post("/v1/jobs", json=body, headers={"Prefer": "wait=10"}).json()
    page.goto(f"{studio}/gallery/{job['id']}")
    page.get_by_role("button", name=action).click()
    expect(page).not_to_have_url(re.compile(job["id"]))
    made = page.locator(f".images figure {media}")
    expect(made).to_have_count(1, timeout=60_000)
    return made


def test_an_image_is_upscaled_from_its_page(studio: str, page: Page) -> None:
    image = _made_from_an_image(studio, page, "Upscale", "img")

    expect(page.locator(".facts")).to_contain_text("upscale")
    width = image.evaluate("img => img.decode().then(() => img.naturalWidth)")
    assert width in {96, 144, 192}, "48 px wide, upscaled 2, 3 or 4 times"


def test_a_video_is_made_from_an_image_page(studio: str, page: Page) -> None:
    video = _made_from_an_image(studio, page, "Make video", "video")

    expect(page.locator(".facts")).to_contain_text("video")
    duration = video.evaluate(
        "v => new Promise((done) => v.readyState >= 1 ? done(v.duration)"
        " : v.addEventListener('loadedmetadata', () => done(v.duration)))"
    )
    assert duration > 0.5, "a playable clip of some length"


def test_the_price_shows_before_generate_and_follows_the_form(
    browser: Browser, tmp_path: Path
) -> None:
    priced = Settings(data_dir=tmp_path / "data", prices={"placeholder": {"per_image": 0.04}})
    with serve(create_app(priced), lifespan="on") as url:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto(url)
        _choose_only(page, "placeholder")
        estimate = page.locator("#generate .estimate")
        expect(estimate).to_have_text("$0.040 · 1 output")
        page.fill("input[name=n]", "3")
        expect(estimate).to_have_text("$0.12 · 3 outputs")
        context.close()


def test_a_running_job_is_canceled_from_its_card(studio: str, page: Page) -> None:
    page.goto(studio)
    page.get_by_label("Prompt", exact=True).fill("a kite that never lands")
    _choose_only(page, "placeholder")
    page.locator("#params input[name=latency_ms]").fill("60000")
    page.get_by_label("Prompt", exact=True).press("Control+Enter")  # generates, as Generate does

    card = _card(page, "a kite that never lands")
    expect(card.locator(".status")).to_have_text("running")
    card.get_by_role("button", name="Cancel").click()
    expect(card.locator(".status")).to_have_text("canceled")
    expect(card.get_by_role("button", name="Cancel")).to_be_hidden()
    job_id = card.get_attribute("data-job")
    assert httpx.get(f"{studio}/v1/jobs/{job_id}").json()["status"] == "canceled"
    # Its page says so too, with nothing left to cancel.
    page.goto(f"{studio}/gallery/{job_id}")
    expect(page.locator(".job .status").first).to_have_text("canceled")
    expect(page.get_by_role("button", name="Cancel")).to_be_hidden()
    icon = page.locator("link[rel=icon]").get_attribute("href") or ""
    assert httpx.get(icon).headers["content-type"].startswith("image/svg+xml")  # absolute
