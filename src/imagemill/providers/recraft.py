"""Recraft: ``recraft/recraftv3``, raster and vector styles.

Recraft speaks the OpenAI images API (at its own base URL), so this adapter drives the
official ``openai`` SDK and shares the OpenAI adapter's response mapping and error
translation; Recraft's own fields (``style``, ``substyle``) travel in the body. Vector
styles answer with SVG, stored as such.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from imagemill.config import Settings
from imagemill.domain import Output, Size, Task, TaskKind
from imagemill.errors import AuthError
from imagemill.providers.base import RunContext
from imagemill.providers.openai_images import body_of, outputs_of, translated_errors
from imagemill.providers.sizes import nearest_size
from imagemill.specs import InputLimits, ModelSpec, Pricing, SizeRange

if TYPE_CHECKING:
    from openai import AsyncOpenAI

DEFAULT_BASE_URL = "https://external.api.recraft.ai/v1"
SIZES = [
    "1024x1024",
    "1365x1024",
    "1024x1365",
    "1536x1024",
    "1024x1536",
    "1820x1024",
    "1024x1820",
    "1024x2048",
    "2048x1024",
    "1434x1024",
    "1024x1434",
    "1024x1280",
    "1280x1024",
    "1024x1707",
    "1707x1024",
]
VECTOR_STYLES = {"vector_illustration", "icon"}

RECRAFT_V3 = ModelSpec(
    id="recraft/recraftv3",
    provider="recraft",
    name="recraftv3",
    title="Recraft V3",
    description="Recraft V3: design-minded images, long text in images, and vector (SVG) "
    "illustrations and icons.",
    kinds=[TaskKind.IMAGE],
    params_schema={
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "style": {
                "title": "Style",
                "description": "The kind of image Recraft makes.",
                "enum": [
                    "any",
                    "realistic_image",
                    "digital_illustration",
                    "vector_illustration",
                    "icon",
                ],
                "default": "any",
            },
            "substyle": {
                "title": "Substyle",
                "type": "string",
                "maxLength": 100,
                "description": "A refinement of the style, in Recraft's names (e.g. 'hard_flash').",
            },
        },
    },
    sizes=SizeRange(min_side=64, max_side=4096, fixed=SIZES, default="1024x1024"),
    limits=InputLimits(max_prompt_bytes=1000),  # Recraft's reference: 1000 bytes
    max_n=6,
    supports_seed=False,
    pricing=Pricing(per_image=0.04, by_quality={"vector": {"*": 0.08}}),
)


class Recraft:
    name = "recraft"

    def __init__(self, settings: Settings) -> None:
        self._key = (
            settings.recraft_api_key.get_secret_value() if settings.recraft_api_key else None
        )
        self._client: AsyncOpenAI | None = None
        if self._key:  # the SDK only with a key, as in ``openai_images``
            from openai import AsyncOpenAI

            self._client = AsyncOpenAI(
                api_key=self._key,
                base_url=settings.recraft_base_url or DEFAULT_BASE_URL,
                timeout=settings.provider_timeout_seconds,
                max_retries=0,
            )

    def models(self) -> list[ModelSpec]:
        if self._client is not None:
            return [RECRAFT_V3]
        reason = "RECRAFT_API_KEY is not set"
        return [RECRAFT_V3.unavailable(reason)]

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def run(self, task: Task, ctx: RunContext) -> list[Output]:
        if self._client is None:
            raise AuthError("RECRAFT_API_KEY is not set")
        style = task.params.get("style", "any")
        extra = {"style": style, **({"substyle": s} if (s := task.params.get("substyle")) else {})}
        if task.negative_prompt:
            extra["negative_prompt"] = task.negative_prompt
        size = nearest_size(Size(task.width, task.height), SIZES)
        with translated_errors("Recraft", self._key):
            answer = await body_of(
                self._client.images.with_streaming_response.generate(
                    model=task.model,
                    prompt=task.prompt,
                    n=task.n,
                    size=str(size),
                    response_format="url",
                    extra_body=extra,
                ),
                ctx,
            )
        tier = "vector" if style in VECTOR_STYLES else None
        return outputs_of([answer], tier)
