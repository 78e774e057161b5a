"""Built-in styles: presets every server has, for any model.

A fresh server lists these beside each owner's own presets (``GET /v1/presets``, marked
``builtin``). They are read-only; ``POST /v1/presets/{id}/copy`` makes an owner's own,
editable copy. A job names one like any preset (``"preset": "cinematic"``); an owner's
own preset of the same name comes first, the id (``pre_builtin_cinematic``) always means
the built-in. A style names no model: its negative prompt is used by the models that take
one (``limits.negative_prompt``) and left out for the others, and its size applies when
the request gives neither ``size`` nor ``aspect_ratio``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from imagemill.db.accounts import PRESET_ID_PREFIX, Accounts, Preset
from imagemill.errors import NotFound

BUILTIN_ID_PREFIX = f"{PRESET_ID_PREFIX}builtin_"  # never a ULID: "i", "l" and "_" are not in one
_SINCE = datetime(2026, 1, 1, tzinfo=UTC)


def _style(name: str, description: str, template: str, negative: str, size: str) -> Preset:
    return Preset(
        id=BUILTIN_ID_PREFIX + name.replace(" ", "_"),
        owner_id="",
        name=name,
        description=description,
        model=None,
        prompt_template=f"{{prompt}}, {template}",
        negative_prompt=negative,
        size=size,
        params={},
        created_at=_SINCE,
        updated_at=_SINCE,
        builtin=True,
    )


BUILTIN_STYLES: tuple[Preset, ...] = (
    _style(
        "cinematic",
        "A film still: dramatic light, shallow depth of field, 16:9.",
        "cinematic film still, dramatic lighting, shallow depth of field, anamorphic lens, "
        "colour graded",
        "flat lighting, cartoon, low quality, blurry",
        "1536x864",
    ),
    _style(
        "elegant",
        "Refined and luxurious: soft light, a quiet neutral palette, premium materials.",
        "elegant and refined, luxurious materials, soft lighting, sophisticated neutral palette",
        "cheap, garish, cluttered, low quality",
        "1024x1280",
    ),
    _style(
        "festive",
        "A celebration: warm glowing lights, vivid colours, decorations.",
        "festive celebration, warm glowing lights, vibrant colours, joyful atmosphere, decorations",
        "gloomy, dull, low quality",
        "1024x1024",
    ),
    _style(
        "flat illustration",
        "Flat vector art: simple shapes, solid colours, clean outlines.",
        "flat vector illustration, simple geometric shapes, solid colours, clean outlines",
        "photorealistic, 3d render, texture, gradients, noise",
        "1024x1024",
    ),
    _style(
        "modern",
        "Clean and current: minimal composition, clean lines, bold contrast.",
        "modern design, clean lines, minimalist composition, bold contrast, contemporary "
        "colour palette",
        "cluttered, dated, ornate, low quality, blurry",
        "1024x1024",
    ),
    _style(
        "photographic",
        "A professional photograph: natural light, sharp focus, real detail, 3:2.",
        "professional photograph, natural lighting, sharp focus, realistic detail, 50mm lens",
        "illustration, painting, cartoon, cgi, blurry, distorted",
        "1536x1024",
    ),
    _style(
        "traditional",
        "Classic and timeless: rich warm tones, heritage craft and detail.",
        "traditional style, classic composition, rich warm tones, timeless craftsmanship, "
        "heritage details",
        "neon, futuristic, low quality",
        "1024x1024",
    ),
    _style(
        "watercolor",
        "A watercolour painting: soft washes, paper texture, bleeding edges.",
        "watercolor painting, soft washes, visible paper texture, gentle bleeding edges",
        "photograph, 3d render, harsh lines, digital noise",
        "1024x1024",
    ),
)
_BY_KEY = {key: style for style in BUILTIN_STYLES for key in (style.id, style.name)}


def builtin_style(id_or_name: str) -> Preset | None:
    """The built-in style of that id or name, if there is one."""
    return _BY_KEY.get(id_or_name)


async def find_preset(accounts: Accounts, owner_id: str, id_or_name: str) -> Preset:
    """The owner's own preset of that id or name, else the built-in style; ``NotFound``."""
    try:
        return await accounts.get_preset(owner_id, id_or_name)
    except NotFound:
        if (style := builtin_style(id_or_name)) is not None:
            return style
        raise
