"""OpenAI Chat Completions for the OpenAI fake, written from OpenAI's public API reference
(chat completions, structured outputs, vision).

Owns ``complete(fields, created)``: a ``POST /v1/chat/completions`` body checked as the
API checks it, and the ``chat.completion`` it answers. ``FakeOpenAI`` serves it; the
messages are read by ``fakes.openai_messages``.

- Models ``gpt-4o-mini`` and ``gpt-4.1-mini`` (both see images); the answer names the
  snapshot that served it (``gpt-4o-mini-2024-07-18``). An image model is "not a chat
  model" and any other name "does not exist": 404 ``model_not_found``, as the API answers.
- ``messages``: system, developer, user and assistant turns; a user's content is a string
  or parts (``text``, ``image_url`` with a data URL and ``detail``).
- ``response_format``: ``text``; ``json_object`` (the messages must say "json");
  ``json_schema``, whose schema with ``strict: true`` must follow strict mode's rules
  (every object ``additionalProperties: false`` and every property ``required``), else
  400 naming ``response_format``. The answer conforms to the schema (``fakes.structured``).
- The answer is made of the user's words, the same for the same request: ``n`` choices,
  each different; ``seed`` changes it. Without a schema it is one short sentence.
- ``max_completion_tokens`` / ``max_tokens`` cut an answer short: ``finish_reason``
  ``length`` (and the JSON with it, as the API does). ``stop`` cuts at a stop sequence.
- Refusals: a user text with ``BLOCKED_WORD`` ("forbidden", the images fake's word) is
  refused. With a ``json_schema`` the refusal is ``message.refusal`` (content null), as
  structured outputs report it; otherwise the apology is the content, as a plain refusal
  reads.
- Usage: about four characters a token, a few tokens per message, and a fixed,
  plausible (not billed) figure per input image: ``IMAGE_TOKENS`` by ``detail``.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from typing import Any

from fakes.openai_messages import (
    Conversation,
    invalid_type,
    missing,
    one_of,
    read_messages,
    tokens,
)
from fakes.openai_models import BLOCKED_WORD, OpenAIError
from fakes.openai_models import MODELS as IMAGE_MODELS
from fakes.structured import SchemaProblem, Words, instance

SNAPSHOTS = {"gpt-4o-mini": "gpt-4o-mini-2024-07-18", "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14"}
MAX_COMPLETION_TOKENS = {"gpt-4o-mini": 16384, "gpt-4.1-mini": 32768}
REFUSAL = "I'm sorry, but I can't assist with that request."
SUPPORTED = frozenset(
    {"model", "messages", "response_format", "n", "temperature", "top_p", "seed"}
    | {"max_tokens", "max_completion_tokens", "user", "safety_identifier", "stop", "store"}
    | {"metadata", "presence_penalty", "frequency_penalty", "logit_bias", "service_tier"}
    | {"prompt_cache_key", "parallel_tool_calls"}
)
NOT_FAKED = frozenset(  # real parameters this fake does not model: a 400 says so
    {"stream", "stream_options", "tools", "tool_choice", "functions", "function_call"}
    | {"logprobs", "top_logprobs", "audio", "modalities", "prediction", "web_search_options"}
)
REASONING_ONLY = frozenset({"reasoning_effort", "verbosity"})  # o-series and gpt-5 only
NAME_PATTERN = re.compile(r"[a-zA-Z0-9_-]{1,64}")


def complete(fields: dict[str, Any], created: int) -> dict[str, Any]:
    """The ``chat.completion`` for a request body; ``OpenAIError`` as the API refuses it."""
    fields = {key: value for key, value in fields.items() if value is not None}
    model = _model(fields)
    if unknown := next((k for k in fields if k not in SUPPORTED | NOT_FAKED), None):
        if unknown in REASONING_ONLY:
            message = f"Unsupported parameter: '{unknown}' is not supported with this model."
            raise OpenAIError(message, unknown, "unsupported_parameter")
        raise OpenAIError(f"Unrecognized request argument supplied: {unknown}")
    if faked := next((k for k in fields if k in NOT_FAKED and fields[k] not in (False, [])), None):
        raise OpenAIError(f"This fake does not implement '{faked}'.", faked, "unsupported_value")
    conversation = read_messages(fields.get("messages"))
    n = int(_number(fields, "n", 1, 1, 128, integer=True))
    for name, low, high in (("temperature", 0, 2), ("top_p", 0, 1)):
        _number(fields, name, 1, low, high)
    for name in ("presence_penalty", "frequency_penalty"):
        _number(fields, name, 0, -2, 2)
    seed = _number(fields, "seed", 0, -(2**63), 2**63 - 1, integer=True)
    limit = _max_tokens(fields, model)
    schema, structured = _response_format(fields.get("response_format"), conversation)
    stops = _stops(fields.get("stop"))

    words = Words(" ".join(conversation.user_text))
    refused = any(BLOCKED_WORD.search(text) for text in conversation.user_text)
    choices, completion_tokens = [], 0
    for index in range(n):
        key = f"{seed}/{index}"
        if refused:
            content: str | None = None if structured else REFUSAL
            refusal = REFUSAL if structured else None
        else:
            content, refusal = _answer(schema, words, key), None
        finish = "stop"
        if content is not None:
            content = _cut_at_stop(content, stops)
            if limit is not None and tokens(content) > limit:
                content, finish = content[: limit * 4], "length"
        completion_tokens += tokens(content or refusal or "")
        said: dict[str, Any] = {
            "role": "assistant",
            "content": content,
            "refusal": refusal,
            "annotations": [],
        }
        choices.append({"index": index, "message": said, "finish_reason": finish, "logprobs": None})

    prompt_tokens = conversation.prompt_tokens
    return {
        "id": f"chatcmpl-{secrets.token_hex(15)[:29]}",  # unique per call, as the API's
        "object": "chat.completion",
        "created": created,
        "model": SNAPSHOTS[model],
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": f"fp_{hashlib.sha256(model.encode()).hexdigest()[:10]}",
    }


def _answer(schema: dict[str, Any] | bool | None, words: Words, key: str) -> str:
    if schema is None:
        return words.sentence(key)
    if schema is True:  # json_object: some JSON object
        return json.dumps({"answer": words.sentence(key)}, ensure_ascii=False)
    document = instance(schema, words, key) if isinstance(schema, dict) else {}
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def _model(fields: dict[str, Any]) -> str:
    name = fields.get("model")
    if name is None:
        raise missing("model")
    if not isinstance(name, str):
        raise invalid_type("model", "a string", name)
    if name in SNAPSHOTS:
        return name
    if name in IMAGE_MODELS:
        message = (
            "This is not a chat model and thus not supported in the v1/chat/completions "
            "endpoint. Did you mean to use v1/completions?"
        )
        raise OpenAIError(message, "model", status=404)
    message = f"The model `{name}` does not exist or you do not have access to it."
    raise OpenAIError(message, None, "model_not_found", status=404)


def _response_format(
    response_format: Any, conversation: Conversation
) -> tuple[dict[str, Any] | bool | None, bool]:
    """The answer's schema (``None``: text, ``True``: any JSON object) and whether it is
    a structured output."""
    if response_format is None:
        return None, False
    if not isinstance(response_format, dict):
        raise invalid_type("response_format", "an object", response_format)
    kind = response_format.get("type")
    one_of("response_format.type", kind, ("json_schema", "json_object", "text"))
    if kind == "text":
        return None, False
    if kind == "json_object":
        if not any("json" in text.lower() for text in conversation.all_text):
            message = (
                "'messages' must contain the word 'json' in some form, to use "
                "'response_format' of type 'json_object'."
            )
            raise OpenAIError(message, "messages")
        return True, False
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict):
        raise missing("response_format.json_schema")
    name = spec.get("name")
    if name is None:
        raise missing("response_format.json_schema.name")
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        message = (
            "Invalid 'response_format.json_schema.name': string does not match pattern. "
            "Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'."
        )
        raise OpenAIError(message, "response_format.json_schema.name", "invalid_value")
    schema = spec.get("schema", {})
    if not isinstance(schema, dict):
        raise invalid_type("response_format.json_schema.schema", "an object", schema)
    if spec.get("strict") and (problem := strict_problem(schema)):
        message = f"Invalid schema for response_format '{name}': {problem}"
        raise OpenAIError(message, "response_format")
    try:
        instance(schema, Words(""))  # a schema the fake cannot fill is the API's 400 too
    except SchemaProblem as exc:
        message = f"Invalid schema for response_format '{name}': {exc}."
        raise OpenAIError(message, "response_format") from None
    return schema, True


def strict_problem(schema: dict[str, Any]) -> str | None:
    """Why ``schema`` breaks strict mode's rules, in the API's words; ``None`` if it
    does not. The root must be an object; every object must set ``additionalProperties:
    false`` and list every property in ``required``."""
    if schema.get("type") != "object":
        got = schema.get("type")
        return f"schema must be a JSON Schema of 'type: \"object\"', got 'type: \"{got}\"'."
    return _strict_walk(schema, ())


def _strict_walk(schema: Any, context: tuple[str, ...]) -> str | None:
    if isinstance(schema, list):
        for i, sub in enumerate(schema):
            if problem := _strict_walk(sub, (*context, str(i))):
                return problem
        return None
    if not isinstance(schema, dict):
        return None
    kinds = schema.get("type")
    is_object = kinds == "object" or (isinstance(kinds, list) and "object" in kinds)
    if is_object or "properties" in schema:
        if schema.get("additionalProperties") is not False:
            return (
                f"In context={context!r}, 'additionalProperties' is required to be supplied "
                "and to be false."
            )
        properties = list(schema.get("properties") or {})
        required = schema.get("required")
        missing = [p for p in properties if not isinstance(required, list) or p not in required]
        if missing:
            return (
                f"In context={context!r}, 'required' is required to be supplied and to be an "
                f"array including every key in properties. Missing '{missing[0]}'."
            )
    for keyword in ("properties", "$defs", "definitions"):
        for name, sub in (schema.get(keyword) or {}).items():
            if problem := _strict_walk(sub, (*context, keyword, name)):
                return problem
    for keyword in ("items", "anyOf", "allOf"):
        if keyword in schema and (problem := _strict_walk(schema[keyword], (*context, keyword))):
            return problem
    return None


def _max_tokens(fields: dict[str, Any], model: str) -> int | None:
    name = "max_completion_tokens" if "max_completion_tokens" in fields else "max_tokens"
    if name not in fields:
        return None
    value = _number(fields, name, 0, 1, 2**31, integer=True)
    most = MAX_COMPLETION_TOKENS[model]
    if value > most:
        message = (
            f"max_tokens is too large: {value}. This model supports at most {most} "
            f"completion tokens, whereas you provided {value}."
        )
        raise OpenAIError(message, name, "invalid_value")
    return int(value)


def _stops(stop: Any) -> list[str]:
    stops = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    if len(stops) > 4:
        message = (
            "Invalid 'stop': array too long. Expected an array with maximum length 4, "
            f"but got an array with length {len(stops)} instead."
        )
        raise OpenAIError(message, "stop", "array_above_max_length")
    return [s for s in stops if isinstance(s, str) and s]


def _cut_at_stop(content: str, stops: list[str]) -> str:
    cuts = [content.find(stop) for stop in stops if stop in content]
    return content[: min(cuts)] if cuts else content


def _number(
    fields: dict[str, Any],
    name: str,
    default: float,
    low: float,
    high: float,
    *,
    integer: bool = False,
) -> float:
    value = fields.get(name, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (integer and not isinstance(value, int))
    ):
        raise invalid_type(name, "an integer" if integer else "a number", value)
    kind = "integer" if integer else "decimal"
    for bad, word, code, bound in (
        (value < low, "below minimum", f"{kind}_below_min_value", f">= {low:g}"),
        (value > high, "above maximum", f"{kind}_above_max_value", f"<= {high:g}"),
    ):
        if bad:
            message = (
                f"Invalid '{name}': {kind} {word} value. Expected a value {bound}, "
                f"but got {value:g} instead."
            )
            raise OpenAIError(message, name, code)
    return value
