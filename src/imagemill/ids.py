"""Identifiers: time-sortable, URL-safe, prefixed by kind (``job_…``, ``ast_…``).

The layout is a ULID (48-bit millisecond timestamp + 80 random bits, Crockford
base32), so ids sort by creation time and cursor paging can page on the id alone.
"""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def new_id(prefix: str) -> str:
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        value, digit = divmod(value, 32)
        chars.append(_ALPHABET[digit])
    return f"{prefix}_{''.join(reversed(chars))}"
