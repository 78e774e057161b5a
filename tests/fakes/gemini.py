"""A fake of Google's Gemini API (Generative Language API) for image generation, and for
text (``fakes.gemini_text``).

It answers what the official ``google-genai`` SDK sends, on a real socket (see
``fakes.server.serve``):

- ``POST /{version}/models/{model}:generateContent`` for Gemini 2.5 Flash Image
  (``gemini-2.5-flash-image`` and its ``-preview`` alias): text and ``inlineData`` parts
  in, a short text part and a PNG ``inlineData`` part out, sized by
  ``generationConfig.imageConfig.aspectRatio``. With an input image the output is that
  image resized and blended half-and-half with the drawing, so an edit visibly derives
  from its input (and, with no aspect ratio, takes the nearest size to its shape).
- The same ``generateContent`` for the text models ``gemini-2.5-flash`` and
  ``gemini-2.5-flash-lite`` (``fakes.gemini_text``): text and inline images in, text out,
  JSON that conforms to a ``responseSchema`` or ``responseJsonSchema`` when asked for;
  a request for an image from them is the API's 400.
- ``POST /{version}/models/{model}:predict`` for Imagen (``imagen-3.0-generate-002``,
  ``imagen-4.0-generate-001``): ``instances[0].prompt`` and ``parameters`` in,
  ``predictions[].bytesBase64Encoded`` out. The Gemini API rejects the Vertex-only
  parameters (``negativePrompt``, ``seed``, ...).
- The same two methods under ``/{version}/publishers/google/models/...``: the Vertex AI
  "express mode" paths, which is where SDK 3.x sends ``generate_images`` (it refuses to
  call Imagen in Gemini API mode). Vertex accepts the Vertex-only parameters.

Any version segment in ``API_VERSIONS`` is accepted: the SDK defaults to ``v1`` (Gemini
API) and ``v1beta1`` (Vertex), the public docs use ``v1beta``.

Auth is the ``x-goog-api-key`` header or ``?key=``: a wrong key is 400
``INVALID_ARGUMENT`` with reason ``API_KEY_INVALID``, a missing one 403
``PERMISSION_DENIED``, as the real service answers. Errors have Google's shape
``{"error": {"code", "message", "status", "details"?}}``.

Safety is driven by words in the prompt: ``BLOCK_WORD`` blocks the prompt (Gemini:
``promptFeedback.blockReason``, no candidates; Imagen: every image dropped) and
``FILTER_WORD`` filters the output (Gemini: a candidate with ``finishReason:
IMAGE_SAFETY``, or ``SAFETY`` from a text model, and no content; Imagen: samples 1 and
3, counting from 0, dropped). Dropped Imagen images are reported with
``raiFilteredReason`` when ``includeRaiReason`` is set.

Faults (``fakes.faults.Faults``) are injected on the endpoint names ``generate_content``
and ``predict``, after auth and the model lookup. A hang ends when the client
disconnects, so a client timeout also lets the server shut down promptly.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import math
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fakes.faults import Faults, inject_fault
from fakes.gemini_requests import (
    BLOCK_WORD,
    FILTER_WORD,
    INPUT_IMAGE_TOKENS,
    RequestRejected,
    decode_bytes,
    get_field,
    invalid,
    one_of,
    read_contents,
    text_tokens,
)
from fakes.gemini_text import TEXT_MODELS, generate_text

API_VERSIONS = frozenset({"v1", "v1beta", "v1alpha", "v1beta1"})
GEMINI_IMAGE_MODELS = frozenset({"gemini-2.5-flash-image", "gemini-2.5-flash-image-preview"})
IMAGEN_MODELS = frozenset({"imagen-3.0-generate-002", "imagen-4.0-generate-001"})

# Output sizes of gemini-2.5-flash-image by aspect ratio (Gemini API image-generation docs).
GEMINI_SIZES: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "2:3": (832, 1248),
    "3:2": (1248, 832),
    "3:4": (864, 1184),
    "4:3": (1184, 864),
    "4:5": (896, 1152),
    "5:4": (1152, 896),
    "9:16": (768, 1344),
    "16:9": (1344, 768),
    "21:9": (1536, 672),
}
# Imagen 1K sizes by aspect ratio; "2K" (Imagen 4 only) doubles them.
IMAGEN_SIZES: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "3:4": (896, 1280),
    "4:3": (1280, 896),
    "9:16": (768, 1408),
    "16:9": (1408, 768),
}
IMAGEN_MAX_SAMPLES = 4
PERSON_GENERATION = ("dont_allow", "allow_adult", "allow_all")
OUTPUT_IMAGE_TOKENS = 1290  # every gemini-2.5-flash-image output image costs this many
# Parameters only Vertex AI accepts; the SDK's own tests mark them "not supported in Gemini API".
VERTEX_ONLY_PARAMETERS = (
    "negativePrompt",
    "seed",
    "addWatermark",
    "enhancePrompt",
    "language",
    "storageUri",
)

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",  # a gateway error has no gRPC status of its own
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
GOOGLE_MESSAGES = {
    429: "You exceeded your current quota, please check your plan and billing details.",
    500: "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
}


@dataclass(frozen=True)
class GeminiCall:
    """A request to a method route (rejected ones too); inline images replaced by their size."""

    model: str
    method: str
    version: str
    vertex: bool  # sent to the publishers/google/models path
    body: dict[str, Any]
    headers: dict[str, str]


def google_error(
    status: int, message: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": STATUS_NAMES.get(status, "UNKNOWN"),
    }
    if details:
        error["details"] = details
    return {"error": error}


class FakeGemini:
    """The fake service: serve ``.app``, assert on ``.calls``, steer ``.faults``."""

    def __init__(self, api_key: str = "test-key", faults: Faults | None = None) -> None:
        self.api_key = api_key
        self.faults = faults or Faults()
        self.calls: list[GeminiCall] = []
        self.app = Starlette(
            routes=[
                Route("/{version}/models/{model}:{method}", self._endpoint, methods=["POST"]),
                Route(
                    "/{version}/publishers/{publisher}/models/{model}:{method}",
                    self._endpoint,
                    methods=["POST"],
                ),
            ]
        )

    async def _endpoint(self, request: Request) -> Response:
        version = request.path_params["version"]
        model = request.path_params["model"]
        method = request.path_params["method"]
        vertex = "publisher" in request.path_params
        try:
            body = _parse_body(await request.body())
            self.calls.append(
                GeminiCall(model, method, version, vertex, _redact(body), dict(request.headers))
            )
            self._authenticate(request)
            endpoint = _route(version, model, method)
            fault = await inject_fault(self.faults, endpoint, request, self._fault_body)
            if fault is not None:
                return fault
            if endpoint == "generate_content" and model in TEXT_MODELS:
                return JSONResponse(generate_text(model, body))
            if endpoint == "generate_content":
                return JSONResponse(_generate_content(model, body))
            return JSONResponse(_predict(model, body, vertex=vertex))
        except RequestRejected as rejected:
            return JSONResponse(
                google_error(rejected.status, rejected.message, rejected.details),
                status_code=rejected.status,
            )

    def _authenticate(self, request: Request) -> None:
        key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
        if not key:
            raise RequestRejected(
                403,
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to "
                "call this API.",
            )
        if key != self.api_key:
            message = "API key not valid. Please pass a valid API key."
            reason = {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
            localized = {
                "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                "locale": "en-US",
                "message": message,
            }
            raise RequestRejected(400, message, [reason, localized])

    def _fault_body(self, status: int, message: str) -> dict[str, Any]:
        details: list[dict[str, Any]] | None = None
        if status == 429:
            details = [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        {
                            "quotaMetric": "generativelanguage.googleapis.com/"
                            "generate_content_free_tier_requests",
                            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                        }
                    ],
                },
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": f"{math.ceil(self.faults.retry_after)}s",
                },
            ]
        return google_error(status, GOOGLE_MESSAGES.get(status, message), details)


def _parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise RequestRejected(400, "Invalid JSON payload received. Unexpected token.") from None
    if not isinstance(body, dict):
        raise RequestRejected(400, "Invalid JSON payload received. Expected an object.")
    return body


def _route(version: str, model: str, method: str) -> str:
    """The fault-endpoint name that serves ``model:method``, or the 404/501 the API gives."""
    if method not in ("generateContent", "predict"):
        raise RequestRejected(501, f"The fake Gemini API does not implement {method}.")
    served = GEMINI_IMAGE_MODELS | TEXT_MODELS if method == "generateContent" else IMAGEN_MODELS
    if version not in API_VERSIONS or model not in served:
        raise RequestRejected(
            404,
            f"models/{model} is not found for API version {version}, or is not supported "
            f"for {method}. Call ListModels to see the list of available models and their "
            "supported methods.",
        )
    return "generate_content" if method == "generateContent" else "predict"


def _redact(value: Any) -> Any:
    """A copy of a JSON body with every inline image replaced by its size in bytes."""
    if isinstance(value, list):
        return [_redact(item) for item in value]
    if not isinstance(value, dict):
        return value
    redacted: dict[str, Any] = {}
    for key, item in value.items():
        if key in ("inlineData", "inline_data") and isinstance(item, dict):
            redacted[key] = {**item, "data": _decoded_length(item.get("data"))}
        elif key == "bytesBase64Encoded":
            redacted[key] = _decoded_length(item)
        else:
            redacted[key] = _redact(item)
    return redacted


def _decoded_length(data: Any) -> Any:
    try:
        return len(decode_bytes(data))
    except (binascii.Error, TypeError, ValueError):
        return data


# -- generateContent (Gemini 2.5 Flash Image) ------------------------------------------


def _generate_content(model: str, body: dict[str, Any]) -> dict[str, Any]:
    contents = body.get("contents")
    if not contents or not isinstance(contents, list):
        raise invalid("GenerateContentRequest.contents", "contents is not specified")
    config = get_field(body, "generationConfig", "generation_config") or {}
    modalities = _response_modalities(config)
    count = get_field(config, "candidateCount", "candidate_count")
    if count not in (None, 1):
        raise invalid(
            "GenerateContentRequest.generation_config.candidate_count",
            f"multiple candidates is not enabled for models/{model}",
        )
    prompt, images = read_contents(contents)
    size = _output_size(get_field(config, "imageConfig", "image_config") or {}, images)
    prompt_tokens = text_tokens(prompt) + INPUT_IMAGE_TOKENS * len(images)
    reply: dict[str, Any] = {
        "modelVersion": model,
        "responseId": hashlib.sha256(f"{model}\0{prompt}".encode()).hexdigest()[:22],
    }
    lowered = prompt.lower()
    if BLOCK_WORD in lowered:
        reply["promptFeedback"] = {
            "blockReason": "SAFETY",
            "safetyRatings": [
                {
                    "category": "HARM_CATEGORY_DANGEROUS_CONTENT",
                    "probability": "HIGH",
                    "blocked": True,
                }
            ],
        }
        reply["usageMetadata"] = _usage(prompt_tokens, 0)
        return reply
    if FILTER_WORD in lowered and "IMAGE" in modalities:
        reply["candidates"] = [
            {
                "finishReason": "IMAGE_SAFETY",
                "finishMessage": "Unable to show the generated image. The image was filtered "
                "out because it violated Google's Generative AI Prohibited Use policy.",
                "index": 0,
            }
        ]
        reply["usageMetadata"] = _usage(prompt_tokens, 0)
        return reply
    parts: list[dict[str, Any]] = []
    if "TEXT" in modalities:
        parts.append({"text": "Here is the image you asked for." if "IMAGE" in modalities else ""})
    if "IMAGE" in modalities:
        png = render_image(prompt, 0, size, base=images[-1] if images else None)
        parts.append(
            {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(png).decode()}}
        )
    output_tokens = ("IMAGE" in modalities) * OUTPUT_IMAGE_TOKENS + ("TEXT" in modalities) * 8
    reply["candidates"] = [
        {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
    ]
    reply["usageMetadata"] = _usage(prompt_tokens, output_tokens)
    return reply


def _response_modalities(config: dict[str, Any]) -> set[str]:
    requested = get_field(config, "responseModalities", "response_modalities") or ["TEXT", "IMAGE"]
    modalities = {str(modality).upper() for modality in requested}
    unsupported = modalities - {"TEXT", "IMAGE"}
    if unsupported:
        raise invalid(
            "GenerateContentRequest.generation_config.response_modalities",
            f"the model does not support the response modalities {sorted(unsupported)}",
        )
    return modalities


def _output_size(image_config: dict[str, Any], images: list[Image.Image]) -> tuple[int, int]:
    unknown = set(image_config) - {"aspectRatio", "aspect_ratio", "imageSize", "image_size"}
    if unknown:
        raise RequestRejected(
            400,
            f'Invalid JSON payload received. Unknown name "{sorted(unknown)[0]}" at '
            "'generation_config.image_config': Cannot find field.",
        )
    field = "GenerateContentRequest.generation_config.image_config"
    image_size = get_field(image_config, "imageSize", "image_size")
    if image_size is not None:
        one_of(image_size, ["1K"], f"{field}.image_size")  # 2.5 Flash Image is 1K only
    ratio = get_field(image_config, "aspectRatio", "aspect_ratio")
    if ratio is None:
        # The model matches its input image's shape, otherwise it draws a square.
        return _nearest_size(images[-1].size) if images else GEMINI_SIZES["1:1"]
    one_of(ratio, GEMINI_SIZES, f"{field}.aspect_ratio")
    return GEMINI_SIZES[ratio]


def _nearest_size(size: tuple[int, int]) -> tuple[int, int]:
    shape = math.log(size[0] / size[1])
    return min(GEMINI_SIZES.values(), key=lambda wh: abs(math.log(wh[0] / wh[1]) - shape))


def _usage(prompt_tokens: int, output_tokens: int) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "promptTokenCount": prompt_tokens,
        "totalTokenCount": prompt_tokens + output_tokens,
    }
    if output_tokens:
        usage["candidatesTokenCount"] = output_tokens
    return usage


# -- predict (Imagen) ------------------------------------------------------------------


def _predict(model: str, body: dict[str, Any], *, vertex: bool) -> dict[str, Any]:
    instances = body.get("instances")
    if not isinstance(instances, list) or len(instances) != 1:
        raise invalid("instances", "exactly one instance is required")
    prompt = instances[0].get("prompt") if isinstance(instances[0], dict) else None
    if not isinstance(prompt, str) or not prompt.strip():
        raise invalid("instances[0].prompt", "a non-empty prompt is required")
    parameters = body.get("parameters") or {}
    for name in () if vertex else VERTEX_ONLY_PARAMETERS:
        if name in parameters:
            raise invalid(f"parameters.{name}", "is not supported in Gemini API")
    sample_count = parameters.get("sampleCount", IMAGEN_MAX_SAMPLES)
    if type(sample_count) is not int or not 1 <= sample_count <= IMAGEN_MAX_SAMPLES:
        raise invalid("parameters.sampleCount", f"must be between 1 and {IMAGEN_MAX_SAMPLES}")
    ratio = parameters.get("aspectRatio", "1:1")
    one_of(ratio, IMAGEN_SIZES, "parameters.aspectRatio")
    person = str(parameters.get("personGeneration", "allow_adult")).lower()
    one_of(person, PERSON_GENERATION, "parameters.personGeneration")
    width, height = IMAGEN_SIZES[ratio]
    scale = _imagen_scale(model, parameters.get("sampleImageSize"))
    mime_type, quality = _output_options(parameters.get("outputOptions") or {})
    seed = parameters.get("seed")
    lowered = prompt.lower()
    predictions: list[dict[str, Any]] = []
    filtered = 0
    for index in range(sample_count):
        if BLOCK_WORD in lowered or (FILTER_WORD in lowered and index % 2 == 1):
            filtered += 1
            continue
        image = render_image(
            prompt if seed is None else f"{prompt}\0{seed}",
            index,
            (width * scale, height * scale),
            mime_type=mime_type,
            quality=quality,
        )
        prediction: dict[str, Any] = {
            "bytesBase64Encoded": base64.b64encode(image).decode(),
            "mimeType": mime_type,
        }
        if parameters.get("includeSafetyAttributes"):
            prediction["safetyAttributes"] = {"categories": [], "scores": []}
        predictions.append(prediction)
    if filtered and parameters.get("includeRaiReason"):
        predictions.append({"raiFilteredReason": _rai_reason(filtered, sample_count)})
    if parameters.get("includeSafetyAttributes"):
        predictions.append(
            {"contentType": "Positive Prompt", "safetyAttributes": {"categories": [], "scores": []}}
        )
    return {"predictions": predictions} if predictions else {}


def _imagen_scale(model: str, sample_image_size: Any) -> int:
    if sample_image_size is None:
        return 1
    if model.startswith("imagen-3.0"):
        raise invalid("parameters.sampleImageSize", f"not supported by {model}")
    scales = {"1K": 1, "2K": 2}
    size = str(sample_image_size).upper()  # the API takes "2k" as well
    one_of(size, scales, "parameters.sampleImageSize")
    return scales[size]


def _output_options(options: dict[str, Any]) -> tuple[str, int]:
    mime_type = options.get("mimeType", "image/png")
    one_of(mime_type, ["image/png", "image/jpeg"], "parameters.outputOptions.mimeType")
    quality = options.get("compressionQuality", 75)
    if type(quality) is not int or not 0 <= quality <= 100:
        raise invalid("parameters.outputOptions.compressionQuality", "must be between 0 and 100")
    return mime_type, quality


def _rai_reason(filtered: int, requested: int) -> str:
    if filtered == requested:
        counted = "All images were filtered out"
    else:
        counted = f"{filtered} generated image{'s' if filtered > 1 else ''} were filtered out"
    return (
        f"Unable to show generated images. {counted} because they violated Google's "
        "Responsible AI practices. You will not be charged for blocked images. Try "
        "rephrasing the prompt. Support codes: 39322892"
    )


# -- images ----------------------------------------------------------------------------


def render_image(
    prompt: str,
    index: int,
    size: tuple[int, int],
    *,
    base: Image.Image | None = None,
    mime_type: str = "image/png",
    quality: int = 75,
) -> bytes:
    """A decodable image of ``size``, the same for the same prompt and index.

    A background colour and a block, both chosen by a hash of (prompt, index). With a
    ``base`` image the result is that image resized and blended half-and-half with it.
    """
    digest = hashlib.sha256(f"{prompt}\0{index}".encode()).digest()
    width, height = size
    image = Image.new("RGB", size, tuple(digest[0:3]))
    left, top = digest[6] * width // 512, digest[7] * height // 512
    ImageDraw.Draw(image).rectangle(
        (left, top, left + width // 3, top + height // 3), fill=tuple(digest[3:6])
    )
    if base is not None:
        image = Image.blend(base.convert("RGB").resize(size), image, 0.5)
    out = io.BytesIO()
    if mime_type == "image/jpeg":
        image.save(out, format="JPEG", quality=quality)
    else:
        image.save(out, format="PNG", compress_level=1)
    return out.getvalue()
