"""Identifiers: prefixed, URL-safe, time-sortable ULIDs."""

from __future__ import annotations

import re
import time

from imagemill.ids import new_id

ULID_RE = re.compile(r"^[a-z]+_[0-9a-hjkmnp-tv-z]{26}$")


def test_an_id_has_its_prefix_and_a_ulid_body() -> None:
    job_id = new_id("job")
    assert ULID_RE.match(job_id), job_id
    assert job_id.startswith("job_")
    assert len(job_id) == 30
    assert new_id("ast").startswith("ast_")


def test_the_body_encodes_the_creation_time() -> None:
    before = int(time.time() * 1000)
    body = new_id("x")[2:]
    after = int(time.time() * 1000)
    alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
    value = 0
    for char in body:
        value = value * 32 + alphabet.index(char)
    assert before <= value >> 80 <= after


def test_ids_sort_by_creation_time() -> None:
    ids = []
    for _ in range(5):
        ids.append(new_id("job"))
        time.sleep(0.002)
    assert sorted(ids) == ids


def test_ids_are_unique() -> None:
    ids = {new_id("job") for _ in range(20_000)}
    assert len(ids) == 20_000


def test_ids_made_within_one_millisecond_still_sort_in_creation_order() -> None:
    """Cursor paging and group order rely on it: a ULID must be monotonic within a millisecond."""
    ids = [new_id("job") for _ in range(50)]
    assert sorted(ids) == ids
