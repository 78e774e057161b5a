"""What a field of a request may hold: the bounds of counts, seeds, sizes and prompts, and
the field types the wire schemas are made of (strict integers, deadlines, sizes in ASCII,
webhook URLs, free-form JSON within limits), each stating in the OpenAPI document what it
takes.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema

from imagemill.boundary import METADATA_LIMITS, PARAMS_LIMITS
from imagemill.net import check_url

MAX_N = 10
MIN_SIDE = 16
MAX_SIDE = 8192
MAX_SEED = 2**32 - 1
MAX_PROMPT_CHARS = 32_000
MAX_INPUTS = 16
MAX_DEADLINE_SECONDS = 86_400
# ASCII only (Python's ``\d`` would take any script's digits, full-width ones included);
# the patterns go into the OpenAPI schema as they are.
# A side: 16 to 8192, no leading zero. A ratio's term: 1 to 999, with up to 3 decimals
# (a shape beyond what a model makes is made as close as it can).
_SIDE = "(?:1[6-9]|[2-9][0-9]|[1-9][0-9]{2}|[1-7][0-9]{3}|80[0-9]{2}|81[0-8][0-9]|819[0-2])"
RATIO_TERM = r"(?:[1-9][0-9]{0,2}(?:\.[0-9]{1,3})?)"
SIZE_PATTERN = f"^{_SIDE}[xX]{_SIDE}$"
RATIO_PATTERN = f"^{RATIO_TERM}:{RATIO_TERM}$"


# http(s), a host, then (percent-encoded) ASCII with no fragment: what is called as written.
WEBHOOK_URL_PATTERN = (
    '^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@\\x00-\\x20\\x7f]+(?:[/?](?:[!"$&-~]|%[0-9A-Fa-f]{2})*)?$'
)


def json_integer(value: object) -> object:
    """An integer as JSON has them: ``2`` or ``2.0``, never ``true`` or ``"2"``."""
    if isinstance(value, bool | str):
        raise ValueError("must be a whole number (not a string or a boolean)")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Integer fields of the wire schemas: what JSON Schema calls an integer (``2.0`` included),
# nothing looser (``true`` and ``"2"`` are refused), within bounds stated in the schema.
Count = Annotated[
    int,
    BeforeValidator(json_integer),
    Field(ge=1, le=MAX_N),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": MAX_N}),
]
Seed = Annotated[
    int,
    BeforeValidator(json_integer),
    Field(ge=0, le=MAX_SEED),
    WithJsonSchema({"type": "integer", "minimum": 0, "maximum": MAX_SEED}),
]

# How long a job may take, retries included: a number (strictly: not "60" or true), finite.
DeadlineSeconds = Annotated[
    float, Field(gt=0, le=MAX_DEADLINE_SECONDS, strict=True, allow_inf_nan=False)
]

# Free-form JSON objects, checked against their limits (``boundary``).
Metadata = Annotated[
    dict[str, Any],
    AfterValidator(METADATA_LIMITS.check),
    Field(description=f"Yours; returned as given. Any JSON object, {METADATA_LIMITS.describe()}."),
]
Params = Annotated[
    dict[str, Any],
    AfterValidator(PARAMS_LIMITS.check),
    Field(
        description="Model params, checked against the model's JSON Schema. Any JSON object, "
        f"{PARAMS_LIMITS.describe()}."
    ),
]
WebhookUrl = Annotated[
    str,
    AfterValidator(check_url),
    Field(
        max_length=2000,
        description="An http or https URL (no credentials); private addresses are refused "
        "unless IMAGEMILL_ALLOWED_PRIVATE_NETWORKS allows them.",
        json_schema_extra={"format": "uri", "pattern": WEBHOOK_URL_PATTERN},
    ),
]
SizeText = Annotated[
    str,
    Field(
        description="Exact output size 'WIDTHxHEIGHT' in pixels (ASCII digits), each side "
        f"{MIN_SIDE} to {MAX_SIDE}, e.g. '1920x1080'.",
        json_schema_extra={"pattern": SIZE_PATTERN},
    ),
]
