"""Replicate: FLUX, Ideogram, Seedream, FLUX Kontext (edits), Real-ESRGAN, Kling (video).

Through the official ``replicate`` SDK. A prediction is created without waiting, its id
saved with the job (``save_provider_ref``) before anything else, then polled until it
ends. When the server has a public URL, Replicate's webhook (``webhook``: verified only)
nudges the job's attempt, wherever it runs, and the attempt polls at once: a job ends
about when its prediction does, however far apart the polls have grown, and its result
always comes from one poll, never from a webhook's body. Progress is the prediction's
own, as its logs report it. A retried attempt resumes the saved predictions instead of
paying for new ones; a job that ends without them (its owner canceled it, its deadline
passed) cancels them.

Each model's params JSON Schema is its version's OpenAPI ``Input`` schema (fetched,
cached on disk; see ``replicate_models.py``, which also holds the catalogue). The SDK is
imported only where a token makes it needed, as the other hosted providers do theirs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from standardwebhooks import Webhook, WebhookVerificationError

from imagemill.config import Settings
from imagemill.domain import Output, Size, Task, TaskKind
from imagemill.errors import (
    AuthError,
    ContentRejected,
    ProviderError,
    ProviderInputError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    Unauthorized,
)
from imagemill.providers.base import RunContext, redact
from imagemill.providers.replicate_models import (
    CATALOGUE,
    CONTROLLED,
    Catalogued,
    input_params_schema,
)
from imagemill.providers.sizes import fit_within, nearest_aspect_ratio
from imagemill.specs import ModelSpec, Pricing, SizeRange

if TYPE_CHECKING:
    from replicate.client import Client as ReplicateClient

log = logging.getLogger(__name__)

TERMINAL = {"succeeded", "failed", "canceled"}
SECRET_RETRY_SECONDS = 60.0  # after a failed fetch of the webhook secret
SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


@dataclass(frozen=True)
class _Version:
    """A model version as fetched: its id, the params schema, the names of all its inputs."""

    id: str
    schema: dict[str, Any]
    inputs: frozenset[str]


@dataclass(frozen=True)
class Polling:
    """Seconds between polls of a prediction: ``first``, then half as long again each
    time the prediction has not moved, up to ``most``. A webhook cuts any wait short."""

    first: float = 0.25
    most: float = 5.0


POLLING = Polling()


class Replicate:
    name = "replicate"

    def __init__(self, settings: Settings, polling: Polling = POLLING) -> None:
        token = settings.replicate_api_token
        self._token = token.get_secret_value() if token else None
        self._timeout = settings.provider_timeout_seconds
        self._client: ReplicateClient | None = None
        if self._token:
            from replicate.client import Client as ReplicateClient

            self._client = ReplicateClient(
                api_token=self._token,
                base_url=settings.replicate_base_url,
                timeout=httpx.Timeout(self._timeout),
            )
        self._webhook_secret = (
            settings.replicate_webhook_secret.get_secret_value()
            if settings.replicate_webhook_secret
            else None
        )
        self._cache = settings.data_dir / "cache" / "replicate"
        self._versions: dict[str, _Version] = {}  # by model ref
        self._load_cache()
        self._polling = polling
        self._secret_lock = asyncio.Lock()
        self._secret_retry_at = 0.0  # a failed fetch of the webhook secret: not before then

    # -- catalogue ----------------------------------------------------------------------

    def models(self) -> list[ModelSpec]:
        reason = None if self._client else "REPLICATE_API_TOKEN is not set"
        return [self._spec(entry, reason) for entry in CATALOGUE]

    def _spec(self, entry: Catalogued, unavailable: str | None) -> ModelSpec:
        known = self._versions.get(entry.ref)
        return ModelSpec(
            id=entry.id,
            provider=self.name,
            name=entry.ref,
            title=entry.title,
            description=entry.description,
            kinds=[entry.kind],
            params_schema=known.schema if known else _UNKNOWN_SCHEMA,
            sizes=SizeRange(min_side=64, max_side=4096, default="1024x1024"),
            # A version that is not known yet takes what it is given (as its params do).
            limits=entry.limits.model_copy(
                update={"negative_prompt": "negative_prompt" in known.inputs}
            )
            if known
            else entry.limits,
            max_n=entry.max_n,
            supports_seed=entry.kind is not TaskKind.VIDEO,
            pricing=Pricing(per_image=entry.price),
            available=unavailable is None,
            unavailable_reason=unavailable,
        )

    async def refresh(self) -> None:
        """Fetch every model's current version and params schema (and cache them)."""
        if self._client is None:
            return
        for entry in CATALOGUE:
            try:
                await self._fetch_schema(entry)
            except Exception as exc:  # keep the cached (or permissive) schema
                log.warning(
                    "could not fetch the schema of %s: %s", entry.ref, redact(str(exc), self._token)
                )

    async def _fetch_schema(self, entry: Catalogued) -> _Version:
        assert self._client is not None
        with translated_errors(self._token):
            async with asyncio.timeout(self._timeout):
                model = await self._client.models.async_get(entry.ref)
        latest = model.latest_version
        if latest is None:
            raise ProviderError(f"{entry.ref} has no published version")
        controlled = CONTROLLED | {f for f in (entry.count_field, entry.image_field) if f}
        schema, inputs = input_params_schema(latest.openapi_schema, controlled)
        version = _Version(latest.id, schema, frozenset(inputs))
        self._versions[entry.ref] = version
        self._cache.mkdir(parents=True, exist_ok=True)
        cached = {"version": version.id, "schema": schema, "inputs": sorted(inputs)}
        self._cache_path(entry).write_text(json.dumps(cached))
        return version

    def _cache_path(self, entry: Catalogued) -> Path:
        return self._cache / f"{entry.ref.replace('/', '__')}.json"

    def _load_cache(self) -> None:
        for entry in CATALOGUE:
            try:
                cached = json.loads(self._cache_path(entry).read_text())
                version = _Version(cached["version"], cached["schema"], frozenset(cached["inputs"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue
            self._versions[entry.ref] = version

    # -- running ------------------------------------------------------------------------

    async def run(self, task: Task, ctx: RunContext) -> list[Output]:
        if self._client is None:
            raise AuthError("REPLICATE_API_TOKEN is not set")
        entry = next(e for e in CATALOGUE if e.ref == task.model)
        try:
            ids = await self._resumed(ctx) or await self._create(entry, task, ctx)
            finished = await self._watch(ids, ctx)
        except asyncio.CancelledError:
            if ctx.abandoned and ctx.provider_ref:  # nobody will resume it: stop the billing
                await asyncio.shield(self._cancel(ctx.provider_ref.split(",")))
            raise
        return [o for prediction in finished for o in _outputs(prediction, entry)]

    async def _resumed(self, ctx: RunContext) -> list[str] | None:
        """The predictions a previous attempt started, unless they failed or were canceled."""
        if not ctx.provider_ref or self._client is None:
            return None
        ids = ctx.provider_ref.split(",")
        with translated_errors(self._token):
            for prediction_id in ids:
                async with asyncio.timeout(self._timeout):
                    prediction = await self._client.predictions.async_get(prediction_id)
                if prediction.status in ("failed", "canceled"):
                    return None  # over and paid for: start again
        return ids

    async def _create(self, entry: Catalogued, task: Task, ctx: RunContext) -> list[str]:
        assert self._client is not None
        inputs = self._inputs(entry, task)
        calls = 1 if entry.count_field or task.n == 1 else task.n
        options: dict[str, Any] = {}
        if url := ctx.webhook_url(self.name):
            options = {"webhook": url, "webhook_events_filter": ["completed"]}
        version = None if entry.official else await self._version(entry)
        ids = []
        with translated_errors(self._token):
            for _ in range(calls):
                async with asyncio.timeout(self._timeout):  # the SDK sets none on create
                    if version is None:
                        created = await self._client.models.predictions.async_create(
                            model=entry.ref, input=inputs, **options
                        )
                    else:
                        created = await self._client.predictions.async_create(
                            version=version, input=inputs, **options
                        )
                ids.append(created.id)
                await ctx.save_provider_ref(",".join(ids))  # before anything can go wrong
        return ids

    async def _version(self, entry: Catalogued) -> str:
        known = self._versions.get(entry.ref)
        return (known or await self._fetch_schema(entry)).id

    def _inputs(self, entry: Catalogued, task: Task) -> dict[str, Any]:
        inputs: dict[str, Any] = {**task.params}
        if task.prompt:
            inputs["prompt"] = task.prompt
        known = self._versions.get(entry.ref)
        if task.negative_prompt and known and "negative_prompt" in known.inputs:
            inputs["negative_prompt"] = task.negative_prompt
        if task.seed is not None and entry.kind is not TaskKind.VIDEO:
            inputs["seed"] = task.seed
        if entry.count_field and task.n > 1:
            inputs[entry.count_field] = task.n
        if entry.image_field and task.inputs:
            image = task.inputs[0]
            encoded = base64.b64encode(image.data).decode()
            inputs[entry.image_field] = f"data:{image.content_type};base64,{encoded}"
        requested = Size(task.width, task.height)
        if entry.custom_size:
            low, high, multiple = entry.custom_size
            size = fit_within(requested, low, high, multiple)
            inputs.update(aspect_ratio="custom", width=size.width, height=size.height)
        elif entry.ratios:
            inputs["aspect_ratio"] = nearest_aspect_ratio(requested, entry.ratios)
        return inputs

    async def _watch(self, ids: list[str], ctx: RunContext) -> list[dict[str, Any]]:
        """Each prediction once finished, polled: when the interval is up, or at once when
        a webhook nudges the job (one nudge that came meanwhile counts: none is lost)."""
        assert self._client is not None
        done: dict[str, dict[str, Any]] = {}
        interval = self._polling.first
        shown: dict[str, float] = {}  # the progress each prediction last reported
        while True:
            nudged = await ctx.nudged(interval)
            moved = False
            with translated_errors(self._token):
                for prediction_id in [i for i in ids if i not in done]:
                    async with asyncio.timeout(self._timeout):
                        polled = await self._client.predictions.async_get(prediction_id)
                    if polled.status in TERMINAL:
                        done[prediction_id] = polled.dict()
                    elif (progress := polled.progress) is not None:
                        # The SDK reads tqdm's "50%|…| 2/4" from the logs as 0.5 already.
                        moved |= progress.percentage > shown.get(prediction_id, 0.0)
                        shown[prediction_id] = progress.percentage
                        if len(ids) == 1:
                            message = f"{progress.current}/{progress.total}"
                            await ctx.progress(progress.percentage, message)
            if len(done) == len(ids):
                return [_checked(done[i]) for i in ids]
            if len(ids) > 1 and shown:  # one prediction per image: how far they are together
                await ctx.progress(sum(shown.values()) / len(ids), f"{len(done)}/{len(ids)} done")
            # While the prediction moves, look as often (a bar that follows it); while it
            # sits (queued, or a long step), back off. A nudge is no reason to back off.
            if not (moved or nudged):
                interval = min(self._polling.most, interval * 1.5)

    async def _cancel(self, ids: list[str]) -> None:
        """Stop predictions nobody wants any more (best effort)."""
        if self._client is None:
            return
        for prediction_id in ids:
            try:
                async with asyncio.timeout(self._timeout):
                    await self._client.predictions.async_cancel(prediction_id)
            except Exception as exc:
                log.warning("could not cancel prediction %s: %s", prediction_id, type(exc).__name__)

    # -- webhooks -----------------------------------------------------------------------

    async def webhook(self, headers: Mapping[str, str], body: bytes) -> None:
        """A prediction's webhook, verified (signature, timestamp); once this returns, the
        job named in its URL is nudged and polls. The body is not used: the poll's answer
        is the result.

        A call without the signature headers is refused before anything else: anyone can
        call this route, and only a signed call may cost a request to Replicate (for the
        signing secret, once).
        """
        missing = [name for name in SIGNATURE_HEADERS if not headers.get(name)]
        if missing:
            raise Unauthorized(f"the webhook is not signed (no {', '.join(missing)} header)")
        secret = await self._secret()
        try:
            Webhook(secret).verify(body, dict(headers))
        except WebhookVerificationError as exc:
            raise Unauthorized(f"the webhook signature is not valid: {exc}") from exc

    async def _secret(self) -> str:
        """The signing secret: configured, or fetched from Replicate once. A failed fetch
        is remembered for ``SECRET_RETRY_SECONDS``: calls meanwhile fail at once instead
        of each asking Replicate again."""
        async with self._secret_lock:
            if self._webhook_secret is not None:
                return self._webhook_secret
            if self._client is None:
                raise Unauthorized("this server takes no Replicate webhooks (no token)")
            if time.monotonic() < self._secret_retry_at:
                raise ProviderUnavailable(
                    "Replicate's webhook secret could not be fetched; trying again shortly"
                )
            try:
                with translated_errors(self._token):
                    async with asyncio.timeout(self._timeout):
                        secret = (await self._client.webhooks.default.async_secret()).key
            except ProviderError as exc:
                self._secret_retry_at = time.monotonic() + SECRET_RETRY_SECONDS
                raise ProviderUnavailable(
                    f"Replicate's webhook secret could not be fetched: {exc.message}"
                ) from exc
            self._webhook_secret = secret
            return secret


_UNKNOWN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The model's own schema has not been fetched yet: params go as given.",
}


def _checked(prediction: dict[str, Any]) -> dict[str, Any]:
    """The prediction if it succeeded; else its failure, as imagemill's error."""
    status, error = prediction.get("status"), str(prediction.get("error") or "")
    if status == "succeeded":
        return prediction
    if status == "canceled":
        raise ProviderError(f"Replicate prediction {prediction['id']} was canceled", retryable=True)
    if "nsfw" in error.lower():
        raise ContentRejected(f"Replicate: {error}")
    raise ProviderError(
        f"Replicate prediction failed: {error or 'no reason given'}", retryable=True
    )


def _outputs(prediction: dict[str, Any], entry: Catalogued) -> list[Output]:
    output = prediction.get("output")
    urls = output if isinstance(output, list) else [output]
    if not urls or not all(isinstance(u, str) and u for u in urls):
        raise ProviderError("Replicate's prediction succeeded without outputs", retryable=True)
    content_type = "video/mp4" if entry.video else None
    return [Output(url=url, content_type=content_type) for url in urls]


@contextmanager
def translated_errors(secret: str | None) -> Iterator[None]:
    """The SDK's and httpx's exceptions, as imagemill's error tree (the token blanked out)."""
    from replicate.exceptions import ReplicateError

    try:
        yield
    except ReplicateError as exc:
        status = exc.status or 0
        detail = redact(str(exc.detail or exc.title or f"HTTP {status}"), secret)
        if status == 429:
            raise RateLimited(f"Replicate: {detail}") from exc
        if status in (401, 403):
            raise AuthError(f"Replicate refused the token ({status})") from exc
        if status in (400, 404, 422):
            raise ProviderInputError(f"Replicate: {detail}") from exc
        raise ProviderError(f"Replicate: {detail}", retryable=status >= 500 or status == 0) from exc
    except (TimeoutError, httpx.TimeoutException) as exc:
        raise ProviderTimeout("Replicate did not answer in time") from exc
    except httpx.TransportError as exc:
        raise ProviderUnavailable(f"could not reach Replicate: {type(exc).__name__}") from exc
    except ValueError as exc:  # a body that is not the JSON expected
        raise ProviderError(
            "Replicate sent a response imagemill could not read", retryable=True
        ) from exc
