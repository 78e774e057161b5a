"""Identifiers: time-sortable, URL-safe, prefixed by kind (``job_…``, ``ast_…``).

The layout is a ULID (48-bit millisecond timestamp + 80 random bits, Crockford
base32), so ids sort by creation time and cursor paging can page on the id alone.
Within one millisecond the random part is incremented (monotonic ULIDs), so ids made
by one process keep their creation order.

Ids are names, not secrets (access is checked against the owner), so the random part
comes from ``random`` (reseeded in forked children), not from a system call per id.
"""

from __future__ import annotations

import random
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def id_pattern(prefix: str) -> str:
    """The regular expression (anchored; ECMA-262 and Python alike) of ``prefix``'s ids."""
    return f"^{prefix}_[{_ALPHABET}]{{26}}$"


_last = 0  # the previous id's value, for monotonic ordering within a millisecond


def new_id(prefix: str) -> str:
    global _last
    value = (int(time.time() * 1000) << 80) | random.getrandbits(80)
    if value >> 80 <= _last >> 80:
        value = _last + 1
    _last = value
    chars = []
    for _ in range(26):
        value, digit = divmod(value, 32)
        chars.append(_ALPHABET[digit])
    return f"{prefix}_{''.join(reversed(chars))}"
