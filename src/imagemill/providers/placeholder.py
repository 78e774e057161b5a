"""The built-in ``placeholder`` provider: deterministic, clearly labelled images, offline.

It exists for development, tests and explicitly configured fallbacks. Every image says
PLACEHOLDER with the prompt, model, seed and size, and every text (caption, enhanced
prompt, description: ``placeholder_text.py``) starts with ``[placeholder …]``, so nobody
mistakes either for the work of a real model. Two params make it a test double for real
providers: ``latency_ms`` (how long the simulated call takes, its own drawing included, with
progress along the way and a blurred preview halfway) and ``fail``.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import math
import random
import textwrap
import time
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFilter, ImageFont

from imagemill import writing
from imagemill.config import Settings
from imagemill.domain import Output, Task, TaskKind, seeds
from imagemill.errors import ProviderError, ProviderUnavailable
from imagemill.providers import placeholder_text
from imagemill.providers.base import RunContext
from imagemill.specs import InputLimits, ModelSpec, Pricing, SizeRange

MODEL_ID = "placeholder"
MAX_PROGRESS_STEPS = 20
PREVIEW_SIDE = 128  # longest side of the halfway preview
INLINE_RENDER_PIXELS = 2 * 64 * 64  # at most ~2.5 ms of drawing on the event loop
PARAMS_SCHEMA = {
    "type": "object",
    "properties": {
        "latency_ms": {
            "title": "Simulated latency (ms)",
            "type": "integer",
            "minimum": 0,
            "maximum": 600_000,
            "default": 0,
            "description": (
                "How long the simulated call takes in all, its drawing included; progress "
                "is reported along the way."
            ),
        },
        "fail": {
            "title": "Fail on purpose",
            "type": "string",
            "enum": ["transient", "permanent"],
            "description": "Fail on purpose: 'transient' is retried, 'permanent' is not.",
        },
        "fail_attempts": {
            "title": "Failing attempts",
            "type": "integer",
            "minimum": 1,
            "description": "With 'fail', fail only the first N attempts (default: every attempt).",
        },
        "fail_until": {
            "title": "Fail until (Unix time)",
            "type": "number",
            "minimum": 0,
            "description": "With 'fail', fail only before this Unix time (seconds): an outage "
            "that ends, after which a retry succeeds.",
        },
    },
    "additionalProperties": False,
}
PARAMS_SCHEMA["properties"].update(writing.text_params())  # type: ignore[attr-defined]


class PlaceholderProvider:
    name = "placeholder"

    def __init__(self, settings: Settings | None = None) -> None:
        del settings  # nothing to configure

    def models(self) -> list[ModelSpec]:
        return [
            ModelSpec(
                id=MODEL_ID,
                provider=self.name,
                name=MODEL_ID,
                title="Placeholder",
                description=(
                    "Deterministic labelled images, and template text marked as placeholder "
                    "for captions, enhanced prompts and descriptions, made offline: for "
                    "development, tests and fallbacks."
                ),
                kinds=[TaskKind.IMAGE, *writing.TEXT_KINDS],
                params_schema=PARAMS_SCHEMA,
                sizes=SizeRange(min_side=16, max_side=4096, default="512x512"),
                limits=InputLimits(max_inputs=4, param_kinds=writing.TEXT_PARAM_KINDS),
                pricing=Pricing(per_image=0.0),
            )
        ]

    async def run(self, task: Task, ctx: RunContext) -> list[Output]:
        # ``latency_ms`` is the whole call, as a hosted model's response time is: its
        # progress reports, preview and drawing happen within it, not after it.
        latency_ms = int(task.params.get("latency_ms", 0))
        seconds, started = latency_ms / 1000, time.monotonic()
        steps = max(1, min(MAX_PROGRESS_STEPS, latency_ms // 100))  # one per 100 ms
        base_seed = task.seed if task.seed is not None else random.randrange(2**31)
        for step in range(1, steps):  # the last step comes with the result
            await _until(started + seconds * step / steps)
            await ctx.progress(step / steps, f"step {step}/{steps}")
            if step == steps // 2:  # halfway: a blurry look at the first image
                await ctx.preview(preview(task.prompt, base_seed, task.width, task.height))
        failure = task.params.get("fail")
        outage = time.time() < task.params.get("fail_until", math.inf)
        if failure and outage and ctx.attempt <= task.params.get("fail_attempts", ctx.attempt):
            await _until(started + seconds)
            if failure == "transient":
                raise ProviderUnavailable("placeholder: simulated transient failure")
            raise ProviderError("placeholder: simulated permanent failure", retryable=False)
        outputs = await self._make(task, base_seed)
        await _until(started + seconds)
        if seconds:
            await ctx.progress(1.0, f"step {steps}/{steps}")
        return outputs

    async def _make(self, task: Task, base_seed: int) -> list[Output]:
        if not task.kind.rules.sized:
            return await asyncio.to_thread(placeholder_text.write, task)
        image_seeds = seeds(base_seed, task.n)

        def render_all() -> list[bytes]:
            return [render(task.prompt, MODEL_ID, s, task.width, task.height) for s in image_seeds]

        # A large image takes tens of milliseconds to draw: off the event loop with it.
        # A tiny one takes about one, less than a hand-off to a thread costs.
        if task.width * task.height * task.n <= INLINE_RENDER_PIXELS:
            images = render_all()
        else:
            images = await asyncio.to_thread(render_all)
        return [
            Output(data=data, content_type="image/png", seed=seed)
            for seed, data in zip(image_seeds, images, strict=True)
        ]


async def _until(moment: float) -> None:
    """Sleep until ``moment`` (``time.monotonic()``), if it is still ahead (a call without
    latency takes no turn of the event loop)."""
    left = moment - time.monotonic()
    if left > 0:
        await asyncio.sleep(left)


def render(prompt: str, model: str, seed: int, width: int, height: int) -> bytes:
    """A PNG whose pixels depend only on the arguments."""
    image = _picture(prompt, seed, width, height)
    _label(
        ImageDraw.Draw(image),
        width,
        height,
        [
            "PLACEHOLDER",
            *textwrap.wrap(prompt or "(no prompt)", width=max(8, width // 12))[:4],
            f"{model} · seed {seed} · {width}x{height}",
        ],
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _picture(prompt: str, seed: int, width: int, height: int) -> Image.Image:
    """The picture under the label: a gradient and shapes that follow the prompt and seed."""
    digest = hashlib.sha256(f"{prompt}\0{seed}".encode()).digest()
    top, bottom = digest[:3], digest[3:6]
    image = Image.new("RGB", (width, height))
    gradient = Image.linear_gradient("L").resize((width, height))
    image.paste(
        Image.new("RGB", (width, height), tuple(top)), mask=gradient.point(lambda v: 255 - v)
    )
    image.paste(Image.new("RGB", (width, height), tuple(bottom)), mask=gradient)
    draw = ImageDraw.Draw(image)
    rng = random.Random(digest)
    for _ in range(6):  # a few seed-dependent shapes, so seeds are visibly different
        x, y = rng.randrange(width), rng.randrange(height)
        radius = rng.randrange(max(2, min(width, height) // 4))
        colour = tuple(rng.randrange(256) for _ in range(3))
        draw.ellipse(
            (x - radius, y - radius, x + radius, y + radius),
            outline=colour,
            width=max(1, radius // 8),
        )
    return image


def preview(prompt: str, seed: int, width: int, height: int) -> bytes:
    """A small, blurred WebP of the first image, as a model shows one midway (its label
    left out: the blur would make it unreadable anyway, and drawing text costs most)."""
    scale = min(1.0, PREVIEW_SIDE / max(width, height))
    small = (max(8, round(width * scale)), max(8, round(height * scale)))
    blurred = _picture(prompt, seed, *small).filter(ImageFilter.GaussianBlur(radius=3))
    buffer = io.BytesIO()
    blurred.save(buffer, format="WEBP", quality=60)
    return buffer.getvalue()


def _label(draw: ImageDraw.ImageDraw, width: int, height: int, lines: list[str]) -> None:
    font = _font(max(6, min(width, height) // 14))
    box_height = int(font.size * 1.3 * len(lines)) + 8
    top = max(0, (height - box_height) // 2)
    draw.rectangle((0, top, width, top + box_height), fill=(0, 0, 0))
    for i, line in enumerate(lines):
        draw.text((6, top + 4 + i * font.size * 1.3), line, font=font, fill=(255, 255, 255))


@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)  # type: ignore[return-value]
