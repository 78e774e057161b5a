"""Local text models: every transformers text-generation folder under
``IMAGEMILL_MODELS_DIR`` (a ``config.json`` naming a causal language model, with
its tokenizer) is ``local/<folder>`` for ``caption`` and ``enhance``.

Each text is generated on its own (a small model cannot be held to a JSON Schema, so no
count of hashtags is promised: the ``hashtags`` param is not offered), from the
tokenizer's chat template where it has one, seeded per output so the same request writes
the same text. The model loads on first use and stays loaded.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imagemill import writing
from imagemill.domain import Task, TaskKind
from imagemill.errors import ProviderError
from imagemill.specs import InputLimits, ModelSpec, Pricing

CONFIG = "config.json"
CAUSAL_LM_SUFFIXES = ("ForCausalLM", "LMHeadModel")  # Llama, Qwen, ...; GPT-2 and kin
PARAMS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        **writing.text_params(structured=False),
        "max_new_tokens": {
            "title": "Longest text (tokens)",
            "type": "integer",
            "minimum": 1,
            "maximum": 1024,
            "default": 120,
            "description": "The most tokens each text may have.",
        },
        "temperature": {
            "title": "Temperature",
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 2,
            "default": 0.8,
            "description": "Sampling temperature: lower is plainer, higher more varied.",
        },
    },
}


def is_text_model(folder: Path) -> bool:
    """Whether ``folder`` holds a transformers causal language model (text generation)."""
    try:
        config = json.loads((folder / CONFIG).read_text())
    except (OSError, ValueError):
        return False
    architectures = config.get("architectures") if isinstance(config, dict) else None
    return isinstance(architectures, list) and any(
        isinstance(a, str) and a.endswith(CAUSAL_LM_SUFFIXES) for a in architectures
    )


def spec(name: str, provider: str) -> ModelSpec:
    return ModelSpec(
        id=f"{provider}/{name}",
        provider=provider,
        name=name,
        title=name,
        description=f"A transformers text-generation model from {name}/ in the models "
        "folder: captions and prompt enhancement from text.",
        kinds=[TaskKind.CAPTION, TaskKind.ENHANCE],
        params_schema=PARAMS_SCHEMA,
        limits=InputLimits(
            max_inputs=0,  # text only: no images to read
            negative_prompt=False,
            param_kinds=writing.TEXT_PARAM_KINDS,
        ),
        max_n=8,
        pricing=Pricing(per_image=0.0),
    )


class TextModels:
    """Loaded text models by folder; called from one thread at a time."""

    def __init__(self, directory: Path, device: str = "auto") -> None:
        self.directory = directory
        self.device = device
        self._loaded: dict[str, tuple[Any, Any]] = {}

    def _load(self, name: str) -> tuple[Any, Any]:
        loaded = self._loaded.get(name)
        if loaded is None:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            from imagemill.providers.local.pipelines import choose_device

            device, dtype = choose_device(torch, self.device)
            folder = self.directory / name
            try:
                tokenizer: Any = AutoTokenizer.from_pretrained(str(folder))
                model: Any = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype)
            except (OSError, ValueError) as exc:
                raise ProviderError(
                    f"local/{name} could not be loaded: {exc}", retryable=False
                ) from exc
            loaded = self._loaded[name] = (tokenizer, model.to(device).eval())
        return loaded

    def write(
        self,
        task: Task,
        seed: int,
        progress: Callable[[float], None],
        stopped: Callable[[], bool],
    ) -> list[str]:
        """The task's texts, in order: output ``i`` seeded with ``seed + i``."""
        import torch

        tokenizer, model = self._load(task.model)
        count = writing.output_count(task)
        params = {**_DEFAULTS, **task.params}
        texts = []
        for index in range(count):
            if stopped():
                raise ProviderError("stopped", retryable=True)
            instructions, text = writing.plain_prompt(task, index)
            inputs = _encode(tokenizer, instructions, text).to(model.device)
            torch.manual_seed(seed + index)
            with torch.inference_mode():
                generated = model.generate(
                    inputs,
                    attention_mask=torch.ones_like(inputs),
                    do_sample=True,
                    temperature=float(params["temperature"]),
                    max_new_tokens=int(params["max_new_tokens"]),
                    pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
                )
            answer = tokenizer.decode(generated[0, inputs.shape[1] :], skip_special_tokens=True)
            if not answer.strip():
                raise ProviderError(f"local/{task.model} wrote nothing", retryable=True)
            texts.append(answer.strip())
            progress((index + 1) / count)
        return texts


_DEFAULTS = {k: v["default"] for k, v in PARAMS_SCHEMA["properties"].items() if "default" in v}


def _encode(tokenizer: Any, instructions: str, text: str) -> Any:
    """The prompt's token ids: through the chat template where the tokenizer has one."""
    if getattr(tokenizer, "chat_template", None):
        messages = [
            {"role": "system", "content": instructions},
            {"role": "user", "content": text},
        ]
        encoded = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        return encoded["input_ids"]
    return tokenizer(f"{instructions}\n\n{text}\n\n", return_tensors="pt").input_ids
