"""Gemini text models for the text kinds: ``gemini/gemini-2.5-flash`` and
``gemini/gemini-2.5-flash-lite`` write captions, enhance prompts and describe images.

``generateContent`` through the official ``google-genai`` SDK, its retries off (the
worker retries): the brief's instructions as the system instruction, its text and
images (inline) as the user's turn, and its JSON Schema as the response schema, so the
answer is JSON of that shape. Cost from ``usageMetadata`` and the model's token prices.
Errors are translated, and the SDK's client made, as for the Gemini image models
(``gemini.translated_errors``, ``gemini.sdk_client``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from imagemill import writing
from imagemill.config import Settings
from imagemill.domain import Output, Task
from imagemill.errors import AuthError, ContentRejected, ProviderError, ProviderInputError
from imagemill.providers.base import RunContext
from imagemill.providers.gemini import BLOCKED_FINISH_REASONS, sdk_client, translated_errors
from imagemill.specs import InputLimits, ModelSpec, Pricing

if TYPE_CHECKING:
    from google.genai import types

MB = 1024 * 1024
# Google's guide: PNG, JPEG, WebP (HEIC too); a request carries at most 20 MB inline.
VISION_LIMITS = InputLimits(
    max_inputs=10,
    input_types=["image/png", "image/jpeg", "image/webp"],
    max_input_bytes=7 * MB,
    max_total_input_bytes=15 * MB,
    negative_prompt=False,
)


def _spec(name: str, title: str, description: str, pricing: Pricing) -> ModelSpec:
    return writing.text_model("gemini", name, title, description, pricing, VISION_LIMITS)


# USD per million tokens (text and image input; output), from Google's pricing page.
FLASH = _spec(
    "gemini-2.5-flash",
    "Gemini 2.5 Flash",
    "Google's fast multimodal model: captions, prompt enhancement, image → prompt.",
    Pricing(per_million_input_tokens=0.30, per_million_output_tokens=2.50),
)
FLASH_LITE = _spec(
    "gemini-2.5-flash-lite",
    "Gemini 2.5 Flash-Lite",
    "Google's cheapest Gemini: short captions and prompts at scale.",
    Pricing(per_million_input_tokens=0.10, per_million_output_tokens=0.40),
)
MODELS = {spec.name: spec for spec in (FLASH, FLASH_LITE)}


class GeminiText:
    """The text kinds on Gemini (its own provider, so its slots are not the images')."""

    name = "gemini-text"

    def __init__(self, settings: Settings) -> None:
        self._key = settings.gemini_api_key.get_secret_value() if settings.gemini_api_key else None
        self._client = sdk_client(settings)

    def models(self) -> list[ModelSpec]:
        if self._client is not None:
            return list(MODELS.values())
        return [spec.unavailable("GEMINI_API_KEY is not set") for spec in MODELS.values()]

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aio.aclose()

    async def run(self, task: Task, ctx: RunContext) -> list[Output]:
        if self._client is None or self._key is None:
            raise AuthError("GEMINI_API_KEY is not set")
        from google.genai import types

        brief = writing.brief(task)
        parts = [types.Part.from_text(text=brief.text)]
        parts += [
            types.Part.from_bytes(data=i.data, mime_type=i.content_type) for i in brief.images
        ]
        with translated_errors(self._key):
            response = await self._client.aio.models.generate_content(
                model=task.model,
                contents=[types.Content(role="user", parts=parts)],
                config=types.GenerateContentConfig(
                    system_instruction=brief.instructions,
                    response_mime_type="application/json",
                    response_json_schema=brief.schema,
                    candidate_count=1,
                    seed=task.seed % 2**31 if task.seed is not None else None,  # an int32
                    temperature=task.params.get("temperature"),
                ),
            )
        answer = _text_of(response)
        usage = response.usage_metadata
        spec = MODELS.get(task.model)
        cost = None
        if usage is not None and spec is not None:
            written = (usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)
            cost = spec.pricing.tokens(usage.prompt_token_count or 0, written)
        return writing.read_answer(task, answer, cost)


def _text_of(response: types.GenerateContentResponse) -> str:
    """The text of a ``generateContent`` answer, or why there is none."""
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        raise ContentRejected(f"Gemini blocked the prompt ({feedback.block_reason})")
    for candidate in response.candidates or []:
        reason = str(candidate.finish_reason.value) if candidate.finish_reason else ""
        if reason in BLOCKED_FINISH_REASONS:
            raise ContentRejected(f"Gemini withheld the answer ({reason})")
        if reason == "MAX_TOKENS":
            raise ProviderInputError("Gemini's answer was cut short (too long for the model)")
        parts = (candidate.content.parts if candidate.content else None) or []
        text = "".join(part.text for part in parts if part.text and not part.thought)
        if text:
            return text
    raise ProviderError("Gemini answered with no text", retryable=True)
