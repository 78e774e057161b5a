"""The OpenAPI document at ``/openapi.json``: what the server does, stated exactly.

FastAPI writes most of it from the routes; this module states what the routes alone do
not, so that a client (or schemathesis, which the test suite runs against it) can rely
on every word:

- every answer an operation gives: 401 without a key, 404 for what is not found, 413 for
  a body too large, 422 (400 on the OpenAI-compatible endpoints) for bad input, in the
  error shape the endpoint really uses; server-sent events as events;
- the boundary's rules (``imagemill.boundary``): no text holds NUL, free-form values are
  I-JSON (integers within ±(2**53 - 1));
- how the fields of a job request depend on each other (a model or a group of models;
  an image needs a prompt and takes no input images; events need a URL);
- what the models are: ``model``, ``models`` and ``fallback`` name the models this
  server has available now, and what each takes (its kinds, how many images, its sizes,
  its prompt length and its params' JSON Schema) is stated per model.

What no schema can state is the server's data: whether an asset or preset of that id
exists and what it holds, and what a webhook host resolves to. A request naming those
can still be refused, naming the field.

The document is made again whenever the available models change (a local model folder
appears, a provider's schemas arrive).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from imagemill.api.patterns import size_pattern
from imagemill.api.routes.openai_compat import NO_REQUEST, OPENAI_OPTIONS
from imagemill.boundary import BLANK, MAX_SAFE_INTEGER
from imagemill.domain import ENHANCEABLE, EVENT_TYPES, TaskKind
from imagemill.fields import (
    MAX_SIDE,
    MIN_SIDE,
)
from imagemill.providers.registry import Registry
from imagemill.specs import ModelSpec

Schema = dict[str, Any]
NO_NUL = "^[^\\x00]*$"
# A negative prompt for a model that takes none: left out, or blank.
NO_NEGATIVE_PROMPT: Schema = {"anyOf": [{"type": "null"}, {"pattern": f"^[{BLANK}]*$"}]}
# Text with words in it (something not blank) and no NUL, as one pattern.
WORDS_WITHOUT_NUL = f"^[^\\x00]*[^\\x00{BLANK}][^\\x00]*$"
ERROR_REF = {"$ref": "#/components/schemas/ErrorOut"}
OPENAI_ERROR_REF = {"$ref": "#/components/schemas/OpenAIErrorOut"}
JSON_VALUE_REF = {"$ref": "#/components/schemas/JsonValue"}
PUBLIC = ("/healthz", "/readyz", "/v1/providers/")  # no key needed
OPENAI_COMPATIBLE = "/v1/images/"
JSON_VALUE: Schema = {
    "description": "Any JSON value, as I-JSON: numbers within ±(2**53 - 1), text without NUL.",
    "anyOf": [
        {"type": "string", "pattern": NO_NUL},
        {"type": "number", "minimum": -MAX_SAFE_INTEGER, "maximum": MAX_SAFE_INTEGER},
        {"type": "boolean"},
        {"type": "null"},
        {"type": "array", "items": JSON_VALUE_REF},
        {
            "type": "object",
            "additionalProperties": JSON_VALUE_REF,
            "propertyNames": {"pattern": NO_NUL},
        },
    ],
}
SSE_EVENT: Schema = {
    "type": "object",
    "description": "One server-sent event: `id` (its position), `event` (its type) and "
    "`data`, the event as JSON.",
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$"},
        "event": {"enum": list(EVENT_TYPES)},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {
                "type": "object",
                "required": ["id", "job_id", "seq", "type", "data", "created_at"],
                "properties": {
                    "id": {"type": "integer"},
                    "job_id": {"type": "string"},
                    "seq": {"type": "integer"},
                    "type": {"enum": list(EVENT_TYPES)},
                    "data": {"type": ["object", "null"]},
                    "created_at": {"type": "string", "format": "date-time"},
                },
            },
        },
        "retry": {"type": "integer", "minimum": 0},
    },
}


def install(app: FastAPI, registry: Callable[[], Registry | None]) -> None:
    """Serve ``app``'s OpenAPI document as this module states it. ``registry`` gives the
    running server's models (``None`` before it has started)."""
    made: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        models = registry()
        specs = models.models() if models else []
        key = repr([(s.id, s.available, s.aliases, s.kinds, s.params_schema) for s in specs])
        if made.get("key") != key:
            document = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
            state(document, specs)
            made.update(key=key, document=document)
        app.openapi_schema = made["document"]
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def state(document: Schema, specs: list[ModelSpec]) -> None:
    """Add to FastAPI's ``document`` what it cannot know (see the module docstring)."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["JsonValue"] = copy.deepcopy(JSON_VALUE)
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            _every_answer(path, operation)
            for parameter in operation.get("parameters", []):
                parameter["schema"] = _never_null(parameter.get("schema", {}))
                _without_nul(parameter["schema"])
            _without_nul(operation.get("requestBody", {}).get("content", {}))
            _closed_form(operation, schemas)
    for name, schema in schemas.items():
        if name != "JsonValue":
            _without_nul(schema)
    for name in ("Submission", "PresetIn", "PresetPatch", "FallbackModel", "BatchIn"):
        if name in schemas:
            _free_form(schemas[name])
    if "PresetPatch" in schemas:  # left out keeps a field; null is refused
        for name in ("name", "description", "prompt_template", "params"):
            field = schemas["PresetPatch"]["properties"].get(name, {})
            field["anyOf"] = [c for c in field.get("anyOf", []) if c.get("type") != "null"]
    for prompt in _openai_prompts(document):
        prompt["pattern"] = WORDS_WITHOUT_NUL
    if "Submission" in schemas:
        _job_request_rules(schemas["Submission"])
    available = [spec for spec in specs if spec.available]
    if available:
        _the_models(document, available, specs)


# -- answers ----------------------------------------------------------------------------------


def _every_answer(path: str, operation: Schema) -> None:
    responses: Schema = operation.setdefault("responses", {})
    compatible = path.startswith(OPENAI_COMPATIBLE)
    error = OPENAI_ERROR_REF if compatible else ERROR_REF
    body = operation.get("requestBody", {}).get("content", {})
    multipart = "multipart/form-data" in body

    def answer(status: str, description: str) -> None:
        responses.setdefault(status, {"description": description})
        responses[status]["content"] = {"application/json": {"schema": error}}

    if not path.startswith(PUBLIC):
        answer("401", "No valid API key (send `Authorization: Bearer <key>`).")
    if "{" in path:
        answer("404", "Not found (or not yours).")
    if operation.get("parameters") or body:
        answer("400" if compatible else "422", "Bad input; the error names the field.")
    if multipart:  # a form that cannot be read at all
        answer("400", "The form is not multipart data that can be read.")
    if body:
        answer("413", "The body is too large.")
    if "application/json" in body:
        answer("415", "The body is not sent as JSON (`Content-Type: application/json`).")
    if compatible:
        responses.pop("422", None)  # OpenAI's way: bad input is a 400
    if any(p.get("name", "").lower() == "if-none-match" for p in operation.get("parameters", [])):
        responses.setdefault("304", {"description": "Not modified: the ETag matched."})
    for described in responses.values():
        content = described.get("content", {})
        if "text/event-stream" in content:
            content["text/event-stream"] = {"itemSchema": copy.deepcopy(SSE_EVENT)}


def _closed_form(operation: Schema, schemas: Schema) -> None:
    """A form takes its own fields only: another is refused, not dropped."""
    content = operation.get("requestBody", {}).get("content", {})
    ref = content.get("multipart/form-data", {}).get("schema", {}).get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        schemas[ref.rsplit("/", 1)[1]]["additionalProperties"] = False


# -- the boundary's rules ---------------------------------------------------------------------


def _never_null(schema: Schema) -> Schema:
    """A parameter's schema without ``null``: a parameter is given or not, never null
    (FastAPI writes ``str | None = None`` as "string or null")."""
    choices = schema.get("anyOf")
    if not choices:
        return schema
    kept = [choice for choice in choices if choice.get("type") != "null"]
    if len(kept) == 1:
        return {**{k: v for k, v in schema.items() if k != "anyOf"}, **kept[0]}
    return {**schema, "anyOf": kept}


def _without_nul(schema: Any) -> None:
    """Every string ``schema`` allows, stated without NUL (which the server refuses)."""
    for node in list(_nodes(schema)):
        types = node.get("type")
        is_string = types == "string" or (isinstance(types, list) and "string" in types)
        if not is_string or any(k in node for k in ("enum", "const", "contentMediaType")):
            continue
        if node.get("format") in ("binary", "date", "date-time"):
            continue
        if "pattern" not in node:
            node["pattern"] = NO_NUL
        elif node["pattern"] != NO_NUL:  # its own pattern, and this one
            node["allOf"] = [*node.get("allOf", []), {"pattern": NO_NUL}]


def _nodes(schema: Any) -> Iterator[Schema]:
    """Every schema object inside ``schema`` (not following ``$ref``)."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _free_form(schema: Schema) -> None:
    """``metadata`` and ``params``: any JSON object, as I-JSON."""
    for name in ("metadata", "params"):
        field = schema.get("properties", {}).get(name)
        if field is None:
            continue
        for node in (field, *field.get("anyOf", [])):
            if node.get("type") == "object":
                node["additionalProperties"] = JSON_VALUE_REF
                node["propertyNames"] = {"pattern": NO_NUL}


def _job_request_rules(submission: Schema) -> None:
    """How the fields of ``POST /v1/jobs`` depend on each other."""
    string, array = {"type": "string"}, {"type": "array"}

    def given(**fields: Schema) -> Schema:
        return {"properties": fields, "required": list(fields)}

    rules = [
        # A model, or several; neither only when a preset names one.
        {"anyOf": [given(model=string), given(models=array), given(preset=string)]},
        {"not": given(model=string, models=array)},
        # (An exact size or a shape, not both, is stated in aspect_ratio's description only:
        # as one more rule here, it takes schemathesis' generator past what it can read.)
        # An upscale keeps its image's shape.
        {
            "if": {"properties": {"kind": {"const": TaskKind.UPSCALE.value}}, "required": ["kind"]},
            "then": {"properties": {"aspect_ratio": {"type": "null"}}},
        },
        # Which events to send needs where to send them.
        {"if": given(webhook_events=array), "then": given(webhook_url=string)},
        # What each kind takes (a prompt, input images, a mask, a size) is stated with
        # each model's kinds, in the variants of ``_job_request_models``.
    ]
    submission["allOf"] = submission.get("allOf", []) + rules


def _openai_prompts(document: Schema) -> Iterator[Schema]:
    """The ``prompt`` of each OpenAI-compatible body: it needs words in it."""
    schemas = document.get("components", {}).get("schemas", {})
    if "OpenAIImageRequest" in schemas:
        yield schemas["OpenAIImageRequest"]["properties"]["prompt"]
    edits = document.get("paths", {}).get("/v1/images/edits", {}).get("post")
    if edits is not None:
        form = edits["requestBody"]["content"]["multipart/form-data"]["schema"]
        yield form["properties"]["prompt"]


# -- the models -------------------------------------------------------------------------------


def _names(spec: ModelSpec) -> list[str]:
    return sorted({spec.id, *spec.aliases})


def _the_models(document: Schema, available: list[ModelSpec], every: list[ModelSpec]) -> None:
    schemas = document["components"]["schemas"]
    ids = sorted({name for spec in available for name in _names(spec)})
    if "Submission" in schemas:
        _job_request_models(schemas["Submission"], available, ids)
    for preset in ("PresetIn", "PresetPatch"):
        if preset in schemas:  # a preset may name a model whose key is not set (yet)
            known = sorted({name for spec in every for name in _names(spec)})
            _preset_models(schemas[preset], every, known)
    if "OpenAIImageRequest" in schemas:
        makers = [spec for spec in available if TaskKind.IMAGE in spec.kinds]
        _openai_models(schemas["OpenAIImageRequest"], makers, "placeholder", TaskKind.IMAGE)
    edits = document.get("paths", {}).get("/v1/images/edits", {}).get("post")
    if edits is not None:
        form = edits["requestBody"]["content"]["multipart/form-data"]["schema"]
        editors = [spec for spec in available if TaskKind.EDIT in spec.kinds]
        _openai_models(form, editors, "openai/gpt-image-1", TaskKind.EDIT)


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _job_request_models(submission: Schema, specs: list[ModelSpec], ids: list[str]) -> None:
    properties = submission["properties"]
    properties["model"] = {
        **_nullable({"enum": ids}),
        "description": _described(properties, "model"),
    }
    # A model of a comparison or of a fallback chain: an id, or {model, params} with the
    # params that model takes.
    with_params: Schema = {
        "anyOf": [
            {"enum": ids},
            {
                "type": "object",
                "properties": {"model": {"enum": ids}, "params": _free_object()},
                "required": ["model"],
                "additionalProperties": False,
                "allOf": [
                    {
                        "if": {"properties": {"model": {"enum": names}}},
                        "then": {"properties": {"params": params}},
                    }
                    for names, params in _grouped((_names(s), _params_of(s)) for s in specs)
                ],
            },
        ]
    }
    properties["models"] = {
        **_nullable(
            {
                "type": "array",
                "items": with_params,
                "minItems": 1,
                "maxItems": 8,
                "uniqueItems": True,
            }
        ),
        "description": _described(properties, "models"),
    }
    properties["fallback"] = {
        "type": "array",
        "maxItems": 5,
        "uniqueItems": True,
        "items": with_params,
        "description": _described(properties, "fallback"),
    }
    enhancers = sorted(
        {name for spec in specs if TaskKind.ENHANCE in spec.kinds for name in _names(spec)}
    )
    enhance: Schema = {
        "type": "object",
        "properties": {
            "model": {"enum": enhancers},
            "style": _nullable({"type": "string", "minLength": 1, "maxLength": 300}),
            "params": _free_object(),
        },
        "required": ["model"],
        "additionalProperties": False,
    }
    properties["enhance"] = {
        **(_nullable(enhance) if enhancers else {"type": "null"}),
        "description": _described(properties, "enhance"),
    }
    # One request is for one model, a group of them, or a preset's: one of these, each
    # with what its model takes for its kind (a group must suit every model listed, and
    # a fallback the request: those GET /v1/models states per model, and the server
    # checks). Models that take the same are one variant.
    variants = [(_names(spec), variant) for spec in specs for variant in _for_the_model(spec)]
    one_of_them = [
        {**variant, "properties": {**variant["properties"], "model": {"enum": names}}}
        for names, variant in _grouped(variants)
    ]
    one_of_them.append({"properties": {"models": {"type": "array"}}, "required": ["models"]})
    one_of_them.append(
        {
            "properties": {
                "model": {"type": "null"},
                "models": {"type": "null"},
                "preset": {"type": "string"},
            },
            "required": ["preset"],
        }
    )
    submission["allOf"] = [rule for rule in submission.get("allOf", []) if "anyOf" not in rule] + [
        {"anyOf": one_of_them}
    ]


def _grouped(pairs: Iterable[tuple[list[str], Schema]]) -> list[tuple[list[str], Schema]]:
    """Schemas that are the same, once, each with every name that had it."""
    groups: dict[str, tuple[list[str], Schema]] = {}
    for names, schema in pairs:
        key = json.dumps(schema, sort_keys=True)
        groups.setdefault(key, ([], schema))[0].extend(names)
    return [(sorted(set(names)), schema) for names, schema in groups.values()]


def _for_the_model(spec: ModelSpec) -> list[Schema]:
    """What a request for ``spec`` may hold, one schema per group of its kinds that take
    the same (params, prompt, input images, size): ``model`` is added by the caller."""
    by_kind: dict[str, tuple[list[TaskKind], Schema]] = {}
    for kind in spec.kinds:
        takes = _what_it_takes(spec, kind)
        key = json.dumps(takes, sort_keys=True)
        by_kind.setdefault(key, ([], takes))[0].append(kind)
    variants = []
    for kinds, takes in by_kind.values():
        takes = copy.deepcopy(takes)
        takes["properties"]["kind"] = {"enum": [kind.value for kind in kinds]}
        takes["properties"]["models"] = {"type": "null"}
        required = {*takes.get("required", []), "model"}
        if TaskKind.IMAGE not in kinds:
            required.add("kind")  # left out, the kind is an image
        takes["required"] = sorted(required)
        variants.append(takes)
    return variants


def _what_it_takes(spec: ModelSpec, kind: TaskKind) -> Schema:
    """What a request of ``kind`` for ``spec`` may ask (its ``kind`` and ``model`` aside)."""
    rules = kind.rules
    properties: Schema = {"n": {"maximum": spec.max_n}, "params": _params_of(spec, kind)}
    required: list[str] = []
    limit = spec.limits.max_prompt_chars
    if limit is not None:
        properties["prompt"] = {"maxLength": limit}
        properties["negative_prompt"] = {"anyOf": [{"maxLength": limit}, {"type": "null"}]}
    if not spec.limits.negative_prompt:
        properties["negative_prompt"] = copy.deepcopy(NO_NEGATIVE_PROMPT)
    if rules.prompt == "required":  # words in it
        properties["prompt"] = {**properties.get("prompt", {}), "pattern": WORDS_WITHOUT_NUL}
        required.append("prompt")
    if rules.inputs == "none":
        properties["input_assets"] = {"maxItems": 0}
    else:
        properties["input_assets"] = {"maxItems": max(spec.limits.max_inputs, 0)}
        if rules.inputs == "required":
            properties["input_assets"]["minItems"] = 1
            required.append("input_assets")
    takes: Schema = {"properties": properties}
    if rules.prompt == "optional" and rules.inputs == "optional":  # one or the other
        takes["anyOf"] = [
            {"properties": {"prompt": {"pattern": WORDS_WITHOUT_NUL}}, "required": ["prompt"]},
            {"properties": {"input_assets": {"minItems": 1}}, "required": ["input_assets"]},
        ]
    if kind is not TaskKind.EDIT or not spec.limits.mask:
        properties["mask"] = {"type": "null"}
    if kind not in ENHANCEABLE:
        properties["enhance"] = {"type": "null"}
    sides = spec.sizes
    if not rules.sized:
        properties["size"] = {"type": "null"}
        properties["aspect_ratio"] = {"type": "null"}
    elif (sides.min_side, sides.max_side, sides.multiple_of) != (MIN_SIDE, MAX_SIDE, 1):
        pattern = size_pattern(sides.min_side, sides.max_side, sides.multiple_of)
        properties["size"] = _nullable({"type": "string", "pattern": pattern})
    if required:
        takes["required"] = required
    return takes


def _params_of(spec: ModelSpec, kind: TaskKind | None = None) -> Schema:
    """``spec``'s params (for ``kind`` alone: without those meant for other kinds)."""
    params = copy.deepcopy(spec.params_schema)
    for name, kinds in spec.limits.param_kinds.items():
        if kind is not None and kind not in kinds:
            params.get("properties", {}).pop(name, None)
    _without_nul(params)
    if params.get("additionalProperties", True) is not False and "properties" not in params:
        params.update(_free_object())
    return params


def _free_object() -> Schema:
    return {
        "type": "object",
        "additionalProperties": JSON_VALUE_REF,
        "propertyNames": {"pattern": NO_NUL},
    }


def _described(properties: Schema, name: str) -> str:
    return str(properties.get(name, {}).get("description", ""))


def _preset_models(preset: Schema, specs: list[ModelSpec], ids: list[str]) -> None:
    properties = preset["properties"]
    properties["model"] = {
        **_nullable({"enum": ids}),
        "description": _described(properties, "model"),
    }
    preset["allOf"] = preset.get("allOf", []) + [
        {
            "if": {"properties": {"model": {"enum": _names(spec)}}, "required": ["model"]},
            "then": {"properties": _preset_takes(spec)},
        }
        for spec in specs
    ]


def _preset_takes(spec: ModelSpec) -> Schema:
    takes: Schema = {"params": _nullable(_params_of(spec))}
    if not spec.limits.negative_prompt:
        takes["negative_prompt"] = copy.deepcopy(NO_NEGATIVE_PROMPT)
    return takes


def _openai_models(request: Schema, specs: list[ModelSpec], default: str, kind: TaskKind) -> None:
    """The OpenAI-compatible bodies: which models, and what each takes (its options, its
    sizes, how many images), one of these per model."""
    properties = request["properties"]
    ids = sorted({name for spec in specs for name in _names(spec)})
    properties["model"] = {"enum": ids, "description": f"The model; default: {default}."}
    variants = []
    for spec in specs:
        accepted = spec.params_for(kind)
        takes: Schema = {"model": {"enum": _names(spec)}}
        if "n" in properties:
            takes["n"] = {"maximum": spec.max_n}
        for option in OPENAI_OPTIONS:
            if option not in properties:
                continue
            if option in accepted:
                takes[option] = _nullable(copy.deepcopy(accepted[option]))
            else:  # what the model does not take may only ask for nothing
                takes[option] = _nullable({"enum": sorted(NO_REQUEST.get(option, ()))})
        sides = spec.sizes
        pattern = size_pattern(sides.min_side, sides.max_side, sides.multiple_of)
        takes["size"] = _nullable({"anyOf": [{"const": "auto"}, {"pattern": pattern}]})
        if "prompt" in properties:  # stated again in each variant: generators need it there
            takes["prompt"] = copy.deepcopy(properties["prompt"])
        required = [name for name in request.get("required", []) if name != "model"]
        # The options' rules about each other (they are top-level fields here).
        rules = [
            rule
            for rule in spec.params_schema.get("allOf", [])
            if set(_mentioned(rule)) <= set(properties)
        ]
        among = {"allOf": copy.deepcopy(rules)} if rules else {}
        # The default model's variant also takes a request that names no model.
        needed = required if spec.id == default else [*required, "model"]
        variants.append({"properties": takes, "required": needed, **among})
    if variants:
        request["anyOf"] = variants


def _mentioned(rule: Schema) -> Iterator[str]:
    """The field names a params rule reads or sets."""
    for node in _nodes(rule):
        yield from node.get("properties", {})
        yield from node.get("required", [])
