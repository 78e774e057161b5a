"""The Replicate models imagemill drives, and their params schemas.

``CATALOGUE`` says how each model is driven: its kind, sizes, count and image inputs.
A model version's OpenAPI ``Input`` schema becomes imagemill's params schema here.

Cog publishes each input as an OpenAPI property, with enums either inline or behind
``allOf: [{"$ref": "#/components/schemas/<name>"}]`` and ordering hints (``x-order``).
imagemill validates ``params`` with JSON Schema before anything is sent, so the refs
are resolved, Cog's extensions dropped, unknown params refused, and the inputs that
imagemill fills in from the request itself (prompt, seed, size, images) left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from imagemill.domain import TaskKind
from imagemill.specs import InputLimits


@dataclass(frozen=True)
class Catalogued:
    """How imagemill drives one Replicate model."""

    ref: str  # owner/name
    kind: TaskKind
    title: str
    description: str
    price: float  # USD per output
    ratios: tuple[str, ...] = ()  # the model's aspect_ratio choices, if it has one
    custom_size: tuple[int, int, int] | None = None  # (min side, max side, multiple)
    count_field: str | None = None  # the input that sets how many outputs
    max_n: int = 4
    image_field: str | None = None  # the input image, for edit/upscale/video
    official: bool = True  # official models run by name; others need a version id
    video: bool = False
    limits: InputLimits = field(default_factory=InputLimits)  # what submit checks

    @property
    def id(self) -> str:
        return f"replicate/{self.ref}"


CATALOGUE = [
    Catalogued(
        "black-forest-labs/flux-1.1-pro",
        TaskKind.IMAGE,
        "FLUX 1.1 [pro]",
        "Black Forest Labs' fast, high-quality text-to-image model.",
        0.04,
        ratios=("1:1", "16:9", "3:2", "2:3", "4:5", "5:4", "9:16", "3:4", "4:3"),
        custom_size=(256, 1440, 32),
    ),
    Catalogued(
        "black-forest-labs/flux-schnell",
        TaskKind.IMAGE,
        "FLUX.1 [schnell]",
        "The fastest FLUX model, for drafts and previews.",
        0.003,
        ratios=("1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21"),
        count_field="num_outputs",
    ),
    Catalogued(
        "ideogram-ai/ideogram-v2",
        TaskKind.IMAGE,
        "Ideogram V2",
        "Ideogram's model, strong at text in images, posters and logos.",
        0.08,
        ratios=("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "16:10", "10:16", "3:1", "1:3"),
    ),
    Catalogued(
        "bytedance/seedream-3",
        TaskKind.IMAGE,
        "Seedream 3",
        "ByteDance's bilingual (English, Chinese) text-to-image model.",
        0.03,
        ratios=("1:1", "3:4", "4:3", "16:9", "9:16", "2:3", "3:2", "21:9"),
    ),
    Catalogued(
        "black-forest-labs/flux-kontext-pro",
        TaskKind.EDIT,
        "FLUX.1 Kontext [pro]",
        "Edits an image from a text instruction, keeping what is not asked to change.",
        0.04,
        ratios=("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "4:5", "5:4", "21:9", "9:21"),
        image_field="input_image",
        limits=InputLimits(input_types=["image/jpeg", "image/png", "image/gif", "image/webp"]),
    ),
    Catalogued(
        "nightmareai/real-esrgan",
        TaskKind.UPSCALE,
        "Real-ESRGAN",
        "Upscales an image (×2 to ×10) with optional face enhancement.",
        0.002,
        image_field="image",
        official=False,
        max_n=1,
        # Its predictor refuses inputs over 2,096,704 pixels ("the max size that fits in
        # GPU memory"); `scale` (default 4) sets the output's size.
        limits=InputLimits(max_input_pixels=2_096_704, upscale_param="scale"),
    ),
    Catalogued(
        "kwaivgi/kling-v2.1",
        TaskKind.VIDEO,
        "Kling 2.1",
        "Turns a still image into a 5 or 10 second video following a prompt.",
        0.25,
        image_field="start_image",
        max_n=1,
        video=True,
        # Kling's image-to-video reference: JPEG or PNG up to 10 MB, sides of 300 px or
        # more, shapes from 1:2.5 to 2.5:1; prompts to 2,500 characters.
        limits=InputLimits(
            max_prompt_chars=2500,
            input_types=["image/jpeg", "image/png"],
            max_input_bytes=10 * 1024 * 1024,
            min_input_side=300,
            input_aspect=(1 / 2.5, 2.5),
        ),
    ),
]
# Inputs imagemill fills in from the request, never taken from params.
CONTROLLED = {"prompt", "seed", "aspect_ratio", "width", "height", "negative_prompt"}


KEPT_KEYWORDS = {
    "type",
    "title",
    "description",
    "default",
    "enum",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "items",
    "nullable",
}


def input_params_schema(
    openapi: dict[str, Any], controlled: Iterable[str]
) -> tuple[dict[str, Any], list[str]]:
    """The params schema, and the names of every input the version takes."""
    components = openapi.get("components", {}).get("schemas", {})
    source = components.get("Input", {})
    properties = source.get("properties", {})
    left_out = set(controlled)
    ordered = sorted(properties.items(), key=lambda item: item[1].get("x-order", 1_000))
    params = {name: _resolved(spec, components) for name, spec in ordered if name not in left_out}
    schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": params,
    }
    required = [name for name in source.get("required", []) if name in params]
    if required:
        schema["required"] = required
    return schema, [name for name, _ in ordered]


def _resolved(spec: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """One input's schema with ``$ref``s inlined and only JSON Schema keywords kept."""
    merged: dict[str, Any] = {}
    for part in spec.get("allOf", []):
        merged.update(_resolved(_target(part, components), components))
    if "$ref" in spec:
        merged.update(_resolved(_target(spec, components), components))
    for key, value in spec.items():
        if key in KEPT_KEYWORDS:
            merged[key] = _resolved(value, components) if key == "items" else value
    if merged.get("format") == "uri":
        merged.pop("format")  # a URL or a data URI; Replicate checks it
    return merged


def _target(reference: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    ref = reference.get("$ref", "")
    name = ref.rsplit("/", 1)[-1]
    found = components.get(name)
    return found if isinstance(found, dict) else {}
