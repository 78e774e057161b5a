"""Take the README's screenshots of the studio (docs/screenshots/*.png).

    .venv/bin/python scripts/screenshots.py [OUT_DIR]

Serves a fresh studio on a free loopback port, as a newcomer's install is: no keys and
no model folders, so only models everyone has appear (the placeholder, and the built-in
Real-ESRGAN upscalers). It makes some history through the API and photographs the
generate screen, a running job, the gallery, the image viewer and a comparison of two
upscalers with its before/after slider, in Debian's Chromium.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser import CHROMIUM, CHROMIUM_ARGS, chromium_missing  # noqa: E402
from fakes.server import serve  # noqa: E402
from imagemill.api.app import create_app  # noqa: E402
from imagemill.config import Settings  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
SHOTS = ["generate", "running", "gallery", "viewer", "compare"]
MAKER = "placeholder"
UPSCALERS = ["local/realesrgan-x4", "local/realesrgan-x4-anime"]  # compared side by side
HISTORY = [
    ("a red fox in fresh snow, morning light", "768x512"),
    ("a lighthouse at dusk, oil painting", "512x768"),
    ("product shot of a ceramic teapot on linen", "640x640"),
    ("an owl reading a book, storybook illustration", "768x512"),
    ("city street in the rain, neon reflections", "512x512"),
    ("a bowl of ramen, overhead, studio lighting", "640x480"),
    ("mountain lake at sunrise, mist", "768x432"),
    ("a paper boat on a puddle", "512x640"),
]


def main(out: Path = OUT) -> list[str]:
    """Take the screenshots into ``out``; the models they show (each one a fresh
    install has, or this stops)."""
    if missing := chromium_missing():
        sys.exit(missing)
    from playwright.sync_api import expect, sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="imagemill-shots-") as tmp,
        serve(create_app(Settings(data_dir=Path(tmp))), lifespan="on") as url,
        sync_playwright() as playwright,
        httpx.Client(base_url=url, timeout=120) as http,
    ):
        available = {m["id"] for m in http.get("/v1/models").json()["data"] if m["available"]}
        shown = [MAKER, *UPSCALERS]
        if not set(shown) <= available:
            sys.exit(f"a fresh install lacks {sorted(set(shown) - available)}")
        for prompt, size in HISTORY:
            body = {"model": MAKER, "prompt": prompt, "size": size, "n": 2}
            http.post("/v1/jobs", json=body, headers={"Prefer": "wait=30"})
        still = http.post(
            "/v1/jobs",
            json={"model": MAKER, "prompt": "a lighthouse at dusk", "size": "192x128"},
            headers={"Prefer": "wait=30"},
        ).json()
        group = http.post(
            "/v1/jobs",
            json={
                "kind": "upscale",
                "models": UPSCALERS,
                "input_assets": [still["outputs"][0]["asset_id"]],
            },
            headers={"Prefer": "wait=110"},
        ).json()
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 820})

        page.goto(url)
        page.get_by_label("Prompt", exact=True).fill("a hot-air balloon over lavender fields")
        page.screenshot(path=out / "generate.png")

        page.locator("#params input[name=latency_ms]").fill("8000")
        page.get_by_label("Size").fill("768x512")
        page.get_by_role("button", name="Generate").click()
        page.wait_for_function("() => document.querySelector('#jobs .job progress').value > 0.4")
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=out / "running.png")

        page.goto(f"{url}/gallery")
        page.wait_for_load_state("networkidle")
        page.screenshot(path=out / "gallery.png")

        page.locator(".tile", has_text="mountain lake").locator("a[data-view]").first.click()
        expect(page.get_by_role("dialog", name="Image viewer")).to_be_visible()
        page.wait_for_load_state("networkidle")
        page.screenshot(path=out / "viewer.png")

        page.goto(f"{url}/compare/{group['group_id']}")
        expect(page.locator(".compare .frame img")).to_have_count(2, timeout=120_000)
        page.get_by_role("button", name="Before/after slider").click()
        page.get_by_role("slider").fill("50")
        page.wait_for_load_state("networkidle")
        page.screenshot(path=out / "compare.png", full_page=True)
        browser.close()
    return shown


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    main(target)
    print(f"screenshots in {target}/")
