"""A fake of Replicate's HTTP API (predictions), faithful enough to drive the official SDK.

It answers what ``replicate`` 1.0.x sends, on a real socket (see ``fakes.server.serve``):

- ``GET /v1/models/{owner}/{name}``: the model, with ``latest_version.openapi_schema`` as
  Cog writes it (the models and their schemas are ``fakes.replicate_catalogue``, what a
  model is and does ``fakes.replicate_models``). ``GET .../versions/{id}`` returns that
  version.
- ``POST /v1/models/{owner}/{name}/predictions`` (official models only; ``version`` reads
  ``"hidden"``) and ``POST /v1/predictions`` with ``version`` as a bare id,
  ``owner/name:id`` or ``owner/name``. The body is ``input``, ``webhook``,
  ``webhook_events_filter``, ``webhook_completed``. ``input`` is validated against the
  version's schema: 422 ``Input validation failed`` with ``invalid_fields``. 201 with the
  prediction, ``status: starting``. ``Prefer: wait`` / ``Prefer: wait=N`` (1-60) holds the
  request until the prediction finishes or N seconds pass.
- ``GET /v1/predictions`` (one page), ``GET /v1/predictions/{id}``,
  ``POST /v1/predictions/{id}/cancel``, ``GET /v1/webhooks/default/secret``.
- ``GET /files/{prediction_id}/{name}``: the outputs (real PIL images; kling's video is an
  MP4 *stub*: an ``ftyp`` box then ``free``/``mdat``, typed ``video/mp4``, not playable).
  After ``url_ttl_seconds`` (or ``expire_urls()``) files answer 403 and the prediction
  reads ``data_removed: true`` with no input, logs or output, as after Replicate's hour.

Auth is ``Authorization: Bearer <token>`` (``Token <token>`` also passes); otherwise 401
``{"title": "Unauthenticated", ...}``. Errors are problem JSON (``title``, ``detail``,
``status``), the shape ``replicate.exceptions.ReplicateError`` reads.

A prediction runs on the server's loop: ``starting`` for the first fifth of its run time
(0.5 s at most), then ``processing`` with tqdm-style log lines (which
``Prediction.progress`` parses), then ``succeeded`` with ``output``, ``metrics`` and
``completed_at``. A prompt containing
``forbidden`` fails with the NSFW error, one containing ``explode`` with a model crash.
``run_seconds`` may be ``math.inf`` (only ``complete_now`` or cancel ends it);
``queue_run_seconds`` sets it for the next predictions.

Webhooks are POSTed for the filtered events, signed per Standard Webhooks with the
secret, retried and duplicated on demand (``fakes.replicate_webhooks``); deliveries are
logged in ``webhook_deliveries``. Knobs: ``webhooks_enabled``, ``webhook_delay_seconds``
(0: delivered the moment the state changes, racing a poll), ``webhook_duplicates``,
``webhook_retry_delays``, and ``send_forged_webhook()``.

Faults (``fakes.faults.Faults``) are injected after auth on the endpoint names ``create``,
``get``, ``list``, ``cancel``, ``model`` (model and version GETs), ``secret`` and
``download`` (files need no token). Replicate-shaped bodies: 429 is ``Request was
throttled`` with ``Retry-After``. A hang (and a ``Prefer: wait``) ends when the client
disconnects, so a client timeout also lets the server shut down promptly.

Test controls: ``complete_now(id)``, ``step_now(id)``, ``expire_urls()``,
``queue_run_seconds(...)``; state: ``predictions``, ``created`` (predictions paid for),
``downloads`` (per ``"prediction_id/file"``), ``webhook_deliveries``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fakes.faults import Faults
from fakes.replicate_catalogue import MODELS as MODELS  # re-exported for the tests
from fakes.replicate_models import (
    CONTENT_TYPES,
    FakeModel,
    ModelFailure,
    load_image,
    render_outputs,
    validate_input,
    with_defaults,
)
from fakes.replicate_webhooks import (
    DEFAULT_WEBHOOK_EVENTS,
    WEBHOOK_EVENTS,
    WebhookDelivery,
    deliver,
    new_secret,
    post_webhook,
)

TERMINAL = frozenset({"succeeded", "failed", "canceled"})
NSFW_ERROR = "NSFW content detected. Try running it again, or try a different prompt."
CRASH_ERROR = "Prediction failed: CUDA error: an illegal memory access was encountered"
MAX_WAIT_SECONDS = 60
STEPS = 4  # progress lines a prediction logs
QUEUED_SHARE = 0.2  # part of the run time spent "starting"...
QUEUED_MAX_SECONDS = 0.5  # ...at most (so an endless run reaches "processing")
POLL_SECONDS = 0.02  # how often a held request checks its prediction and its client
ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


@dataclass
class StoredFile:
    prediction_id: str
    content: bytes
    content_type: str


@dataclass
class FakePrediction:
    id: str
    model: FakeModel
    version: str  # as the API shows it: the version id, or "hidden" on the model endpoint
    input: dict[str, Any]
    base_url: str
    run_seconds: float
    webhook: str | None = None
    webhook_completed: str | None = None
    events: frozenset[str] = DEFAULT_WEBHOOK_EVENTS
    status: str = "starting"
    logs: str = ""
    output: Any = None
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started_at: datetime | None = None
    completed_at: datetime | None = None
    files_expire_at: float | None = None  # time.monotonic() after which files answer 403
    finish_requested: bool = False
    steps_granted: int = 0  # ``step_now`` calls not yet taken
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    settled: threading.Event = field(default_factory=threading.Event)
    delivery_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def expired(self) -> bool:
        return self.files_expire_at is not None and time.monotonic() >= self.files_expire_at


def _iso(moment: datetime | None) -> str | None:
    return (
        None if moment is None else moment.isoformat(timespec="microseconds").replace("+00:00", "Z")
    )


def _new_id() -> str:
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(26))


def _problem(status: int, detail: str, title: str | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"detail": detail, "status": status}
    if title is not None:
        body["title"] = title
    return JSONResponse(
        {**body, **extra}, status_code=status, media_type="application/problem+json"
    )


def _not_found() -> JSONResponse:
    return _problem(404, "The requested resource could not be found.")


def _invalid(problems: list[dict[str, str]]) -> JSONResponse:
    lines = "".join(
        f"- {p['field']}: {p['description']}\n" if p["field"] else f"- {p['description']}\n"
        for p in problems
    )
    return _problem(422, lines, "Input validation failed", invalid_fields=problems)


def _version_not_permitted() -> JSONResponse:
    detail = (
        "The specified version does not exist (or perhaps you don't have permission to use it?)"
    )
    return _problem(422, detail, "Invalid version or not permitted")


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _prefer_wait(header: str | None) -> float | None:
    """Seconds to hold the create request: ``Prefer: wait`` is 60, ``wait=N`` is N (1-60)."""
    match = re.search(r"\bwait(?:\s*=\s*(\d+))?", header or "")
    if match is None:
        return None
    seconds = int(match.group(1)) if match.group(1) else MAX_WAIT_SECONDS
    return float(min(max(seconds, 1), MAX_WAIT_SECONDS))


# --- the fake -----------------------------------------------------------------------------


class FakeReplicate:
    """The fake API: ``.app`` to serve, state and knobs for tests (see the module docstring)."""

    def __init__(
        self,
        token: str = "r8_test",
        run_seconds: float = 0.2,
        url_ttl_seconds: float = 3600.0,
        webhook_secret: str | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.token = token
        self.run_seconds = run_seconds
        self.url_ttl_seconds = url_ttl_seconds
        self.webhook_secret = webhook_secret or new_secret()
        self.faults = faults or Faults()
        self.models: dict[str, FakeModel] = dict(MODELS)
        self.predictions: dict[str, FakePrediction] = {}
        self.created = 0  # predictions created (each one is paid for)
        self.downloads: Counter[str] = Counter()  # "prediction_id/name" -> successful GETs
        self.webhook_deliveries: list[WebhookDelivery] = []
        self.webhooks_enabled = True
        self.webhook_delay_seconds = 0.0
        self.webhook_duplicates = 0  # extra deliveries of every event, same webhook-id
        self.webhook_retry_delays: tuple[float, ...] = (0.05, 0.1)
        self.webhook_timeout_seconds = 2.0
        self._queued_run_seconds: list[float] = []
        self._files: dict[str, StoredFile] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.app = Starlette(
            routes=[
                Route("/v1/models/{owner}/{name}", self._get_model, methods=["GET"]),
                Route(
                    "/v1/models/{owner}/{name}/versions/{version_id}",
                    self._get_version,
                    methods=["GET"],
                ),
                Route(
                    "/v1/models/{owner}/{name}/predictions",
                    self._create_for_model,
                    methods=["POST"],
                ),
                Route("/v1/predictions", self._create_for_version, methods=["POST"]),
                Route("/v1/predictions", self._list, methods=["GET"]),
                Route("/v1/predictions/{prediction_id}", self._get, methods=["GET"]),
                Route("/v1/predictions/{prediction_id}/cancel", self._cancel, methods=["POST"]),
                Route("/v1/webhooks/default/secret", self._secret, methods=["GET"]),
                Route("/files/{prediction_id}/{name}", self._download, methods=["GET"]),
            ]
        )

    # -- test controls ---------------------------------------------------------------------

    def queue_run_seconds(self, *seconds: float) -> None:
        """The next predictions created run for these times, in order."""
        self._queued_run_seconds.extend(seconds)

    def complete_now(self, prediction_id: str, timeout: float = 5.0) -> None:
        """Finish a running prediction now; returns once it is terminal.

        Call it from test code, not from the fake's own loop (there it only asks).
        """
        prediction = self.predictions[prediction_id]
        if prediction.terminal or self._loop is None:
            return
        prediction.finish_requested = True
        self._loop.call_soon_threadsafe(prediction.wake.set)
        with contextlib.suppress(RuntimeError):
            if asyncio.get_running_loop() is self._loop:
                return
        if not prediction.settled.wait(timeout):
            raise TimeoutError(f"prediction {prediction_id} did not finish in {timeout}s")

    def step_now(self, prediction_id: str) -> None:
        """Move a prediction on by one stage now: from ``starting`` to ``processing`` (its
        0% line), then one progress line each, the last finishing it. With
        ``run_seconds=math.inf`` it moves only so, at the test's pace."""
        prediction = self.predictions[prediction_id]
        if not prediction.terminal and self._loop is not None:

            def grant() -> None:
                prediction.steps_granted += 1
                prediction.wake.set()

            self._loop.call_soon_threadsafe(grant)

    def expire_urls(self, prediction_id: str | None = None) -> None:
        """Make the output files of finished predictions answer 403, as after the hour."""
        for prediction in self.predictions.values():
            if prediction_id in (None, prediction.id) and prediction.terminal:
                prediction.files_expire_at = -math.inf

    async def send_forged_webhook(self, prediction_id: str, url: str | None = None) -> int:
        """POST the prediction to its webhook signed with a wrong secret; the answer's status."""
        prediction = self.predictions[prediction_id]
        target = url or prediction.webhook or prediction.webhook_completed
        assert target is not None, "the prediction has no webhook"
        body, webhook_id = json.dumps(self.prediction_json(prediction)), "msg_" + _new_id()
        forger = Webhook(new_secret())
        status, error, sent_at = await post_webhook(
            target, webhook_id, body, forger, self.webhook_timeout_seconds
        )
        forged = WebhookDelivery(
            prediction_id, "completed", target, webhook_id, 1, status, error, body, sent_at, True
        )
        self.webhook_deliveries.append(forged)
        return status or 0

    def prediction_json(self, prediction: FakePrediction) -> dict[str, Any]:
        """The prediction as the API shows it (GET, create, webhooks)."""
        removed = prediction.expired
        api = f"{prediction.base_url}/v1/predictions/{prediction.id}"
        return {
            "id": prediction.id,
            "model": prediction.model.ref,
            "version": prediction.version,
            "input": {} if removed else prediction.input,
            "logs": "" if removed else prediction.logs,
            "output": None if removed else prediction.output,
            "data_removed": removed,
            "error": prediction.error,
            "status": prediction.status,
            "created_at": _iso(prediction.created_at),
            "started_at": _iso(prediction.started_at),
            "completed_at": _iso(prediction.completed_at),
            "urls": {
                "cancel": f"{api}/cancel",
                "get": api,
                "stream": f"{prediction.base_url}/v1/streams/{prediction.id}",  # not served
                "web": f"https://replicate.com/p/{prediction.id}",
            },
            "metrics": dict(prediction.metrics),
        }

    # -- plumbing ---------------------------------------------------------------------------

    def _authorized(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() in ("bearer", "token") and secrets.compare_digest(
            token.encode(), self.token.encode()
        )

    def _fault_body(self, status: int, message: str) -> dict[str, Any]:
        if status == 429:
            seconds = math.ceil(self.faults.retry_after)
            detail = f"Request was throttled. Expected available in {seconds} seconds."
            return {"title": "Request was throttled", "detail": detail, "status": 429}
        return {"title": HTTPStatus(status).phrase, "detail": message, "status": status}

    async def _gate(self, request: Request, endpoint: str, auth: bool = True) -> Response | None:
        """Auth, then the fault for this call; a hang ends when the client goes away."""
        self._loop = asyncio.get_running_loop()
        if auth and not self._authorized(request):
            return _problem(401, "You did not pass a valid authentication token", "Unauthenticated")
        injected = asyncio.ensure_future(self.faults.inject(endpoint, error_body=self._fault_body))
        try:
            while not injected.done():
                await asyncio.wait({injected}, timeout=POLL_SECONDS)
                if not injected.done() and await request.is_disconnected():
                    return Response(status_code=499)
            return injected.result()
        finally:
            injected.cancel()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _model(self, owner: str, name: str) -> FakeModel | None:
        return self.models.get(f"{owner}/{name}")

    def _by_version(self, reference: str) -> tuple[FakeModel | None, str]:
        ref, _, version_id = reference.partition(":")
        if "/" in ref:
            model = self.models.get(ref)
            if model is None or version_id not in ("", model.version_id):
                return None, ""
            return model, model.version_id
        for model in self.models.values():
            if model.version_id == reference:
                return model, reference
        return None, ""

    # -- endpoints --------------------------------------------------------------------------

    async def _get_model(self, request: Request) -> Response:
        if (refused := await self._gate(request, "model")) is not None:
            return refused
        model = self._model(request.path_params["owner"], request.path_params["name"])
        return _not_found() if model is None else JSONResponse(model.to_json())

    async def _get_version(self, request: Request) -> Response:
        if (refused := await self._gate(request, "model")) is not None:
            return refused
        model = self._model(request.path_params["owner"], request.path_params["name"])
        if model is None or request.path_params["version_id"] != model.version_id:
            return _not_found()
        return JSONResponse(model.version_json())

    async def _create_for_model(self, request: Request) -> Response:
        body = await request.body()  # read before _gate: it listens for a disconnect
        if (refused := await self._gate(request, "create")) is not None:
            return refused
        model = self._model(request.path_params["owner"], request.path_params["name"])
        if model is None:
            return _not_found()
        if not model.official:
            return _version_not_permitted()
        return await self._create(request, body, model, "hidden")

    async def _create_for_version(self, request: Request) -> Response:
        body = await request.body()
        if (refused := await self._gate(request, "create")) is not None:
            return refused
        version = (_json_object(body) or {}).get("version")
        if not isinstance(version, str) or not version:
            return _invalid(
                [{"type": "required", "field": "", "description": "version is required"}]
            )
        model, version_id = self._by_version(version)
        if model is None:
            return _version_not_permitted()
        return await self._create(request, body, model, version_id)

    async def _create(
        self, request: Request, raw: bytes, model: FakeModel, version: str
    ) -> Response:
        body = _json_object(raw)
        if body is None:
            return _problem(400, "The request body is not a JSON object", "Invalid JSON")
        payload = body.get("input", {})
        problems = validate_input(model, payload)
        events = body.get("webhook_events_filter")
        if events is not None and (
            not isinstance(events, list) or set(events) - set(WEBHOOK_EVENTS)
        ):
            options = ", ".join(json.dumps(event) for event in WEBHOOK_EVENTS)
            described = f"webhook_events_filter must be a list of: {options}"
            problems.append(
                {"type": "enum", "field": "webhook_events_filter", "description": described}
            )
        if problems:
            return _invalid(problems)
        run_seconds = (
            self._queued_run_seconds.pop(0) if self._queued_run_seconds else self.run_seconds
        )
        prediction = FakePrediction(
            id=_new_id(),
            model=model,
            version=version,
            input=payload,
            base_url=str(request.base_url).rstrip("/"),
            run_seconds=run_seconds,
            webhook=body.get("webhook"),
            webhook_completed=body.get("webhook_completed"),
            events=DEFAULT_WEBHOOK_EVENTS if events is None else frozenset(events),
        )
        self.predictions[prediction.id] = prediction
        self.created += 1
        self._emit(prediction, "start")
        self._spawn(self._drive(prediction))
        wait = _prefer_wait(request.headers.get("prefer"))
        if wait is not None:
            deadline = time.monotonic() + wait
            while not prediction.terminal and time.monotonic() < deadline:
                await asyncio.sleep(POLL_SECONDS)
                if await request.is_disconnected():
                    return Response(status_code=499)
        return JSONResponse(self.prediction_json(prediction), status_code=201)

    async def _list(self, request: Request) -> Response:
        if (refused := await self._gate(request, "list")) is not None:
            return refused
        newest_first = sorted(self.predictions.values(), key=lambda p: p.created_at, reverse=True)
        results = [self.prediction_json(p) for p in newest_first]
        return JSONResponse({"previous": None, "next": None, "results": results})

    async def _get(self, request: Request) -> Response:
        if (refused := await self._gate(request, "get")) is not None:
            return refused
        prediction = self.predictions.get(request.path_params["prediction_id"])
        return (
            _not_found() if prediction is None else JSONResponse(self.prediction_json(prediction))
        )

    async def _cancel(self, request: Request) -> Response:
        if (refused := await self._gate(request, "cancel")) is not None:
            return refused
        prediction = self.predictions.get(request.path_params["prediction_id"])
        if prediction is None:
            return _not_found()
        if not prediction.terminal:
            prediction.logs += "Prediction was canceled\n"
            self._settle(prediction, "canceled")
            prediction.wake.set()
        return JSONResponse(self.prediction_json(prediction))

    async def _secret(self, request: Request) -> Response:
        if (refused := await self._gate(request, "secret")) is not None:
            return refused
        return JSONResponse({"key": self.webhook_secret})

    async def _download(self, request: Request) -> Response:
        # Output files are public (replicate.delivery): no token needed.
        if (refused := await self._gate(request, "download", auth=False)) is not None:
            return refused
        path = f"{request.path_params['prediction_id']}/{request.path_params['name']}"
        stored = self._files.get(path)
        if stored is None:
            return Response("Not Found", status_code=404, media_type="text/plain")
        if self.predictions[stored.prediction_id].expired:
            return Response("Forbidden", status_code=403, media_type="text/plain")
        self.downloads[path] += 1
        return Response(stored.content, media_type=stored.content_type)

    # -- the run of a prediction ------------------------------------------------------------

    async def _pause(self, prediction: FakePrediction, seconds: float) -> None:
        limit = None if math.isinf(seconds) else seconds
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit):
                while not (prediction.finish_requested or prediction.terminal):
                    if prediction.steps_granted:  # ``step_now``: this pause is over
                        prediction.steps_granted -= 1
                        return
                    prediction.wake.clear()
                    await prediction.wake.wait()

    async def _drive(self, prediction: FakePrediction) -> None:
        await self._pause(
            prediction, min(prediction.run_seconds * QUEUED_SHARE, QUEUED_MAX_SECONDS)
        )
        if prediction.terminal:
            return
        seed = prediction.input.get("seed", secrets.randbelow(65536))
        prediction.status = "processing"
        prediction.started_at = datetime.now(UTC)
        self._log(prediction, f"Using seed: {seed}\n{self._progress_line(0)}")
        for step in range(1, STEPS + 1):
            await self._pause(prediction, prediction.run_seconds * (1 - QUEUED_SHARE) / STEPS)
            if prediction.terminal:
                return
            self._log(prediction, self._progress_line(step))
        await self._finish(prediction, seed)

    @staticmethod
    def _progress_line(step: int) -> str:
        bar = ("█" * (10 * step // STEPS)).ljust(10)
        return f"{100 * step // STEPS:3d}%|{bar}| {step}/{STEPS} [00:00<00:00, 8.00it/s]\n"

    def _log(self, prediction: FakePrediction, text: str) -> None:
        prediction.logs += text
        self._emit(prediction, "logs")

    async def _finish(self, prediction: FakePrediction, seed: int) -> None:
        model, params = prediction.model, with_defaults(prediction.model, prediction.input)
        prompt = str(params.get("prompt", "")).lower()
        try:
            if "forbidden" in prompt:
                raise ModelFailure(NSFW_ERROR)
            if "explode" in prompt:
                raise ModelFailure(CRASH_ERROR)
            source = None
            if model.source_field and params.get(model.source_field):
                source = await load_image(params[model.source_field])
            sizes, extension = model.plan(params, source)
            contents = await asyncio.to_thread(
                render_outputs,
                sizes,
                extension,
                f"{prompt}/{seed}",
                int(params.get("output_quality", 80)),
                source,
                int(params.get("duration", 5)),
            )
        except ModelFailure as failure:
            if not prediction.terminal:
                prediction.error = str(failure)
                prediction.logs += f"Traceback (most recent call last):\n{failure}\n"
                self._settle(prediction, "failed")
            return
        if prediction.terminal:  # canceled while rendering
            return
        urls = []
        for index, content in enumerate(contents):
            name = f"out-{index}.{extension}"
            self._files[f"{prediction.id}/{name}"] = StoredFile(
                prediction.id, content, CONTENT_TYPES[extension]
            )
            urls.append(f"{prediction.base_url}/files/{prediction.id}/{name}")
        is_list = model.openapi_schema["components"]["schemas"]["Output"]["type"] == "array"
        prediction.output = urls if is_list else urls[0]
        prediction.logs += f"Generated {len(urls)} output(s) in {prediction.run_seconds:.2f}s\n"
        self._emit(prediction, "output")
        if extension != "mp4":
            prediction.metrics["image_count"] = len(urls)
        self._settle(prediction, "succeeded")

    def _settle(self, prediction: FakePrediction, status: str) -> None:
        """Enter a terminal state (visible to polls at once), then tell the webhook."""
        prediction.status = status
        prediction.completed_at = datetime.now(UTC)
        if prediction.started_at is not None:
            predict = (prediction.completed_at - prediction.started_at).total_seconds()
            prediction.metrics["predict_time"] = round(predict, 6)
        total = (prediction.completed_at - prediction.created_at).total_seconds()
        prediction.metrics["total_time"] = round(total, 6)
        prediction.files_expire_at = time.monotonic() + self.url_ttl_seconds
        prediction.settled.set()
        self._emit(prediction, "completed")

    # -- webhooks ---------------------------------------------------------------------------

    def _emit(self, prediction: FakePrediction, event: str) -> None:
        targets = []
        if prediction.webhook and event in prediction.events:
            targets.append(prediction.webhook)
        if prediction.webhook_completed and event == "completed":
            targets.append(prediction.webhook_completed)
        if not targets or not self.webhooks_enabled:
            return
        body = json.dumps(self.prediction_json(prediction))  # the state at the event
        webhook_id = "msg_" + _new_id()
        for url in targets:
            self._spawn(
                deliver(self, prediction.delivery_lock, prediction.id, event, url, webhook_id, body)
            )
