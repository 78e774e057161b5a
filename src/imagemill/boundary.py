"""What a value must be to cross imagemill's boundary, checked once, at ingest.

Everything a client sends is stored, then sent out again: as JSON over HTTP and server-sent
events, in signed webhook bodies, in a PNG's text chunk, and in PostgreSQL or SQLite. A
value only belongs inside if every one of those can carry it, so every JSON body, query
parameter and form field is held to I-JSON (RFC 7493), the profile of JSON meant for
exactly that, plus PostgreSQL's own rule:

- text is whole Unicode characters: no lone UTF-16 surrogates (what JavaScript leaves
  when it cuts a string inside an emoji, and which UTF-8 cannot encode); and no NUL,
  which PostgreSQL refuses in text;
- numbers are finite and within ±(2**53 - 1), where every JSON reader holds an integer
  exactly;
- an object names each key once.

Free-form values (``metadata``, ``params``) also have size and depth limits
(``JsonLimits``). Text that imagemill did not take from a client (a provider's revised
prompt or error message) is made storable with ``storable_text`` instead of refused.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# NUL, and lone surrogates (a valid pair never survives decoding as two code points).
_BAD_CHARACTERS = re.compile("[\x00\ud800-\udfff]")
MAX_SAFE_INTEGER = 2**53 - 1
# Blank text is made of these only: what JSON Schema's regular expressions (ECMA-262) call
# white space, so "has words" means the same to the server and to its published schema.
BLANK = "\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
NOT_BLANK_PATTERN = f"[^{BLANK}]"
_WORD = re.compile(NOT_BLANK_PATTERN)


class BoundaryError(ValueError):
    """A value that cannot cross the boundary; ``path`` locates it inside the value
    (keys and list indexes), for the error's ``field``."""

    def __init__(self, message: str, path: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def field(self, *prefix: str | int) -> str:
        """The dotted field name: ``prefix`` (where the value sits) and then ``path``, with
        any character that could not be sent back written as an escape (``\\u0000``)."""
        return ".".join(escaped(str(part)) for part in (*prefix, *self.path))


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored and sent everywhere, in plain words; ``None`` if it can."""
    found = _BAD_CHARACTERS.search(text)
    if found is None:
        return None
    character = found.group()
    where = f"at position {found.start()}"
    if character == "\x00":
        return f"contains a NUL character (U+0000) {where}, which cannot be stored"
    return (
        f"contains half of a UTF-16 surrogate pair (U+{ord(character):04X}) {where}, as left "
        "when text is cut inside an emoji; send whole characters"
    )


def has_words(text: str) -> bool:
    """Whether ``text`` holds anything but white space."""
    return _WORD.search(text) is not None


def escaped(text: str) -> str:
    """``text`` with each character that cannot be stored written as a JSON-style escape."""
    return _BAD_CHARACTERS.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def quoted(text: str, max_chars: int = 100) -> str:
    """``text`` in single quotes, for a message a person reads: cut to ``max_chars``, and
    each control character or one that cannot be stored written as an escape
    (``'a\\u0000b'``), never as Python writes a repr."""
    if len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    return "'" + _UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "'"


def check_text(text: str) -> str:
    """``text`` if it can be stored and sent everywhere; else ``BoundaryError``."""
    problem = text_problem(text)
    if problem:
        raise BoundaryError(problem)
    return text


def storable_text(text: str, max_chars: int | None = None) -> str:
    """``text`` made storable: each bad character replaced by U+FFFD (NUL dropped), and
    cut to ``max_chars``. For text imagemill records but did not get from its caller."""
    if _BAD_CHARACTERS.search(text):
        text = _BAD_CHARACTERS.sub(lambda m: "" if m.group() == "\x00" else "\ufffd", text)
    if max_chars is not None and len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    return text


def storable_json(value: Any) -> Any:
    """``value`` (parsed JSON) with every string made storable (``storable_text``)."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable_text(k): storable_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable_json(item) for item in value]
    return value


def loads(data: bytes | str) -> Any:
    """Parse a JSON document held to I-JSON; ``BoundaryError`` (with the path) if it is not
    valid JSON or breaks a rule (``NaN``, ``Infinity`` and repeated keys included)."""
    if isinstance(data, bytes):  # I-JSON: UTF-8 only (``json`` would also take UTF-16/32)
        try:
            data = data.decode()
        except UnicodeDecodeError as exc:
            raise BoundaryError("the body is not UTF-8 text") from exc
    if data.startswith("\ufeff"):
        raise BoundaryError("the body starts with a byte order mark; send UTF-8 without one")
    try:
        value = json.loads(data, object_pairs_hook=_object)
    except RecursionError as exc:  # the parser recurses per level: deeper than it can go
        raise BoundaryError("the body is nested too deeply to read") from exc
    except json.JSONDecodeError as exc:
        raise BoundaryError(
            f"the body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from exc
    except ValueError as exc:  # an integer of thousands of digits
        raise BoundaryError("the body holds a number too long to read") from exc
    check_json(value)
    return value


class _RepeatedKey(dict[str, Any]):
    """A parsed object that named ``key`` more than once (reported, with its path, by
    ``check_json``)."""

    key: str = ""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) == len(pairs):
        return result
    repeated = _RepeatedKey(result)
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            repeated.key = key
            break
        seen.add(key)
    return repeated


def check_json(value: Any) -> None:
    """Raise ``BoundaryError`` (with the path) unless every string and number in ``value``
    (parsed JSON) can be stored and sent everywhere."""
    for path, item in _walk(value, ()):
        problem = _problem(item)
        if problem:
            raise BoundaryError(problem, path)


def _walk(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """Every key and leaf of ``value`` with its path (iteratively: depth costs no stack)."""
    stack = [(path, value)]
    while stack:
        here, item = stack.pop()
        if isinstance(item, _RepeatedKey):
            yield here, item
        elif isinstance(item, dict):
            for key, child in item.items():
                yield (*here, key), key
                stack.append(((*here, key), child))
        elif isinstance(item, list):
            stack.extend(((*here, index), child) for index, child in enumerate(item))
        else:
            yield here, item


def _problem(item: Any) -> str | None:
    if isinstance(item, _RepeatedKey):
        return f"names the key {quoted(item.key)} more than once"
    if isinstance(item, str):
        return text_problem(item)
    if isinstance(item, bool) or item is None:
        return None
    if isinstance(item, float) and not math.isfinite(item):
        name = "NaN" if math.isnan(item) else "Infinity" if item > 0 else "-Infinity"
        return f"is {name}, not a finite number"
    if isinstance(item, int | float):
        if abs(item) > MAX_SAFE_INTEGER:
            return (
                f"is {item}, outside ±{MAX_SAFE_INTEGER} (2**53 - 1), beyond which JSON "
                "readers lose precision; send it as a string"
            )
        return None
    return f"{type(item).__name__} is not a JSON value"


@dataclass(frozen=True, slots=True)
class JsonLimits:
    """Bounds of a free-form JSON object: its size as compact UTF-8 JSON, and its depth."""

    max_bytes: int
    max_depth: int

    def check(self, value: dict[str, Any]) -> dict[str, Any]:
        """``value`` if it is within the limits and storable; else ``BoundaryError``."""
        check_json(value)
        depth = _depth(value)
        if depth > self.max_depth:
            raise BoundaryError(f"is nested {depth} levels deep; the limit is {self.max_depth}")
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
        if size > self.max_bytes:
            raise BoundaryError(
                f"is {size} bytes as JSON; the limit is {self.max_bytes} bytes "
                f"({self.max_bytes // 1024} KiB)"
            )
        return value

    def describe(self) -> str:
        return f"at most {self.max_bytes // 1024} KiB as JSON and {self.max_depth} levels deep"


def _depth(value: Any) -> int:
    """Levels of nesting: 1 for a flat object."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


METADATA_LIMITS = JsonLimits(max_bytes=16 * 1024, max_depth=10)
PARAMS_LIMITS = JsonLimits(max_bytes=32 * 1024, max_depth=10)
