"""OpenAI text models for the text kinds: ``openai/gpt-4o-mini`` and ``openai/gpt-4.1-mini``
write captions, enhance prompts and describe images.

Chat Completions through the official ``openai`` SDK, its retries off (the worker
retries). The brief (``writing.brief``) goes as a system message and a user message with
the images as data URLs (vision); the answer is held to the brief's JSON Schema by strict
structured outputs. What a call cost comes from its token usage and the model's prices.
Errors are translated as for OpenAI's images (``openai_images.translated_errors``), and
the SDK is imported only where a key makes it needed, as there.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from imagemill import writing
from imagemill.config import Settings
from imagemill.domain import InputImage, Output, Task
from imagemill.errors import AuthError, ContentRejected, ProviderError, ProviderInputError
from imagemill.providers.base import RunContext
from imagemill.providers.openai_images import openai_client, translated_errors
from imagemill.specs import InputLimits, ModelSpec, Pricing

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionContentPartParam, ChatCompletionMessageParam
    from openai.types.shared_params import ResponseFormatJSONSchema

MB = 1024 * 1024
# OpenAI's vision guide: PNG, JPEG, WebP and non-animated GIF, up to 50 MB per request.
VISION_LIMITS = InputLimits(
    max_inputs=10,
    input_types=["image/png", "image/jpeg", "image/webp", "image/gif"],
    max_input_bytes=20 * MB,
    max_total_input_bytes=50 * MB,
    negative_prompt=False,
)


def _spec(name: str, title: str, description: str, pricing: Pricing) -> ModelSpec:
    return writing.text_model("openai", name, title, description, pricing, VISION_LIMITS)


# USD per million tokens, from OpenAI's pricing page.
GPT_4O_MINI = _spec(
    "gpt-4o-mini",
    "GPT-4o mini",
    "OpenAI's small, fast multimodal model: captions, prompt enhancement, image → prompt.",
    Pricing(per_million_input_tokens=0.15, per_million_output_tokens=0.60),
)
GPT_41_MINI = _spec(
    "gpt-4.1-mini",
    "GPT-4.1 mini",
    "OpenAI's GPT-4.1 mini: stronger writing and instruction following than 4o mini.",
    Pricing(per_million_input_tokens=0.40, per_million_output_tokens=1.60),
)
MODELS = {spec.name: spec for spec in (GPT_4O_MINI, GPT_41_MINI)}


class OpenAIText:
    """The text kinds on OpenAI (its own provider, so its slots are not the images')."""

    name = "openai-text"

    def __init__(self, settings: Settings) -> None:
        self._key, self._client = openai_client(settings)

    def models(self) -> list[ModelSpec]:
        if self._client is not None:
            return list(MODELS.values())
        return [spec.unavailable("OPENAI_API_KEY is not set") for spec in MODELS.values()]

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def run(self, task: Task, ctx: RunContext) -> list[Output]:
        if self._client is None:
            raise AuthError("OPENAI_API_KEY is not set")
        brief = writing.brief(task)
        content: list[ChatCompletionContentPartParam] = [{"type": "text", "text": brief.text}]
        content += [
            {"type": "image_url", "image_url": {"url": _data_url(image)}} for image in brief.images
        ]
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": brief.instructions},
            {"role": "user", "content": content},
        ]
        answer_format: ResponseFormatJSONSchema = {
            "type": "json_schema",
            "json_schema": {
                "name": f"imagemill_{task.kind}",
                "strict": True,
                "schema": brief.schema,
            },
        }
        temperature = task.params.get("temperature")
        from openai import omit

        with translated_errors("OpenAI", self._key):
            response = await self._client.chat.completions.create(
                model=task.model,
                messages=messages,
                response_format=answer_format,
                seed=task.seed if task.seed is not None else omit,
                temperature=temperature if temperature is not None else omit,
            )
        if not response.choices:
            raise ProviderError("OpenAI answered with no choice", retryable=True)
        choice = response.choices[0]
        if choice.message.refusal:
            raise ContentRejected(f"OpenAI refused: {choice.message.refusal}")
        if choice.finish_reason == "content_filter":
            raise ContentRejected("OpenAI's content filter withheld the answer")
        if choice.finish_reason == "length":
            raise ProviderInputError("OpenAI's answer was cut short (too long for the model)")
        usage = response.usage
        spec = MODELS.get(task.model)
        cost = (
            spec.pricing.tokens(usage.prompt_tokens, usage.completion_tokens)
            if usage is not None and spec is not None
            else None
        )
        return writing.read_answer(task, choice.message.content or "", cost)


def _data_url(image: InputImage) -> str:
    return f"data:{image.content_type};base64,{base64.b64encode(image.data).decode()}"
