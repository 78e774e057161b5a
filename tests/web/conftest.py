"""Studio fixtures: every server here has a second image model (a tiny local diffusers
pipeline), so comparisons are of two real models."""

from __future__ import annotations

import pytest

from fakes.tiny_diffusers import save_tiny_stable_diffusion
from imagemill.config import Settings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    save_tiny_stable_diffusion(settings.resolved_models_dir / "tiny")
    return settings


@pytest.fixture
def keyed_settings(keyed_settings: Settings) -> Settings:
    save_tiny_stable_diffusion(keyed_settings.resolved_models_dir / "tiny")
    return keyed_settings
