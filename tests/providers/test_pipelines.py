"""Loaded pipelines: kept within the memory budget, least recently used unloaded first,
edits sharing the weights of their model."""

from __future__ import annotations

from pathlib import Path

from fakes.tiny_diffusers import save_tiny_stable_diffusion
from imagemill.providers.local.pipelines import Pipelines, weight_bytes


def test_the_least_recently_used_model_is_unloaded_to_stay_within_budget(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        save_tiny_stable_diffusion(tmp_path / name)
    size = weight_bytes(Pipelines(tmp_path, "cpu").get("a"))
    pipelines = Pipelines(tmp_path, "cpu", budget_bytes=int(size * 2.5))  # room for two

    first_a = pipelines.get("a")
    pipelines.get("b")
    assert pipelines.get("a") is first_a  # still loaded; now the most recently used
    pipelines.get("c")  # over budget: b, used longest ago, goes

    assert pipelines.loaded() == ["a", "c"]
    assert pipelines.get("a") is first_a
    assert pipelines.loaded() == ["c", "a"]
    pipelines.get("b")  # c is now the one used longest ago
    assert pipelines.loaded() == ["a", "b"]


def test_a_model_over_budget_alone_still_loads(tmp_path: Path) -> None:
    save_tiny_stable_diffusion(tmp_path / "a")
    save_tiny_stable_diffusion(tmp_path / "b")
    pipelines = Pipelines(tmp_path, "cpu", budget_bytes=1)
    pipelines.get("a")
    pipelines.get("b")
    assert pipelines.loaded() == ["b"]


def test_edit_pipelines_share_the_models_weights(tmp_path: Path) -> None:
    save_tiny_stable_diffusion(tmp_path / "a")
    pipelines = Pipelines(tmp_path, "cpu")
    text = pipelines.get("a")
    image = pipelines.get("a", "image")
    inpaint = pipelines.get("a", "inpaint")

    assert type(image).__name__ == "StableDiffusionImg2ImgPipeline"
    assert type(inpaint).__name__ == "StableDiffusionInpaintPipeline"
    assert image.unet is text.unet and inpaint.vae is text.vae
    assert pipelines.get("a", "image") is image and pipelines.loaded() == ["a"]
