"""Take the README's screenshots of the studio (docs/screenshots/*.png).

    .venv/bin/python scripts/screenshots.py

Serves a fresh studio on a free loopback port with the placeholder model and a tiny
local diffusers model, makes some history through the API, and photographs the
generate screen, a running job, the gallery and a comparison in Debian's Chromium.
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
from fakes.tiny_diffusers import save_tiny_stable_diffusion  # noqa: E402
from imagemill.api.app import create_app  # noqa: E402
from imagemill.config import Settings  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
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


def main() -> None:
    if missing := chromium_missing():
        sys.exit(missing)
    from playwright.sync_api import expect, sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="imagemill-shots-") as tmp:
        data_dir = Path(tmp)
        save_tiny_stable_diffusion(data_dir / "models" / "tiny")
        with (
            serve(create_app(Settings(data_dir=data_dir)), lifespan="on") as url,
            sync_playwright() as playwright,
        ):
            with httpx.Client(base_url=url, timeout=60) as http:
                for prompt, size in HISTORY:
                    body = {"model": "placeholder", "prompt": prompt, "size": size, "n": 2}
                    http.post("/v1/jobs", json=body, headers={"Prefer": "wait=30"})
                group = http.post(
                    "/v1/jobs",
                    json={
                        "models": ["placeholder", "local/tiny"],
                        "prompt": "a lighthouse at dusk, oil painting",
                        "size": "256x256",
                        "seed": 7,
                    },
                    headers={"Prefer": "wait=60"},
                ).json()
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 820})

            page.goto(url)
            page.locator("input[name=model][value='local/tiny']").uncheck()
            page.locator("input[name=model][value='placeholder']").check()
            page.get_by_label("Prompt", exact=True).fill("a hot-air balloon over lavender fields")
            page.screenshot(path=OUT / "generate.png")

            page.locator("#params input[name=latency_ms]").fill("8000")
            page.get_by_label("Size").fill("768x512")
            page.get_by_role("button", name="Generate").click()
            page.wait_for_function(
                "() => document.querySelector('#jobs .job progress').value > 0.4"
            )
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=OUT / "running.png")

            page.goto(f"{url}/gallery")
            page.wait_for_load_state("networkidle")
            page.screenshot(path=OUT / "gallery.png")

            page.goto(f"{url}/compare/{group['group_id']}")
            expect(page.locator(".compare .outputs img")).to_have_count(2)
            page.wait_for_load_state("networkidle")
            page.screenshot(path=OUT / "compare.png")
            browser.close()
    print(f"screenshots in {OUT.relative_to(ROOT)}/")


if __name__ == "__main__":
    main()
