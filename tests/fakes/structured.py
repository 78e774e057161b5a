"""Structured answers for the text fakes: a JSON document that conforms to a schema, made
from the words of the request, the same for the same request.

Owns ``Words`` (the words of the user's text, and how a fake picks from them),
``instance(schema, words, key)`` (a JSON Schema → a conforming document) and
``from_openapi(schema)`` (Gemini's ``responseSchema``, an OpenAPI 3.0 subset with
upper-case types and int64 limits sent as strings, → the JSON Schema it means). Both the
OpenAI chat fake and the Gemini text fake answer with ``instance``.

How a document is made:

- an object has every property (in ``properties`` order), an array ``minItems`` items
  (without one, ``min(3, maxItems)``), ``enum`` and ``const`` their first value, a
  nullable or ``anyOf`` value its first non-null choice, ``$ref`` what it points at;
- a string is a few words of the user's text, starting near its beginning
  (``minLength``/``maxLength`` honoured, a few ``format``s filled in); one named like
  ``hashtags``, ``tags`` or ``keywords`` (or an item of such an array) is a single
  content word of the text (no stopwords), never repeated within its array, case aside;
- numbers sit inside ``minimum``/``maximum``, booleans are ``true``;
- a recursive schema is ended once deep: fewest items, null where allowed.

A ``pattern`` is not generated for: a string that does not match it becomes a single
word if that matches, else stays as it is.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

FALLBACK_WORDS = ("quiet", "light", "colour", "detail", "scene", "texture")  # no user text
STOPWORD_TEXT = (
    "a an and are as at be but by for from has have in into is it its of on or that the "
    "their this to was were will with without your you each any none use write text "
    "caption captions prompt prompts variant variants different language emojis hashtags "
    "product images attached order give exactly"
)  # and the words of imagemill's own briefs, which no model would make a hashtag of
STOPWORDS = frozenset(STOPWORD_TEXT.split())
SINGLE_WORD_NAMES = re.compile(r"(hashtag|tag|keyword|label)s?$", re.IGNORECASE)
FORMATS = {
    "date-time": "2024-05-01T12:00:00Z",
    "date": "2024-05-01",
    "time": "12:00:00",
    "email": "someone@example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}
DEFAULT_ITEMS = 3
LEAD = 12  # answers start within the text's first words, where its subject usually is
SHALLOW_DEPTH = 12  # deeper than this, a recursive schema is ended: fewest items, nulls
MAX_DEPTH = 40  # a schema that still recurses this deep cannot be satisfied


class SchemaProblem(ValueError):
    """A schema the fake cannot make a document for (a dangling ``$ref``, endless
    recursion); each fake answers it with its API's error."""


class Words:
    """The words of a request's user text, and deterministic picks from them."""

    def __init__(self, text: str) -> None:
        found = re.findall(r"[^\W_][\w'’-]*", text)
        self.words: list[str] = found or list(FALLBACK_WORDS)
        seen: set[str] = set()
        self.content: list[str] = []  # distinct words that could be a hashtag
        for word in self.words:
            bare = re.sub(r"\W", "", word)
            folded = bare.casefold()
            if len(bare) >= 3 and folded not in STOPWORDS and folded not in seen:
                seen.add(folded)
                self.content.append(bare)
        if not self.content:
            self.content = list(FALLBACK_WORDS)

    def phrase(self, key: str, count: int, index: int = 0) -> str:
        """``count`` consecutive words (wrapping round) from a place chosen by ``key``;
        the next ``index`` starts where this one ends."""
        start = _number(key) % min(LEAD, len(self.words)) + index * count
        return " ".join(self.words[(start + i) % len(self.words)] for i in range(count))

    def sentence(self, key: str, most: int = 12) -> str:
        """A short sentence of the text's words."""
        text = self.phrase(key, min(most, max(3, len(self.words))))
        return text[:1].upper() + text[1:] + "."

    def word(self, key: str, index: int) -> str:
        """A content word: distinct for distinct ``index`` under one ``key``."""
        first = _number(key) % min(3, len(self.content))  # the text's first content words
        word = self.content[(first + index) % len(self.content)]
        lap = index // len(self.content)  # past every word once: number them
        return word if lap == 0 else f"{word}{lap + 1}"


def instance(schema: dict[str, Any], words: Words, key: str = "") -> Any:
    """A document that conforms to the JSON Schema ``schema``, made of ``words``; a
    different ``key`` (the choice, the seed) gives a different document."""
    return _Maker(schema, words).make(schema, key, "", 0)


class _Maker:
    def __init__(self, root: dict[str, Any], words: Words) -> None:
        self.root = root
        self.words = words

    def make(self, schema: Any, key: str, name: str, depth: int, index: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise SchemaProblem("the schema recurses without end")
        if not isinstance(schema, dict):
            return self.words.phrase(key, 3)  # ``true`` / missing: anything goes
        schema = self._resolved(schema, depth)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return schema["enum"][0]
        deep = depth > SHALLOW_DEPTH
        for keyword in ("anyOf", "oneOf"):
            if isinstance(schema.get(keyword), list) and schema[keyword]:
                choice = _choice(schema[keyword], prefer_null=deep)
                return self.make(choice, key, name, depth + 1, index)
        kind = _type_of(schema)
        if deep and isinstance(schema.get("type"), list) and "null" in schema["type"]:
            return None
        if kind == "object":
            return {
                prop: self.make(sub, f"{key}/{prop}", prop, depth + 1)
                for prop, sub in (schema.get("properties") or {}).items()
            }
        if kind == "array":
            return self._array(schema, key, name, depth)
        if kind == "string":
            return self._string(schema, key, name, index)
        if kind in ("integer", "number"):
            return _number_in(schema, integer=kind == "integer")
        if kind == "boolean":
            return True
        return None

    def _resolved(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        for part in schema.get("allOf") or []:  # merged shallowly: enough for generation
            schema = {**self._resolved(part, depth + 1), **schema}
        schema = {k: v for k, v in schema.items() if k != "allOf"}
        ref = schema.get("$ref")
        if isinstance(ref, str):
            target = _pointer(self.root, ref)
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            return {**self._resolved(target, depth + 1), **rest}
        return schema

    def _array(self, schema: dict[str, Any], key: str, name: str, depth: int) -> list[Any]:
        least = _int(schema.get("minItems"), 0)
        most = _int(schema.get("maxItems"), None)
        count = least if least > 0 else DEFAULT_ITEMS if most is None else min(DEFAULT_ITEMS, most)
        if depth > SHALLOW_DEPTH:
            count = least
        items = schema.get("items", {})
        made = [self.make(items, f"{key}/{i}", name, depth + 1, i) for i in range(count)]
        return _unique(made) if schema.get("uniqueItems") else made

    def _string(self, schema: dict[str, Any], key: str, name: str, index: int) -> str:
        fmt = schema.get("format")
        if isinstance(fmt, str) and fmt in FORMATS:
            return FORMATS[fmt]
        # Items of one array share a key (their array's) and differ by index, so their
        # words differ: hashtags are distinct words, prompts different runs of words.
        shared = f"{key.rsplit('/', 1)[0]}/{name}"
        if SINGLE_WORD_NAMES.search(name):
            text = self.words.word(shared, index)
        else:
            text = self.words.phrase(shared, 4 + _number(shared) % 5, index)
        least = _int(schema.get("minLength"), 0)
        most = _int(schema.get("maxLength"), None)
        extra = 0
        while len(text) < least:
            extra += 1
            text = f"{text} {self.words.phrase(f'{key}+{extra}', 3)}"
        if most is not None and len(text) > most:
            text = text[:most].rstrip() or text[:most]
        pattern = schema.get("pattern")
        if isinstance(pattern, str) and not _matches(pattern, text):
            single = self.words.word(shared, index)
            text = single if _matches(pattern, single) else text
        return text


def _type_of(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        return kinds[0] if kinds else "null"
    if isinstance(kind, str):
        return kind
    if "properties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return None


def _choice(choices: list[Any], *, prefer_null: bool) -> Any:
    """The first non-null choice (the null one, if any, when ``prefer_null``)."""
    nulls = [c for c in choices if isinstance(c, dict) and c.get("type") == "null"]
    others = [c for c in choices if c not in nulls]
    preferred = (nulls + others) if prefer_null else (others + nulls)
    return preferred[0]


def _pointer(root: dict[str, Any], ref: str) -> dict[str, Any]:
    """The schema a local ``$ref`` (``#/$defs/Name``) points at."""
    if not ref.startswith("#"):
        raise SchemaProblem(f"only local references are supported, not {ref!r}")
    target: Any = root
    for part in [p for p in ref[1:].split("/") if p]:
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(target, dict) or part not in target:
            raise SchemaProblem(f"the reference {ref!r} points at nothing")
        target = target[part]
    if not isinstance(target, dict):
        raise SchemaProblem(f"the reference {ref!r} does not point at a schema")
    return target


def _number_in(schema: dict[str, Any], *, integer: bool) -> int | float:
    value: float = 1 if integer else 0.5
    low, high = schema.get("minimum"), schema.get("maximum")
    if isinstance(schema.get("exclusiveMinimum"), int | float):
        low = schema["exclusiveMinimum"] + (1 if integer else 0.5)
    if isinstance(schema.get("exclusiveMaximum"), int | float):
        high = schema["exclusiveMaximum"] - (1 if integer else 0.5)
    if isinstance(low, int | float) and value < low:
        value = math.ceil(low) if integer else low
    if isinstance(high, int | float) and value > high:
        value = math.floor(high) if integer else high
    step = schema.get("multipleOf")
    if isinstance(step, int | float) and step > 0:
        value = math.ceil(value / step) * step
    return int(value) if integer else float(value)


def _int(value: Any, default: int | None) -> Any:
    """An int64 limit: the JSON Schema's int, or the string Google's APIs send."""
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d+", value):
        return int(value)
    return default


def _matches(pattern: str, text: str) -> bool:
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return True  # a pattern Python cannot read: nothing to check against


def _folded(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else repr(value)


def _unique(values: list[Any]) -> list[Any]:
    seen: set[Any] = set()
    kept = []
    for value in values:
        if _folded(value) not in seen:
            seen.add(_folded(value))
            kept.append(value)
    return kept


def _number(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")


# -- Gemini's responseSchema -----------------------------------------------------------

OPENAPI_TYPES = ("STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL")
OPENAPI_FIELDS = {  # the Schema message's fields: JSON name → proto name
    "type": "type",
    "format": "format",
    "title": "title",
    "description": "description",
    "nullable": "nullable",
    "enum": "enum",
    "maxItems": "max_items",
    "minItems": "min_items",
    "properties": "properties",
    "required": "required",
    "minProperties": "min_properties",
    "maxProperties": "max_properties",
    "minLength": "min_length",
    "maxLength": "max_length",
    "pattern": "pattern",
    "example": "example",
    "anyOf": "any_of",
    "propertyOrdering": "property_ordering",
    "default": "default",
    "items": "items",
    "minimum": "minimum",
    "maximum": "maximum",
}
INT64_FIELDS = ("minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties")
_BY_PROTO_NAME = {proto: json for json, proto in OPENAPI_FIELDS.items()}


class OpenAPIProblem(ValueError):
    """A ``responseSchema`` the API refuses, at ``where`` (the field's path in the schema,
    proto names): ``kind`` is ``"unknown_name"`` (a field the Schema message does not
    have), ``"invalid_value"`` (a value its field's type cannot hold) or ``"invalid"``."""

    def __init__(self, kind: str, where: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.where = where
        self.detail = detail


def _at(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def from_openapi(schema: Any, where: str = "") -> dict[str, Any]:
    """The JSON Schema a Gemini ``responseSchema`` means (camelCase or proto field names).

    Properties come in ``propertyOrdering`` order, else alphabetically, as the API
    writes them.
    """
    if not isinstance(schema, dict):
        raise OpenAPIProblem("invalid_value", where, "a schema must be an object")
    fields: dict[str, Any] = {}
    for name, value in schema.items():
        json_name = name if name in OPENAPI_FIELDS else _BY_PROTO_NAME.get(name)
        if json_name is None:
            raise OpenAPIProblem("unknown_name", where, name)
        fields[json_name] = value
    out: dict[str, Any] = {}
    kind = fields.get("type")
    if kind is not None:
        if kind not in OPENAPI_TYPES:
            raise OpenAPIProblem("invalid_value", _at(where, "type"), json.dumps(kind))
        out["type"] = kind.lower()
        if fields.get("nullable") and kind != "NULL":
            out["type"] = [kind.lower(), "null"]
    for name in ("format", "title", "description", "pattern", "default", "minimum", "maximum"):
        if name in fields:
            out[name] = fields[name]
    if "enum" in fields:
        out["enum"] = list(fields["enum"]) + ([None] if fields.get("nullable") else [])
    for name in INT64_FIELDS:
        if name in fields:
            number = _int(fields[name], None)
            if number is None:
                problem = f"(TYPE_INT64), {json.dumps(fields[name])}"
                raise OpenAPIProblem("invalid_value", _at(where, OPENAPI_FIELDS[name]), problem)
            out[name] = number
    if "required" in fields:
        out["required"] = list(fields["required"])
    if "items" in fields:
        out["items"] = from_openapi(fields["items"], _at(where, "items"))
    if "anyOf" in fields:
        out["anyOf"] = [
            from_openapi(sub, _at(where, f"any_of[{i}]")) for i, sub in enumerate(fields["anyOf"])
        ]
    properties = fields.get("properties")
    if kind == "OBJECT" and not properties:
        problem = "should be non-empty for OBJECT type"
        raise OpenAPIProblem("invalid", _at(where, "properties"), problem)
    if properties:
        order = list(fields.get("propertyOrdering") or sorted(properties))
        order += [name for name in properties if name not in order]
        out["properties"] = {
            name: from_openapi(properties[name], _at(where, f"properties[{name}]"))
            for name in order
            if name in properties
        }
    return out
