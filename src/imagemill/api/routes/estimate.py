"""``POST /v1/estimate``: what a job or batch request would cost, and whether it fits
the caller's budgets; nothing runs and nothing is recorded."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from imagemill.api.batch_schemas import BatchIn
from imagemill.api.deps import CurrentOwner, RuntimeDep
from imagemill.api.routing import CheckedRoute
from imagemill.api.schemas import ErrorOut
from imagemill.api.spend_schemas import EstimateOut
from imagemill.db.records import JobDraft
from imagemill.domain import Submission
from imagemill.jobs.service import utcnow

router = APIRouter(prefix="/v1/estimate", tags=["usage"], route_class=CheckedRoute)


# The body is either request, told apart by ``requests`` (each schema forbids the other's
# fields); it is parsed here so a refusal names fields as the submit routes do.
EITHER_REQUEST = {
    "oneOf": [
        {"$ref": "#/components/schemas/Submission"},
        {"$ref": "#/components/schemas/BatchIn"},
    ]
}


@router.post(
    "",
    response_model=EstimateOut,
    responses={401: {"model": ErrorOut}, 422: {"model": ErrorOut}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": EITHER_REQUEST}},
        }
    },
)
async def estimate(
    body: Annotated[
        dict[str, Any],
        Body(
            description="A job request as `POST /v1/jobs` takes it (a comparison too), or a "
            "batch as `POST /v1/batches` takes it (an object with `requests`).",
        ),
    ],
    owner: CurrentOwner,
    runtime: RuntimeDep,
) -> EstimateOut:
    """The price of a request, per job and in total, checked as submitting it would be
    (a refusal names the field, 422), and whether it fits the caller's budgets now.
    `total_usd` is what the jobs cost if each is made by the model it asks for;
    `reserve_usd` is what submitting would hold until they end: each job's priciest
    fallback. Cache hits cost 0. Text models are priced by tokens, known once they
    answer: their estimate is an upper bound of what imagemill asks of them."""
    drafts: list[JobDraft]
    if "requests" in body:
        batch = _parsed(BatchIn, body)
        drafts = await runtime.batches.drafts(
            owner.id,
            batch.requests,
            batch_id="bat_estimate",
            deadline_seconds=batch.deadline_seconds,
            key_id=owner.key_id,
        )
    else:
        submission = _parsed(Submission, body)
        drafts = await runtime.service.drafts(owner.id, submission, key_id=owner.key_id)
    quote = await runtime.service.spend.quote(owner.id, drafts, owner.key_id, utcnow())
    return EstimateOut.of(quote)


Model = TypeVar("Model", BatchIn, Submission)


def _parsed(model: type[Model], body: dict[str, Any]) -> Model:
    """``body`` as ``model``, or the 422 a declared body would get, fields named alike."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise _in_body(exc) from exc


def _in_body(exc: ValidationError) -> RequestValidationError:
    return RequestValidationError([{**p, "loc": ("body", *p["loc"])} for p in exc.errors()])
