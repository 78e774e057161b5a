"""Gemini's text models for the Gemini fake: ``generateContent`` on ``gemini-2.5-flash``
and ``gemini-2.5-flash-lite``, written from the Gemini API reference (generateContent,
structured output, image understanding, thinking).

Owns ``TEXT_MODELS`` and ``generate_text(model, body)``, the answer ``FakeGemini`` sends.

- They answer text only: a request for any other response modality (``IMAGE``) is the
  API's 400 "Model does not support the requested response modalities".
- ``contents`` with text and inline images (vision: each image counts
  ``INPUT_IMAGE_TOKENS`` prompt tokens), ``systemInstruction``, and ``generationConfig``:
  ``candidateCount`` (1 to 8), ``temperature``, ``seed``, ``maxOutputTokens``,
  ``thinkingConfig.thinkingBudget``, ``responseMimeType`` and a response schema.
- ``responseMimeType: application/json`` with ``responseSchema`` (the OpenAPI subset:
  upper-case types, int64 limits as strings or numbers, camelCase or proto field names;
  an unknown field, e.g. ``additionalProperties`` (Vertex AI's only), or a lower-case
  type is the API's 400) or ``responseJsonSchema`` (JSON Schema):
  every candidate's text is a JSON document that conforms (``fakes.structured``), its
  properties in ``propertyOrdering`` order (``responseSchema``: else alphabetical) or the
  schema's own (``responseJsonSchema``). ``text/x.enum`` answers the schema's first enum
  value. Without a schema: a short sentence of the user's words (JSON: ``{"answer": …}``).
- Answers are made of the last turn's words, the same for the same request; each
  candidate differs, and ``seed`` changes them.
- Thinking: ``gemini-2.5-flash`` thinks unless ``thinkingBudget`` is 0 (``-lite`` only
  when given a budget); its thoughts are reported in ``thoughtsTokenCount`` and, as on
  the real service, spend ``maxOutputTokens`` first. An answer longer than what is left
  is cut: ``finishReason: MAX_TOKENS`` (with no parts at all when nothing was left).
- Safety: ``BLOCK_WORD`` in the prompt blocks it (``promptFeedback.blockReason``, no
  candidates), ``FILTER_WORD`` withholds every candidate (``finishReason: SAFETY``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fakes.gemini_requests import (
    BLOCK_WORD,
    FILTER_WORD,
    INPUT_IMAGE_TOKENS,
    RequestRejected,
    get_field,
    invalid,
    read_contents,
    text_tokens,
)
from fakes.structured import OpenAPIProblem, SchemaProblem, Words, from_openapi, instance

TEXT_MODELS = frozenset({"gemini-2.5-flash", "gemini-2.5-flash-lite"})
THINKS_UNASKED = frozenset({"gemini-2.5-flash"})
MAX_CANDIDATES = 8
MAX_THINKING_BUDGET = 24576
MIME_TYPES = ("text/plain", "application/json", "application/xml", "application/yaml")
ENUM_MIME_TYPE = "text/x.enum"
CONFIG = "GenerateContentRequest.generation_config"
SAFETY_RATING = {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}


def generate_text(model: str, body: dict[str, Any]) -> dict[str, Any]:
    """The ``GenerateContentResponse`` of a text model; ``RequestRejected`` as the API
    refuses the request."""
    contents = body.get("contents")
    if not contents or not isinstance(contents, list):
        raise invalid("GenerateContentRequest.contents", "contents is not specified")
    config = get_field(body, "generationConfig", "generation_config") or {}
    _check_modalities(config)
    count = _candidate_count(config)
    _check_number(config, "temperature", "temperature", 0, 2)
    most = get_field(config, "maxOutputTokens", "max_output_tokens")
    if most is not None:
        _check_number(config, "maxOutputTokens", "max_output_tokens", 1, 2**31)
    mime_type, schema = _response_format(config)
    thinking = _thinking(model, config)
    seed = config.get("seed")
    prompt, images = read_contents(contents)
    system = get_field(body, "systemInstruction", "system_instruction")
    text_tokens_in = sum(text_tokens(text) for text in _texts(contents) + _texts([system]))
    image_tokens = INPUT_IMAGE_TOKENS * len(images)
    reply: dict[str, Any] = {
        "modelVersion": model,
        "responseId": hashlib.sha256(f"{model}\0{seed}\0{prompt}".encode()).hexdigest()[:22],
    }
    details = [{"modality": "TEXT", "tokenCount": text_tokens_in}]
    if images:
        details.append({"modality": "IMAGE", "tokenCount": image_tokens})
    usage = {"promptTokenCount": text_tokens_in + image_tokens, "promptTokensDetails": details}
    lowered = prompt.lower()
    if BLOCK_WORD in lowered:
        reply["promptFeedback"] = {
            "blockReason": "SAFETY",
            "safetyRatings": [{**SAFETY_RATING, "blocked": True}],
        }
        reply["usageMetadata"] = _totalled(usage)
        return reply
    words = Words(prompt)
    candidates: list[dict[str, Any]] = []
    written = thoughts = 0
    for index in range(count):
        if FILTER_WORD in lowered:
            rating = [{**SAFETY_RATING, "blocked": True}]
            candidates.append({"finishReason": "SAFETY", "index": index, "safetyRatings": rating})
            continue
        text = _answer(mime_type, schema, words, f"{seed}/{index}")
        thought = min(3 * text_tokens(text) + 64, thinking) if thinking else 0
        finish = "STOP"
        if most is not None and thought + text_tokens(text) > most:
            thought = min(thought, most)
            text, finish = text[: (most - thought) * 4], "MAX_TOKENS"
        content: dict[str, Any] = {"role": "model"}
        if text:
            content["parts"] = [{"text": text}]
        candidates.append({"content": content, "finishReason": finish, "index": index})
        written += text_tokens(text) if text else 0
        thoughts += thought
    reply["candidates"] = candidates
    if written:
        usage["candidatesTokenCount"] = written
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    reply["usageMetadata"] = _totalled(usage)
    return reply


def _answer(mime_type: str, schema: dict[str, Any] | None, words: Words, key: str) -> str:
    if mime_type == ENUM_MIME_TYPE:
        return str(instance(schema or {"type": "string"}, words, key))
    if mime_type != "application/json":
        return words.sentence(key)
    if schema is None:
        return json.dumps({"answer": words.sentence(key)}, ensure_ascii=False)
    return json.dumps(instance(schema, words, key), ensure_ascii=False)


def _check_modalities(config: dict[str, Any]) -> None:
    asked = get_field(config, "responseModalities", "response_modalities") or ["TEXT"]
    if any(str(modality).upper() != "TEXT" for modality in asked):
        listed = ",".join(str(modality).lower() for modality in asked)
        raise RequestRejected(
            400, f"Model does not support the requested response modalities: {listed}"
        )


def _candidate_count(config: dict[str, Any]) -> int:
    count = get_field(config, "candidateCount", "candidate_count")
    if count is None:
        return 1
    if type(count) is not int or not 1 <= count <= MAX_CANDIDATES:
        problem = f"must be between 1 and {MAX_CANDIDATES}, got {count!r}"
        raise invalid(f"{CONFIG}.candidate_count", problem)
    return count


def _check_number(config: dict[str, Any], camel: str, snake: str, low: float, high: float) -> None:
    value = get_field(config, camel, snake)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise invalid(f"{CONFIG}.{snake}", f"must be in the range [{low:g}, {high:g}]")


def _thinking(model: str, config: dict[str, Any]) -> int:
    """How many tokens the model may think (0: it does not think; -1, dynamic, is
    unbounded)."""
    thinking_config = get_field(config, "thinkingConfig", "thinking_config") or {}
    budget = get_field(thinking_config, "thinkingBudget", "thinking_budget")
    if budget is None:
        return 2**31 if model in THINKS_UNASKED else 0
    if type(budget) is not int or not -1 <= budget <= MAX_THINKING_BUDGET:
        problem = f"the thinking budget must be between -1 and {MAX_THINKING_BUDGET}"
        raise invalid(f"{CONFIG}.thinking_config.thinking_budget", problem)
    return 2**31 if budget == -1 else budget


def _response_format(config: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """The answer's MIME type and JSON Schema (``None``: none asked for)."""
    mime_type = get_field(config, "responseMimeType", "response_mime_type") or "text/plain"
    if mime_type not in (*MIME_TYPES, ENUM_MIME_TYPE):
        raise invalid(
            f"{CONFIG}.response_mime_type",
            "allowed mimetypes are `text/plain`, `application/json`, `application/xml`, "
            "`application/yaml` and `text/x.enum`.",
        )
    openapi = get_field(config, "responseSchema", "response_schema")
    json_schema = get_field(config, "responseJsonSchema", "response_json_schema")
    if openapi is None and json_schema is None:
        return mime_type, None
    if openapi is not None and json_schema is not None:
        problem = "response_schema and response_json_schema cannot both be set"
        raise invalid(f"{CONFIG}.response_schema", problem)
    if mime_type not in ("application/json", ENUM_MIME_TYPE):
        problem = "a response schema needs response_mime_type application/json or text/x.enum"
        raise invalid(f"{CONFIG}.response_mime_type", problem)
    if json_schema is not None:
        field = "response_json_schema"
        if not isinstance(json_schema, dict):
            raise invalid(f"{CONFIG}.{field}", "must be a JSON Schema object")
        schema = json_schema
    else:
        field = "response_schema"
        schema = _from_openapi(openapi)
    try:
        instance(schema, Words(""))  # a schema no document can follow is a 400 too
    except SchemaProblem as exc:
        raise invalid(f"{CONFIG}.{field}", str(exc)) from None
    return mime_type, schema


def _from_openapi(openapi: Any) -> dict[str, Any]:
    try:
        return from_openapi(openapi)
    except OpenAPIProblem as problem:
        where = ".".join(("generation_config.response_schema", problem.where)).rstrip(".")
        if problem.kind == "unknown_name":
            raise RequestRejected(
                400,
                f'Invalid JSON payload received. Unknown name "{problem.detail}" at '
                f"'{where}': Cannot find field.",
            ) from None
        if problem.kind == "invalid_value" and where.endswith(".type"):
            raise RequestRejected(
                400,
                f"Invalid JSON payload received. Invalid value at '{where}' "
                f"(type.googleapis.com/google.ai.generativelanguage.v1beta.Type), "
                f"{problem.detail}",
            ) from None
        if problem.kind == "invalid_value":
            message = f"Invalid JSON payload received. Invalid value at '{where}' {problem.detail}"
            raise RequestRejected(400, message) from None
        raise invalid(f"GenerateContentRequest.{where}", problem.detail) from None


def _texts(contents: list[Any]) -> list[str]:
    """Every text part of ``contents`` (turns, or a system instruction)."""
    texts = []
    for content in contents:
        if isinstance(content, dict):
            for part in content.get("parts") or []:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    texts.append(part["text"])
    return texts


def _totalled(usage: dict[str, Any]) -> dict[str, Any]:
    parts = ("promptTokenCount", "candidatesTokenCount", "thoughtsTokenCount")
    return {**usage, "totalTokenCount": sum(usage.get(name, 0) for name in parts)}
