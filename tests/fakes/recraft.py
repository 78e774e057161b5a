"""A fake of the Recraft API's image generation, written from Recraft's public reference.

Owns ``FakeRecraft``: ``POST /v1/images/generations`` in the OpenAI images shape (so the
``openai`` SDK drives it with ``base_url=.../v1``) for ``recraftv3`` and ``recraftv2``,
with Recraft's styles, sizes (``WxH`` or an aspect ``w:h``), ``n`` of 1 to 6, controls,
raster PNGs or, for vector styles, SVG files, behind signed URLs that expire.

Errors: 401 is ``text/plain`` ``request unauthorized`` and an unknown path is
``text/plain`` ``404 page not found``, as Recraft's error page lists them; the reference
gives no body for validation errors, so they are ``{"code": ..., "message": ...}``.
"""

from __future__ import annotations

import base64
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from fakes.blobs import BlobStore, Clock
from fakes.calls import RecordedCall, bearer_token
from fakes.faults import Faults, inject_fault
from fakes.hosted import ServesImageUrls
from fakes.images import render_image, seed_colours

RGB = tuple[int, int, int]

# Recraft V2 and V3 sizes (the appendix), and the aspects that name them.
ASPECTS = {
    "1:1": "1024x1024",
    "2:1": "2048x1024",
    "1:2": "1024x2048",
    "3:2": "1536x1024",
    "2:3": "1024x1536",
    "4:3": "1365x1024",
    "3:4": "1024x1365",
    "5:4": "1280x1024",
    "4:5": "1024x1280",
    "6:10": "1024x1707",
    "14:10": "1434x1024",
    "10:14": "1024x1434",
    "16:9": "1820x1024",
    "9:16": "1024x1820",
}
SIZES = frozenset(ASPECTS.values()) | {"1707x1024"}
VECTOR_STYLES = frozenset({"vector_illustration", "icon"})
# Style families per model: icon is V2's alone, logo_raster V3's alone.
_SHARED_STYLES = ("any", "realistic_image", "digital_illustration", "vector_illustration")
STYLES = {"recraftv3": (*_SHARED_STYLES, "logo_raster"), "recraftv2": (*_SHARED_STYLES, "icon")}
CREDITS = {("recraftv3", False): 40, ("recraftv3", True): 80}  # per image (1 USD = 1000)
CREDITS |= {("recraftv2", False): 22, ("recraftv2", True): 44}
PARAMS = frozenset(
    {"prompt", "model", "style", "style_id", "substyle", "size", "n", "response_format"}
    | {"controls", "negative_prompt", "text_layout"}
)
CONTROLS = frozenset({"colors", "background_color", "artistic_level", "no_text"})
MAX_PROMPT_BYTES = 1000


class RecraftError(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status

    def response(self) -> JSONResponse:
        return JSONResponse({"code": self.code, "message": self.message}, self.status)


def recraft_error_body(status: int, message: str) -> dict[str, Any]:
    """Faults' error bodies, in the shape this fake gives Recraft's errors."""
    code = "rate_limit_exceeded" if status == 429 else "internal_error"
    return {"code": code, "message": message}


@dataclass(frozen=True)
class Generation:
    model: str
    prompt: str
    style: str  # "custom" for a style_id
    n: int
    width: int
    height: int
    response_format: str
    background: RGB | None
    accent: RGB | None

    @property
    def vector(self) -> bool:
        return self.style in VECTOR_STYLES


def _rgb(value: object, where: str) -> RGB:
    rgb = value.get("rgb") if isinstance(value, dict) else None
    if (
        not isinstance(rgb, list)
        or len(rgb) != 3
        or not all(isinstance(c, int) and 0 <= c <= 255 for c in rgb)
    ):
        raise RecraftError("invalid_controls", f"{where} must be {{'rgb': [r, g, b]}}, 0..255")
    return rgb[0], rgb[1], rgb[2]


def _controls(controls: object) -> tuple[RGB | None, RGB | None]:
    """The fill colours the controls ask for: (background, first preferred colour)."""
    if controls is None:
        return None, None
    if not isinstance(controls, dict) or not controls.keys() <= CONTROLS:
        raise RecraftError("invalid_controls", f"controls may hold only {sorted(CONTROLS)}")
    level = controls.get("artistic_level", 0)
    if not isinstance(level, int) or not 0 <= level <= 5:
        raise RecraftError("invalid_controls", "controls.artistic_level must be 0 to 5")
    if not isinstance(controls.get("no_text", False), bool):
        raise RecraftError("invalid_controls", "controls.no_text must be a boolean")
    colors = controls.get("colors", [])
    if not isinstance(colors, list):
        raise RecraftError("invalid_controls", "controls.colors must be a list")
    preferred = [_rgb(color, "controls.colors[]") for color in colors]
    background = controls.get("background_color")
    return (
        _rgb(background, "controls.background_color") if background is not None else None,
        preferred[0] if preferred else None,
    )


def validate(fields: dict[str, Any]) -> Generation:
    """The request, checked against Recraft's reference for V2 and V3."""
    fields = {key: value for key, value in fields.items() if value is not None}
    unknown = sorted(fields.keys() - PARAMS)
    if unknown:
        raise RecraftError("unknown_parameter", f"unknown parameter '{unknown[0]}'")
    prompt = fields.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise RecraftError("invalid_prompt", "prompt is required")
    if len(prompt.encode()) > MAX_PROMPT_BYTES:
        raise RecraftError("invalid_prompt", f"prompt is longer than {MAX_PROMPT_BYTES} bytes")
    model = fields.get("model", "recraftv3")
    if not isinstance(model, str) or model not in STYLES:
        raise RecraftError("invalid_model", f"model must be one of {sorted(STYLES)}")
    if not isinstance(fields.get("negative_prompt", ""), str):
        raise RecraftError("invalid_negative_prompt", "negative_prompt must be a string")
    if "style" in fields and "style_id" in fields:
        raise RecraftError("invalid_style", "style and style_id are mutually exclusive")
    style = "custom" if "style_id" in fields else fields.get("style", "realistic_image")
    if "style_id" in fields:
        try:
            uuid.UUID(str(fields["style_id"]))
        except ValueError as exc:
            raise RecraftError("invalid_style", "style_id must be a UUID") from exc
    elif style not in STYLES[model]:
        raise RecraftError("invalid_style", f"style '{style}' is not supported by {model}")
    if "substyle" in fields and (style in ("any", "custom") or "style" not in fields):
        raise RecraftError("invalid_substyle", "substyle needs a style")
    if "text_layout" in fields and model != "recraftv3":
        raise RecraftError("invalid_text_layout", "text_layout is supported by recraftv3 only")
    size = fields.get("size", "1024x1024")
    size = ASPECTS.get(size, size) if isinstance(size, str) else None
    if size not in SIZES:
        raise RecraftError("invalid_size", f"size {fields.get('size')!r} is not supported")
    n = fields.get("n", 1)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 6:
        raise RecraftError("invalid_n", "n must be between 1 and 6")
    response_format = fields.get("response_format", "url")
    if response_format not in ("url", "b64_json"):
        raise RecraftError("invalid_response_format", "response_format must be url or b64_json")
    background, accent = _controls(fields.get("controls"))
    width, height = (int(side) for side in size.split("x"))
    return Generation(model, prompt, style, n, width, height, response_format, background, accent)


def render_svg(generation: Generation, seed: str) -> bytes:
    """A vector picture of the requested size: a background and a centred block."""
    background, accent = seed_colours(seed)
    background, accent = generation.background or background, generation.accent or accent
    w, h = generation.width, generation.height
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}"><rect width="{w}" height="{h}" fill="{_hex(background)}"/>'
        f'<rect x="{w // 4}" y="{h // 4}" width="{w // 2}" height="{h // 2}" '
        f'fill="{_hex(accent)}"/></svg>'
    ).encode()


def _hex(rgb: RGB) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


class FakeRecraft(ServesImageUrls):
    """The Recraft API, in process: ``app`` is the ASGI app to serve.

    The same instruments as ``FakeOpenAI``: ``faults`` (endpoints ``"generations"`` and
    ``"files"``), ``calls``, ``base_url``, ``downloads`` / ``downloads_of(url)``,
    ``expire_urls()``, ``serve()``, ``plug_into``. URLs live ``url_ttl_seconds``
    (Recraft keeps images about 24 hours).
    """

    def __init__(
        self,
        api_key: str = "recraft-test",
        url_ttl_seconds: float = 24 * 3600.0,
        faults: Faults | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.api_key = api_key
        self.faults = faults if faults is not None else Faults()
        self.calls: list[RecordedCall] = []
        self.base_url: str | None = None
        self.blobs = BlobStore(url_ttl_seconds, clock, prefix="/images/signed")
        self._clock = clock
        self.app = Starlette(
            routes=[
                Route("/v1/images/generations", self._generations, methods=["POST"]),
                Route("/images/signed/{name}", self._download, methods=["GET"]),
            ],
            exception_handlers={HTTPException: self._http_error},
        )

    async def _generations(self, request: Request) -> Response:
        raw = await request.body()
        try:
            fields = json.loads(raw)
        except ValueError:
            fields = None
        if self.base_url is None:
            self.base_url = str(request.base_url).rstrip("/")
        recorded = fields if isinstance(fields, dict) else {}
        self.calls.append(RecordedCall("generations", recorded, {}, dict(request.headers)))
        token = bearer_token(request)
        if token is None or not hmac.compare_digest(token, self.api_key):
            return PlainTextResponse("request unauthorized", status_code=401)
        fault = await inject_fault(self.faults, "generations", request, recraft_error_body)
        if fault is not None:
            return fault
        try:
            if not isinstance(fields, dict):
                raise RecraftError("invalid_json", "the body must be a JSON object")
            generation = validate(fields)
        except RecraftError as error:
            return error.response()
        return JSONResponse(self._generate(generation, str(request.base_url)))

    def _generate(self, generation: Generation, base_url: str) -> dict[str, Any]:
        data = []
        for index in range(generation.n):
            seed = f"{generation.prompt}\x00{index}"
            if generation.vector:
                content, fmt = render_svg(generation, seed), "svg"
            else:
                w, h = generation.width, generation.height
                content = render_image(
                    seed, w, h, fill=generation.background, accent=generation.accent
                )
                fmt = "png"
            item = {"image_id": str(uuid.uuid4())}
            if generation.response_format == "url":
                item["url"] = self.blobs.put(content, fmt, base_url)
            else:
                item["b64_json"] = base64.b64encode(content).decode()
            data.append(item)
        credits = CREDITS[(generation.model, generation.vector)] * generation.n
        return {"created": int(self._clock()), "credits": credits, "data": data}

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException) and exc.status_code == 405:
            return PlainTextResponse("Method Not Allowed", status_code=405)
        return PlainTextResponse("404 page not found", status_code=404)
