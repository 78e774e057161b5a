"""The Python SDK: ``Client`` (sync) and ``AsyncClient`` (async) over the HTTP API.

Every operation is written once, as a sans-IO generator: it yields the steps it needs
(an HTTP call, a pause, a callback) and returns the parsed result. The two clients
differ only in how they perform a step (``httpx.Client`` and ``time.sleep``, or
``httpx.AsyncClient`` and ``asyncio.sleep``), so each resource is declared once and is
typed for both::

    with imagemill.Client() as client:          # IMAGEMILL_URL, IMAGEMILL_API_KEY
        job = client.generate("a lighthouse at dusk", size="640x480", seed=7)
        client.jobs.save_outputs(job, "out/")

    async with imagemill.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        job = await client.jobs.create(model="placeholder", prompt="a fox")
        job = await client.jobs.wait(job.id, on_update=print)

    for event in client.jobs.events(job.id):     # live, resumed if the connection drops
        print(event.type, event.data)

Everything the SDK raises on purpose::

    ClientError
    ├── APIError(status_code, code, message, field)   the server answered with an error
    │   ├── InvalidRequestError      400, 422
    │   ├── AuthenticationError      401
    │   ├── PermissionDeniedError    403
    │   ├── NotFoundError            404
    │   ├── ConflictError            409
    │   ├── RateLimitError           429 (retry_after)
    │   └── ServerError              5xx
    ├── APIConnectionError           the server could not be reached, or did not answer in time
    ├── JobFailed(job)               the job ended failed or canceled (``generate``)
    └── WaitTimeout(job)             ``wait`` ran out of time; the job itself goes on
"""

from imagemill.client.clients import (
    DEFAULT_TIMEOUT,
    DEFAULT_URL,
    AsyncClient,
    Client,
)
from imagemill.client.errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    ClientError,
    ConflictError,
    InvalidRequestError,
    JobFailed,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    WaitTimeout,
)
from imagemill.client.operations import DEFAULT_POLL_INTERVAL, DEFAULT_WAIT_TIMEOUT
from imagemill.client.wire import (
    Asset,
    Batch,
    Event,
    Group,
    Job,
    JobError,
    JobFilters,
    ModelInfo,
    Output,
    Page,
    Preset,
    PresetChanges,
    PresetFields,
    SubmissionFields,
    Timings,
)

__all__ = [
    "DEFAULT_POLL_INTERVAL",
    "DEFAULT_TIMEOUT",
    "DEFAULT_URL",
    "DEFAULT_WAIT_TIMEOUT",
    "APIConnectionError",
    "APIError",
    "Asset",
    "AsyncClient",
    "AuthenticationError",
    "Batch",
    "Client",
    "ClientError",
    "ConflictError",
    "Event",
    "Group",
    "InvalidRequestError",
    "Job",
    "JobError",
    "JobFailed",
    "JobFilters",
    "ModelInfo",
    "NotFoundError",
    "Output",
    "Page",
    "PermissionDeniedError",
    "Preset",
    "PresetChanges",
    "PresetFields",
    "RateLimitError",
    "ServerError",
    "SubmissionFields",
    "Timings",
    "WaitTimeout",
]
