"""Schemathesis hooks for the contract run (``SCHEMATHESIS_HOOKS=contract.hooks``).

- Uploads: the API takes image files (PNG, JPEG, WebP, GIF) and its schema says so in
  each form field's ``encoding``; schemathesis is given strategies for those media types
  (its documented way), so generated uploads are real images of varied sizes and modes.
- One check replaces schemathesis' ``positive_data_acceptance`` ("a request the schema
  allows is accepted"), keeping every bit of it but one: a refusal naming a field whose
  validity depends on what the server has stored, which no schema can state: an asset
  or preset id that does not exist (or what that asset or preset holds), an
  Idempotency-Key already used for another request, and what a webhook host resolves
  to; and, for a comparison group, a fallback chain or the model that enhances the
  prompt, whether each model listed suits the request (each model's own rules are
  stated, per model, for ``model``). And one
  rule the schema states in words only: ``size`` and ``aspect_ratio`` together (as a
  rule of its own it takes schemathesis' generator for the job request past what it
  can read). A batch's items are job requests, held to the same (and run one model each,
  stated in words). Everything else a request may carry is stated in the schema, and
  its refusal fails the run.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

import schemathesis
from hypothesis import strategies as st
from PIL import Image
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import positive_data_acceptance

# Per operation: the fields whose validity depends on the server's stored data.
STORED: dict[str, tuple[str, ...]] = {
    "POST /v1/jobs": ("input_assets", "mask", "preset", "webhook_url", "Idempotency-Key"),
    "POST /v1/batches": ("webhook_url",),  # the batch's own; its items' are a job's
    "PUT /v1/webhooks/default": ("url",),
    "PATCH /v1/presets/{preset}": ("model", "params", "size"),  # merged with the stored one
    "POST /v1/images/generations": ("Idempotency-Key",),
    "POST /v1/images/edits": ("image", "mask", "Idempotency-Key"),
    "POST /v1/archives": ("items",),  # outputs that exist, and are the caller's
    "POST /v1/collections/{collection_id}/items": ("items",),
}
FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP", "image/gif": "GIF"}


def _images(fmt: str) -> st.SearchStrategy[bytes]:
    """Small real images of ``fmt``: any size up to 64 px a side, in a few colour modes."""

    def encode(width: int, height: int, mode: str, colour: int) -> bytes:
        image = Image.new(
            mode, (width, height), colour if mode in ("L", "P") else (colour,) * len(mode)
        )
        buffer = io.BytesIO()
        image.convert("RGB" if fmt == "JPEG" else image.mode).save(buffer, format=fmt)
        return buffer.getvalue()

    sides = st.integers(min_value=1, max_value=64)
    modes = st.sampled_from(["RGB", "RGBA", "L"] if fmt != "GIF" else ["P", "L"])
    return st.builds(encode, sides, sides, modes, st.integers(min_value=0, max_value=255))


for media_type, fmt in FORMATS.items():
    schemathesis.openapi.media_type(media_type, _images(fmt))


@schemathesis.check
def positive_data_accepted_unless_stored_data_decides(
    ctx: Any, response: Any, case: Any
) -> bool | None:
    try:
        return positive_data_acceptance(ctx, response, case)
    except RejectedPositiveData:
        if _decided_by_stored_data(case, response) or _blank_form_by_schemathesis(case):
            return None
        raise


def _blank_form_by_schemathesis(case: Any) -> bool:
    """A case schemathesis calls valid and is not: for a multipart form with encoded files,
    its coverage phase fills the other required fields with "" whatever their schema says
    (``_generate_multipart_body_from_custom_strategies``, schemathesis 4.32), e.g. an
    edit's ``prompt``, which must have words in it (``minLength`` 1)."""
    body = case.body if isinstance(case.body, dict) else {}
    for parameter in getattr(case.operation, "body", ()):
        properties = (getattr(parameter, "resolved_schema", None) or {}).get("properties", {})
        for name, value in body.items():
            if value == "" and properties.get(name, {}).get("minLength", 0) >= 1:
                return True
    return False


def _decided_by_stored_data(case: Any, response: Any) -> bool:
    operation = f"{case.method.upper()} {case.path}"
    try:
        error = json.loads(response.content)["error"]
    except (ValueError, KeyError, TypeError):
        return False
    field = str(error.get("field") or error.get("param") or "")
    body = case.body if isinstance(case.body, dict) else {}
    if operation == "GET /v1/usage" and field == "until":
        return True  # not before since: in the operation's description
    if operation == "POST /v1/estimate":  # a job or batch request, checked as submitted
        operation = "POST /v1/batches" if "requests" in body else "POST /v1/jobs"
    item = re.fullmatch(r"requests\.([0-9]+)\.(.+)", field)
    if operation == "POST /v1/batches" and item:  # a batch item is a job request
        if item[2] == "models":
            return True  # one model per item: in the items' description
        operation, field = "POST /v1/jobs", item[2]
        body = body["requests"][int(item[1])]
    if operation == "POST /v1/jobs" and field == "aspect_ratio" and body.get("size") is not None:
        return True  # size or aspect_ratio, not both: in aspect_ratio's description
    if operation == "POST /v1/jobs" and body.get("preset") is not None:
        return True  # a preset's stored template, size, model and params join the request
    if operation == "POST /v1/jobs" and (
        (body.get("models") and field != "models") or field.startswith(("fallback", "enhance."))
    ):
        return True  # a group's, chain's or enhancer's models suit the request each: GET /v1/models
    return any(field == name or field.startswith(f"{name}.") for name in STORED.get(operation, ()))
