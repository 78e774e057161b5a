"""What a model of the Replicate fake is, and what it does with an input.

Owns ``FakeModel`` (a model's public JSON and its Cog OpenAPI schema, built by
``cog_openapi``: ``components.schemas.Input`` / ``Output``, enums inline as newer Cog
writes them or through ``allOf`` refs as older Cog does), ``validate_input`` (an input
against the version's schema, with Replicate's ``invalid_fields`` messages), each model's
output size planning (``plan_*``: which sizes and file type an input asks for), and the
output files themselves (``render_outputs``: real PIL images, or for a video an MP4
*stub*) with the input images a model fetches (``load_image``). A model's own failure is
``ModelFailure``. The models themselves are in ``fakes.replicate_catalogue``.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from jsonschema import Draft7Validator
from PIL import Image, UnidentifiedImageError

from fakes.images import seed_colours
from fakes.replicate_webhooks import WEBHOOK_EVENTS

CONTENT_TYPES = {"webp": "image/webp", "jpg": "image/jpeg", "png": "image/png", "mp4": "video/mp4"}
PIL_FORMATS = {"webp": "WEBP", "jpg": "JPEG", "png": "PNG"}


class ModelFailure(Exception):
    """The model itself failed: the prediction ends ``failed`` with this message."""


PlanResult = tuple[list[tuple[int, int]], str]  # output sizes, file extension
Plan = Callable[[dict[str, Any], Image.Image | None], PlanResult]


@dataclass(frozen=True)
class FakeModel:
    """A model the fake serves: its public JSON, schema, and how its outputs are shaped."""

    owner: str
    name: str
    version_id: str
    official: bool
    description: str
    run_count: int
    cog_version: str
    version_created_at: str
    openapi_schema: dict[str, Any]
    plan: Plan  # (input with defaults, source image) -> what the outputs are
    source_field: str | None = None  # the input that names an image to fetch

    @property
    def ref(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def input_schema(self) -> dict[str, Any]:
        return dict(self.openapi_schema["components"]["schemas"]["Input"])

    def version_json(self) -> dict[str, Any]:
        return {
            "id": self.version_id,
            "created_at": self.version_created_at,
            "cog_version": self.cog_version,
            "openapi_schema": self.openapi_schema,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "url": f"https://replicate.com/{self.ref}",
            "owner": self.owner,
            "name": self.name,
            "description": self.description,
            "visibility": "public",
            "github_url": None,
            "paper_url": None,
            "license_url": None,
            "run_count": self.run_count,
            "cover_image_url": None,
            "default_example": None,
            "latest_version": self.version_json(),
        }


# --- Cog's OpenAPI documents ----------------------------------------------------------


def cog_field(order: int, description: str, **schema: Any) -> dict[str, Any]:
    """One input field as Cog lists it: its place in the form, its description, its schema."""
    return {"x-order": order, "description": description, **schema}


def cog_openapi(
    properties: dict[str, dict[str, Any]],
    required: list[str],
    output: dict[str, Any],
    *,
    enums_by_ref: bool,
) -> dict[str, Any]:
    """A Cog-style OpenAPI document; enums inline (newer Cog) or as ``allOf`` refs (older)."""
    schemas: dict[str, Any] = {}
    inputs: dict[str, Any] = {}
    for name, prop in properties.items():
        prop = dict(prop)
        if "enum" in prop and enums_by_ref:
            schemas[name] = {
                "title": name,
                "description": "An enumeration.",
                "enum": prop.pop("enum"),
                "type": prop.pop("type"),
            }
            prop["allOf"] = [{"$ref": f"#/components/schemas/{name}"}]
        elif "enum" in prop:
            prop["title"] = name
        else:
            prop["title"] = name.replace("_", " ").title()
        inputs[name] = prop
    schemas["Input"] = {"type": "object", "title": "Input", "required": required}
    schemas["Input"]["properties"] = inputs
    schemas["Output"] = {"title": "Output", **output}
    schemas["Status"] = {
        "title": "Status",
        "description": "An enumeration.",
        "enum": ["starting", "processing", "succeeded", "canceled", "failed"],
        "type": "string",
    }
    schemas["WebhookEvent"] = {
        "title": "WebhookEvent",
        "description": "An enumeration.",
        "enum": list(WEBHOOK_EVENTS),
        "type": "string",
    }
    return {
        "openapi": "3.0.2",
        "info": {"title": "Cog", "version": "0.1.0"},
        "paths": {},  # the prediction paths Cog lists are left out: clients read components
        "components": {"schemas": schemas},
    }


URI_OUTPUT = {"type": "string", "format": "uri"}
URI_LIST_OUTPUT = {"type": "array", "items": {"type": "string", "format": "uri"}}
SEED = cog_field(90, "Random seed. Set for reproducible generation", type="integer")

# --- output sizes ------------------------------------------------------------------------

# Sizes by aspect ratio at 1 megapixel, from Replicate's FLUX predictors (cog-flux).
FLUX_SIZES: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "16:9": (1344, 768),
    "21:9": (1536, 640),
    "3:2": (1216, 832),
    "2:3": (832, 1216),
    "4:5": (896, 1088),
    "5:4": (1088, 896),
    "3:4": (896, 1152),
    "4:3": (1152, 896),
    "9:16": (768, 1344),
    "9:21": (640, 1536),
}


def _round_to(value: float, multiple: int) -> int:
    return max(multiple, round(value / multiple) * multiple)


def _ratio(text: str) -> float:
    width, height = text.split(":")
    return float(width) / float(height)


def _size_for_ratio(ratio: float, megapixels: float = 1.0, multiple: int = 32) -> tuple[int, int]:
    area = megapixels * 1024 * 1024
    width = math.sqrt(area * ratio)
    return _round_to(width, multiple), _round_to(width / ratio, multiple)


def _flux_size(aspect_ratio: str) -> tuple[int, int]:
    return FLUX_SIZES.get(aspect_ratio) or _size_for_ratio(_ratio(aspect_ratio))


def plan_flux_pro(params: dict[str, Any], _: Image.Image | None) -> PlanResult:
    if params["aspect_ratio"] != "custom":
        return [_flux_size(params["aspect_ratio"])], params["output_format"]
    if "width" not in params or "height" not in params:
        raise ModelFailure("width and height must be set when aspect_ratio is custom")
    size = (_round_to(params["width"], 32), _round_to(params["height"], 32))
    return [size], params["output_format"]


def plan_flux_schnell(params: dict[str, Any], _: Image.Image | None) -> PlanResult:
    width, height = _flux_size(params["aspect_ratio"])
    if params["megapixels"] == "0.25":
        width, height = _round_to(width / 2, 16), _round_to(height / 2, 16)
    return [(width, height)] * params["num_outputs"], params["output_format"]


def plan_ideogram(params: dict[str, Any], _: Image.Image | None) -> PlanResult:
    if params["resolution"] != "None":
        width, height = (int(side) for side in params["resolution"].split("x"))
        return [(width, height)], "png"
    return [_size_for_ratio(_ratio(params["aspect_ratio"]))], "png"


def plan_seedream(params: dict[str, Any], _: Image.Image | None) -> PlanResult:
    if params["aspect_ratio"] == "custom":
        return [(params["width"], params["height"])], "jpg"
    ratio = _ratio(params["aspect_ratio"])
    if params["size"] == "small":  # the shortest side is 512
        size = (round(512 * ratio), 512) if ratio >= 1 else (512, round(512 / ratio))
    elif params["size"] == "big":  # the longest side is 2048
        size = (2048, round(2048 / ratio)) if ratio >= 1 else (round(2048 * ratio), 2048)
    else:  # regular: one megapixel
        size = _size_for_ratio(ratio, multiple=16)
    return [size], "jpg"


def plan_kontext(params: dict[str, Any], source: Image.Image | None) -> PlanResult:
    if params["aspect_ratio"] != "match_input_image":
        ratio = _ratio(params["aspect_ratio"])
    elif source is not None:
        ratio = source.width / source.height
    else:
        ratio = 1.0
    return [_size_for_ratio(ratio)], params["output_format"]


def plan_esrgan(params: dict[str, Any], source: Image.Image | None) -> PlanResult:
    assert source is not None  # "image" is required
    scale = float(params["scale"])
    if scale <= 0:
        raise ModelFailure("ValueError: scale must be greater than 0")
    return [(max(1, round(source.width * scale)), max(1, round(source.height * scale)))], "png"


def plan_kling(params: dict[str, Any], source: Image.Image | None) -> PlanResult:
    assert source is not None  # "start_image" is required
    short_side = 1080 if params["mode"] == "pro" else 720
    ratio = source.width / source.height
    if ratio >= 1:
        return [(_round_to(short_side * ratio, 2), short_side)], "mp4"
    return [(short_side, _round_to(short_side / ratio, 2))], "mp4"


# --- input validation (Replicate's messages, gojsonschema style) ------------------------


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return {float: "number", str: "string", list: "array", dict: "object"}.get(
        type(value), "unknown"
    )


def validate_input(model: FakeModel, payload: Any) -> list[dict[str, str]]:
    """Replicate's ``invalid_fields`` for an input: ``type``, ``field``, ``description``."""
    if not isinstance(payload, dict):
        given = _json_type(payload)
        described = f"Invalid type. Expected: object, given: {given}"
        return [{"type": "invalid_type", "field": "input", "description": described}]
    schema = model.input_schema
    problems = [
        {"type": "required", "field": "input", "description": f"{name} is required"}
        for name in schema["required"]
        if name not in payload
    ]
    validator = Draft7Validator({**schema, "components": model.openapi_schema["components"]})
    for error in sorted(validator.iter_errors(payload), key=lambda e: list(e.path)):
        if error.validator == "required" or not error.path:
            continue
        name = str(error.path[-1])
        where = "input." + ".".join(str(part) for part in error.path)
        if error.validator == "enum":
            options = ", ".join(json.dumps(option) for option in error.validator_value)
            problem = ("enum", f"{name} must be one of the following: {options}")
        elif error.validator == "maximum":
            problem = (
                "number_lte",
                f"Must be less than or equal to {_number(error.validator_value)}",
            )
        elif error.validator == "minimum":
            problem = (
                "number_gte",
                f"Must be greater than or equal to {_number(error.validator_value)}",
            )
        elif error.validator == "type":
            given = _json_type(error.instance)
            problem = (
                "invalid_type",
                f"Invalid type. Expected: {error.validator_value}, given: {given}",
            )
        else:
            problem = (str(error.validator), error.message)
        problems.append({"type": problem[0], "field": where, "description": problem[1]})
    return problems


def with_defaults(model: FakeModel, payload: dict[str, Any]) -> dict[str, Any]:
    properties = model.input_schema["properties"]
    defaults = {name: prop["default"] for name, prop in properties.items() if "default" in prop}
    return {**defaults, **payload}


# --- output files ------------------------------------------------------------------------


def _mp4_stub(size: tuple[int, int], seconds: int, source: bytes) -> bytes:
    """An ISO BMFF file with the right magic (``ftyp``), but no playable track."""

    def box(kind: bytes, payload: bytes) -> bytes:
        return (8 + len(payload)).to_bytes(4, "big") + kind + payload

    note = f"imagemill fake video {size[0]}x{size[1]} {seconds}s 24fps".encode()
    return (
        box(b"ftyp", b"isom\x00\x00\x02\x00isomiso2avc1mp41")
        + box(b"free", note)
        + box(b"mdat", source[:256])
    )


def render_outputs(
    sizes: list[tuple[int, int]],
    extension: str,
    seed: str,
    quality: int,
    source: Image.Image | None,
    seconds: int,
) -> list[bytes]:
    """The output files: the source image resized, or a flat colour from the prompt and seed."""
    files = []
    for index, size in enumerate(sizes):
        if extension == "mp4":
            buffer = io.BytesIO()
            (source or Image.new("RGB", (8, 8))).convert("RGB").save(buffer, "PNG")
            files.append(_mp4_stub(size, seconds, buffer.getvalue()))
            continue
        if source is not None:
            image = source.convert("RGB").resize(size, Image.Resampling.NEAREST)
        else:
            image = Image.new("RGB", size, seed_colours(f"{seed}/{index}")[0])
        buffer = io.BytesIO()
        options: dict[str, int] = {} if extension == "png" else {"quality": quality}
        if extension == "webp":
            options["method"] = 0  # the fastest encoder: 5x quicker than the default
        image.save(buffer, PIL_FORMATS[extension], **options)
        files.append(buffer.getvalue())
    return files


async def load_image(reference: str) -> Image.Image:
    """The image an input names: a data URI or an http(s) URL (fetched, as Replicate does)."""
    try:
        if reference.startswith("data:"):
            content = base64.b64decode(reference.split(",", 1)[1], validate=True)
        else:
            async with httpx.AsyncClient(timeout=5.0) as http:
                response = await http.get(reference)
                response.raise_for_status()
                content = response.content
        image = Image.open(io.BytesIO(content))
        image.load()
        return image
    except (httpx.HTTPError, binascii.Error, IndexError, UnidentifiedImageError, OSError) as exc:
        raise ModelFailure(f"Failed to load input image {reference[:80]!r}: {exc}") from exc
