"""Outgoing webhooks: your default endpoint, your signing secret, and what was delivered
(of a job, or of a batch's completions).

``GET /v1/webhooks/default/secret`` answers ``{"key": "whsec_…"}`` (as Replicate does):
verify deliveries with any Standard Webhooks library, e.g.
``standardwebhooks.Webhook(key).verify(body, headers)``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from imagemill.api.deps import CurrentOwner, RuntimeDep
from imagemill.api.routing import CheckedRoute
from imagemill.api.schemas import (
    DeliveryAttemptOut,
    DeliveryList,
    DeliveryOut,
    ErrorOut,
    WebhookEndpointIn,
    WebhookEndpointOut,
    WebhookSecretOut,
)
from imagemill.auth import webhook_secret
from imagemill.db.webhooks import PENDING, Attempt, Delivery, Endpoint
from imagemill.errors import NotFound
from imagemill.jobs.service import utcnow
from imagemill.net import check_public_url

router = APIRouter(tags=["webhooks"], route_class=CheckedRoute)
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut},
    404: {"model": ErrorOut},
    422: {"model": ErrorOut},
}


@router.get("/v1/webhooks/default", response_model=WebhookEndpointOut, responses=ERRORS)
async def get_default_endpoint(owner: CurrentOwner, runtime: RuntimeDep) -> WebhookEndpointOut:
    """Your default webhook: where jobs that name no `webhook_url` send their events."""
    endpoint = await runtime.webhooks.endpoint(owner.id)
    if endpoint is None:
        raise NotFound("no default webhook; PUT one")
    return _endpoint_out(endpoint)


@router.put("/v1/webhooks/default", response_model=WebhookEndpointOut, responses=ERRORS)
async def set_default_endpoint(
    body: WebhookEndpointIn, owner: CurrentOwner, runtime: RuntimeDep
) -> WebhookEndpointOut:
    """Set (or re-enable) your default webhook, for jobs submitted from now on."""
    await check_public_url(body.url, runtime.webhook_targets.allowed, "url")
    events = [str(event) for event in body.events]
    endpoint = await runtime.webhooks.set_endpoint(owner.id, body.url, events, utcnow())
    runtime.webhook_targets.forget(owner.id)
    return _endpoint_out(endpoint)


@router.delete("/v1/webhooks/default", status_code=204, responses=ERRORS)
async def delete_default_endpoint(owner: CurrentOwner, runtime: RuntimeDep) -> Response:
    """Stop sending events of new jobs to your default webhook."""
    if not await runtime.webhooks.delete_endpoint(owner.id):
        raise NotFound("no default webhook")
    runtime.webhook_targets.forget(owner.id)
    return Response(status_code=204)


@router.get("/v1/webhooks/default/secret", response_model=WebhookSecretOut, responses=ERRORS)
async def get_secret(owner: CurrentOwner) -> WebhookSecretOut:
    """The key your deliveries are signed with (Standard Webhooks)."""
    return WebhookSecretOut(key=webhook_secret(owner.secret))


@router.get("/v1/jobs/{job_id}/deliveries", response_model=DeliveryList, responses=ERRORS)
async def list_deliveries(job_id: str, owner: CurrentOwner, runtime: RuntimeDep) -> DeliveryList:
    """Every webhook delivery of the job, with each attempt: when, the answer, how long."""
    await runtime.service.get(owner.id, job_id)  # 404 unless yours
    return _delivery_list(await runtime.webhooks.of_job(job_id))


@router.get("/v1/batches/{batch_id}/deliveries", response_model=DeliveryList, responses=ERRORS)
async def list_batch_deliveries(
    batch_id: str, owner: CurrentOwner, runtime: RuntimeDep
) -> DeliveryList:
    """The batch's `batch.done` deliveries (one per completion, by `round`), with each
    attempt. Its items' own deliveries are listed under each job."""
    await runtime.batches.get(owner.id, batch_id)  # 404 unless yours
    return _delivery_list(await runtime.webhooks.of_batch(batch_id))


def _delivery_list(found: list[tuple[Delivery, list[Attempt]]]) -> DeliveryList:
    return DeliveryList(
        data=[
            DeliveryOut(
                id=d.id,
                event_type=d.event_type,
                event_id=d.event_id,
                round=d.batch_round,
                url=d.url,
                status=d.status,
                next_attempt_at=d.next_attempt_at if d.status == PENDING else None,
                last_status_code=d.last_status_code,
                last_error=d.last_error,
                created_at=d.created_at,
                finished_at=d.finished_at,
                attempts=[
                    DeliveryAttemptOut(
                        attempt=a.attempt,
                        at=a.at,
                        status_code=a.status_code,
                        error=a.error,
                        duration_ms=a.duration_ms,
                    )
                    for a in attempts
                ],
            )
            for d, attempts in found
        ]
    )


def _endpoint_out(endpoint: Endpoint) -> WebhookEndpointOut:
    return WebhookEndpointOut(
        url=endpoint.url,
        events=endpoint.events,
        disabled_at=endpoint.disabled_at,
        updated_at=endpoint.updated_at,
    )
