"""The boundary's rules: text every store and transport carries, I-JSON, and the limits
of free-form values. Each failing case is one that once got in and then broke something."""

from __future__ import annotations

import json

import pytest

from imagemill.boundary import (
    METADATA_LIMITS,
    BoundaryError,
    JsonLimits,
    check_text,
    loads,
    quoted,
    storable_json,
    storable_text,
    text_problem,
)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("cut \ud83d", "surrogate"),  # JavaScript cutting a string inside an emoji
        ("\ude00 tail", "surrogate"),
        ("nul\x00inside", "NUL"),
    ],
)
def test_text_that_cannot_be_stored_everywhere_is_named(text: str, says: str) -> None:
    problem = text_problem(text)
    assert problem is not None and says in problem
    with pytest.raises(BoundaryError):
        check_text(text)


@pytest.mark.parametrize(
    "text", ["", "a café — 夜", "emoji 😀 whole", "tab\tand\nnewline", "\u200b", "\ufffe"]
)
def test_ordinary_text_passes(text: str) -> None:
    assert check_text(text) == text
    text.encode("utf-8")  # and it is what every store can take


def test_storable_text_replaces_what_cannot_be_stored() -> None:
    assert storable_text("cut \ud83d and nul\x00") == "cut \ufffd and nul"
    assert storable_text("x" * 10, max_chars=5) == "xxxx…"
    storable_text("cut \ud83d").encode("utf-8")


def test_storable_json_fixes_keys_and_nested_values() -> None:
    fixed = storable_json({"k\ud83d": ["v\x00", {"deep": "\udc00"}], "n": 1})
    assert fixed == {"k\ufffd": ["v", {"deep": "\ufffd"}], "n": 1}
    json.dumps(fixed, ensure_ascii=False).encode("utf-8")


@pytest.mark.parametrize(
    ("body", "path", "says"),
    [
        (b'{"metadata": {"note": "cut \\ud83d"}}', ("metadata", "note"), "surrogate"),
        (b'{"a": ["ok", "nul \\u0000"]}', ("a", 1), "NUL"),
        (b'{"bad\\udfff key": 1}', ("bad\udfff key",), "surrogate"),
        (b'{"n": NaN}', ("n",), "NaN"),
        (b'{"x": {"y": -Infinity}}', ("x", "y"), "Infinity"),
        (b'{"big": 9007199254740993}', ("big",), "2**53"),
        (b'{"big": [1e300]}', ("big", 0), "2**53"),
        (b'{"n": 1, "n": 2}', (), "more than once"),
        (b'{"m": {"k": 1, "k": 1}}', ("m",), "more than once"),
    ],
)
def test_json_outside_i_json_is_refused_with_its_path(
    body: bytes, path: tuple[str | int, ...], says: str
) -> None:
    with pytest.raises(BoundaryError) as raised:
        loads(body)
    assert raised.value.path == path
    assert says in raised.value.message


@pytest.mark.parametrize(
    ("body", "says"),
    [(b'{"a": ', "not valid JSON"), (b"\xff\xfe\x00", "not"), (b"[" + b"9" * 5000 + b"]", "long")],
)
def test_a_body_that_is_not_json_says_so(body: bytes, says: str) -> None:
    with pytest.raises(BoundaryError) as raised:
        loads(body)
    assert says in raised.value.message


def test_i_json_passes_unchanged() -> None:
    body = '{"a": [1, 2.5, -9007199254740991, true, null, "😀"], "b": {"c": "d"}}'
    assert loads(body.encode()) == json.loads(body)


def test_limits_of_a_free_form_object() -> None:
    limits = JsonLimits(max_bytes=100, max_depth=3)
    assert limits.check({"a": {"b": {"c": 1}}}) == {"a": {"b": {"c": 1}}}
    with pytest.raises(BoundaryError, match="nested 4 levels deep; the limit is 3"):
        limits.check({"a": {"b": {"c": {"d": 1}}}})
    with pytest.raises(BoundaryError, match="bytes as JSON; the limit is 100 bytes"):
        limits.check({"a": "x" * 200})
    with pytest.raises(BoundaryError) as raised:
        limits.check({"a": ["cut \ud83d"]})
    assert raised.value.path == ("a", 0)


def test_metadata_limits_are_16_kib_and_10_levels() -> None:
    METADATA_LIMITS.check({"note": "x" * 16_000})
    with pytest.raises(BoundaryError):
        METADATA_LIMITS.check({"note": "x" * 17_000})
    nested: dict[str, object] = {}
    inner = nested
    for _ in range(10):
        inner["k"] = {}
        inner = inner["k"]  # type: ignore[assignment]
    with pytest.raises(BoundaryError, match="deep"):
        METADATA_LIMITS.check(nested)


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"\xef\xbb\xbf{}", "byte order mark"),
        ('{"a": 1}'.encode("utf-16"), "not UTF-8"),
        ('{"a": 1}'.encode("utf-16-le"), "not valid JSON"),  # NUL bytes: UTF-8, not JSON
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
def test_only_utf8_json_without_a_bom_is_read_and_depth_never_crashes(
    raw: bytes, says: str
) -> None:
    with pytest.raises(BoundaryError) as refused:
        loads(raw)
    assert says in refused.value.message


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain", "'plain'"),
        ("it's \\ fine", "'it's \\ fine'"),  # quotes and backslashes as they are
        ("a\x00b\ud83d\n", "'a\\u0000b\\ud83d\\u000a'"),  # never raw, never dropped
        ("x" * 500, "'" + "x" * 99 + "…'"),
    ],
)
def test_quoted_shows_a_value_as_a_person_reads_it(text: str, shown: str) -> None:
    assert quoted(text) == shown
    check_text(quoted(text))  # and it can be stored and sent
