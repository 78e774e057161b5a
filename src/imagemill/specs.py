"""What a model is, as imagemill presents it: its kinds, the sizes it makes, what it
takes (prompt length, input images, a mask, params for some kinds only), what it costs,
whether it is available here, and its provider's circuit breaker.

Providers declare their models as ``ModelSpec``s; submit checks every request against
them (``jobs/validation.py``), and ``GET /v1/models`` lists them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from imagemill.domain import Size, TaskKind
from imagemill.fields import MAX_N, MAX_SIDE, MIN_SIDE


class SizeRange(BaseModel):
    """Sizes a model accepts: any size within the bounds, or only the listed ones."""

    min_side: int = MIN_SIDE
    max_side: int = MAX_SIDE
    fixed: list[str] = Field(
        default_factory=list,
        description="The only sizes the model makes, if so; other sizes are made at the "
        "nearest of these and resized.",
    )
    multiple_of: int = Field(1, ge=1, description="Each side must be a multiple of this.")
    default: str = "1024x1024"


UPLOADED_TYPES = ["image/png", "image/jpeg", "image/webp", "image/gif"]


class InputLimits(BaseModel):
    """What a model takes besides the size: prompt length, input images, a mask, and how
    much an upscale enlarges. Submit checks every one, so nothing the model would refuse
    (after being paid) reaches it."""

    max_prompt_chars: int | None = Field(
        None, description="Longest prompt (and negative prompt), in characters."
    )
    max_prompt_bytes: int | None = Field(
        None, description="Longest prompt in UTF-8 bytes, where the provider counts bytes."
    )
    max_prompt_tokens: int | None = Field(
        None,
        description="Where the provider counts tokens: the most a prompt may certainly have "
        "(counted as a floor: every word is a token at least, and no token spans more than "
        "16 letters, or 4 characters of Chinese, Japanese or Korean).",
    )
    max_inputs: int = Field(1, ge=0, description="Input images for edit, upscale or video.")
    input_types: list[str] = Field(
        default_factory=lambda: list(UPLOADED_TYPES), description="Input formats accepted."
    )
    max_input_bytes: int | None = Field(None, description="Largest input image file.")
    max_total_input_bytes: int | None = Field(None, description="All input images together.")
    max_input_pixels: int | None = Field(None, description="Largest input image, in pixels.")
    min_input_side: int | None = Field(None, description="Shortest side of an input image.")
    max_input_side: int | None = Field(None, description="Longest side of an input image.")
    input_aspect: tuple[float, float] | None = Field(
        None, description="Narrowest and widest input shape, as width / height."
    )
    mask: bool = Field(False, description="Takes an edit mask (white repaints, black keeps).")
    negative_prompt: bool = Field(
        True, description="Takes a negative prompt (what to keep out of the image)."
    )
    param_kinds: dict[str, list[TaskKind]] = Field(
        default_factory=dict,
        description="Params for some kinds only (a generation's, an edit's): refused for "
        "the others, never dropped.",
    )
    upscale_factor: int | None = Field(None, description="How much an upscale enlarges.")
    upscale_param: str | None = Field(
        None, description="The param that sets how much an upscale enlarges, if one does."
    )


class Pricing(BaseModel):
    """What one image costs: a flat price, overridden by size, then by quality and size.

    ``by_quality`` maps a quality (``"hd"``, ``"high"``) to prices by size, where the
    size ``"*"`` stands for any other size.
    """

    currency: str = "USD"
    per_image: float = Field(0.0, ge=0)
    by_size: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict, description="Overrides per 'WxH'."
    )
    by_quality: dict[str, dict[str, Annotated[float, Field(ge=0)]]] = Field(
        default_factory=dict, description="Overrides per quality, then per 'WxH' (or '*')."
    )
    per_million_input_tokens: float = Field(
        0.0, ge=0, description="Text models: USD per million tokens read (text and images)."
    )
    per_million_output_tokens: float = Field(
        0.0, ge=0, description="Text models: USD per million tokens written."
    )
    configured: bool = Field(
        False,
        description="Set by this server's operator (IMAGEMILL_PRICES): an image is charged "
        "this table's price even where the provider reports a cost of its own.",
    )

    def tokens(self, read: int, written: int) -> float:
        """What a text model's call cost, from the tokens it read and wrote."""
        return (
            read * self.per_million_input_tokens + written * self.per_million_output_tokens
        ) / 1_000_000

    def price(self, size: Size, quality: str | None = None) -> float:
        flat = self.by_size.get(str(size), self.per_image)
        table = self.by_quality.get(quality or "")
        if table is None:
            return flat
        return table.get(str(size), table.get("*", flat))


class CircuitView(BaseModel):
    """A provider's circuit breaker as the serving process sees it."""

    state: Literal["closed", "open", "half_open"] = Field(
        description="closed: called as usual; open: skipped (to the fallback) after failing "
        "too often; half_open: one trial call is let through."
    )
    retry_after_seconds: float = Field(0.0, description="While open: until the trial call.")


class ModelSpec(BaseModel):
    """A model as imagemill presents it: identity, capabilities, params, pricing."""

    id: str  # "provider/model"
    provider: str
    name: str  # the model's name within its provider
    title: str = ""
    description: str = ""
    kinds: list[TaskKind] = Field(default_factory=lambda: [TaskKind.IMAGE])
    params_schema: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}, "additionalProperties": False}
    )
    sizes: SizeRange = Field(default_factory=SizeRange)
    limits: InputLimits = Field(default_factory=InputLimits)
    max_n: int = MAX_N
    supports_seed: bool = True
    pricing: Pricing = Field(default_factory=Pricing)
    aliases: list[str] = Field(default_factory=list)
    available: bool = True
    unavailable_reason: str | None = None
    circuit: CircuitView | None = Field(
        None,
        description="Its provider's circuit breaker, where this process runs jobs (null in "
        "an API-only process of a distributed deployment).",
    )

    def params_for(self, kind: TaskKind) -> dict[str, Any]:
        """The params (name → JSON Schema) it takes for ``kind``: those for some kinds only
        (``limits.param_kinds``) left out of the others."""
        taken = self.params_schema.get("properties", {})
        only = self.limits.param_kinds
        return {name: rule for name, rule in taken.items() if kind in only.get(name, [kind])}

    def unavailable(self, reason: str) -> ModelSpec:
        """This model, listed but not usable here, and why (e.g. a missing key)."""
        return self.model_copy(update={"available": False, "unavailable_reason": reason})
