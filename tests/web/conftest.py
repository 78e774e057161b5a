"""Studio fixtures: every server here has a second image model (a tiny local diffusers
pipeline), so comparisons are of two real models; the browser tests share one Chromium
and one keyless studio per module."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from fakes.server import serve
from fakes.tiny_diffusers import save_tiny_stable_diffusion
from imagemill.api.app import create_app
from imagemill.config import Settings

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


@pytest.fixture
def settings(settings: Settings) -> Settings:
    save_tiny_stable_diffusion(settings.resolved_models_dir / "tiny")
    return settings


@pytest.fixture
def keyed_settings(keyed_settings: Settings) -> Settings:
    save_tiny_stable_diffusion(keyed_settings.resolved_models_dir / "tiny")
    return keyed_settings


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    from browser import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A keyless studio with two image models: placeholder and a tiny local diffusers one."""
    data_dir = tmp_path_factory.mktemp("studio")
    save_tiny_stable_diffusion(data_dir / "models" / "tiny")
    with serve(create_app(Settings(data_dir=data_dir)), lifespan="on") as url:
        yield url


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()
