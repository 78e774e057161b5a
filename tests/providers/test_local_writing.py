"""Local text models: a tiny random transformers folder dropped into the models folder is
``local/<folder>`` for captions and prompt enhancement, runs through the real
transformers code on the CPU, and writes the same text for the same seed."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakes.tiny_transformers import save_tiny_text_model
from imagemill.config import Settings
from imagemill.domain import TaskKind
from imagemill.errors import InvalidInput
from imagemill.providers.local import LocalModels
from imagemill.providers.local.writing import is_text_model
from providers.running import ProviderRuntime, run, submit, succeeded


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    save_tiny_text_model(folder / "tiny-writer")
    save_tiny_text_model(folder / "plain-writer", seed=1, chat_template=False)
    return folder


def test_a_text_generation_folder_is_listed_for_caption_and_enhance(
    models_dir: Path, settings: Settings
) -> None:
    provider = LocalModels(settings.model_copy(update={"models_dir": models_dir}))
    specs = {s.id: s for s in provider.models()}
    spec = specs["local/tiny-writer"]
    assert spec.available and spec.kinds == [TaskKind.CAPTION, TaskKind.ENHANCE]
    assert "hashtags" not in spec.params_schema["properties"]  # no JSON Schema to hold it to
    assert spec.limits.max_inputs == 0
    assert "local/plain-writer" in specs


def test_only_causal_language_models_count(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"architectures": ["BertForMaskedLM"]}')
    assert not is_text_model(tmp_path)
    (tmp_path / "config.json").write_text("not json")
    assert not is_text_model(tmp_path)
    (tmp_path / "config.json").write_text('{"architectures": ["Qwen2ForCausalLM"]}')
    assert is_text_model(tmp_path)


@pytest.mark.parametrize("model", ["local/tiny-writer", "local/plain-writer"])
async def test_captions_in_tones_are_written_and_reproducible(
    provider_runtime: ProviderRuntime, models_dir: Path, model: str
) -> None:
    runtime = await provider_runtime(models_dir=models_dir)
    body = {
        "kind": "caption",
        "model": model,
        "prompt": "Organic cotton tote bag",
        "n": 2,
        "seed": 5,
        "cache": "bypass",
        "params": {"tones": ["playful", "calm"], "max_new_tokens": 8},
    }
    first = succeeded(await run(runtime, **body))
    again = succeeded(await run(runtime, **body))
    assert [o.tone for o in first.outputs] == ["playful", "playful", "calm", "calm"]
    assert [o.seed for o in first.outputs] == [5, 6, 7, 8]
    assert all(o.text for o in first.outputs)
    assert [o.text for o in again.outputs] == [o.text for o in first.outputs]
    assert len({o.text for o in first.outputs}) > 1  # each output seeded on its own


async def test_enhance_runs_and_reports_progress_per_text(
    provider_runtime: ProviderRuntime, models_dir: Path
) -> None:
    runtime = await provider_runtime(models_dir=models_dir)
    with runtime.bus.subscribe() as everything:
        job = succeeded(
            await run(
                runtime,
                kind="enhance",
                model="local/tiny-writer",
                prompt="a fox in snow",
                n=3,
                params={"style": "watercolour", "max_new_tokens": 4},
            )
        )
        events = [everything.queue.get_nowait() for _ in range(everything.queue.qsize())]
    assert len(job.outputs) == 3
    # Each text's progress went live (the log keeps the latest every few seconds).
    fractions = [e["data"]["progress"] for e in events if e.get("live")]
    assert fractions[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])


async def test_a_local_fallback_cannot_take_a_brief_with_hashtags(
    provider_runtime: ProviderRuntime, models_dir: Path
) -> None:
    runtime = await provider_runtime(models_dir=models_dir)
    with pytest.raises(InvalidInput) as refused:
        await submit(
            runtime,
            kind="caption",
            model="placeholder",
            prompt="a tote bag",
            params={"hashtags": 3},
            fallback=["local/tiny-writer"],
        )
    assert refused.value.field == "fallback.0"
    assert "cannot write to this request's brief: it takes no params.hashtags" in str(refused.value)
