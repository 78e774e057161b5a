"""Logging for the long-running processes: one level for imagemill's own loggers and
uvicorn's (``IMAGEMILL_LOG_LEVEL`` or ``--log-level``), one handler on standard error,
and no secret in any line, whatever library wrote it.

Two formats (``IMAGEMILL_LOG_FORMAT``): ``console``, a line for people, and ``json``,
one JSON object a line for log pipelines: ``time``, ``level``, ``logger``, ``message``,
and the facts a line carries (``request_id`` on every line written while an HTTP
request is handled, ``job_id``, ``owner_id``, ``model``, ``attempt``, ``status``,
``duration_ms``, ``cost_usd``, ``error_code``, ``outcome``; ``exception`` with a
traceback). Each request's id is the client's ``X-Request-Id`` when it sent a sane one,
else a new one, and is echoed in the answer's ``X-Request-Id`` (``api/request_ids.py``).

Every record passes ``Redact`` before it is written: the secrets the settings hold
(provider keys and tokens, passwords in the database, broker and storage settings) are
blanked out wherever they appear, as are things shaped like credentials (bearer tokens,
imagemill keys, webhook signing secrets), in the message and in a traceback's text.
At ``debug`` the libraries' own loggers (httpx, the provider SDKs) speak too.
"""

from __future__ import annotations

import json
import logging
import logging.config
import logging.handlers
import queue
import re
import sys
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import make_url

from imagemill.config import Settings

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
LIBRARY_LEVEL = "WARNING"  # other libraries' loggers, unless imagemill's level is DEBUG
# Shapes of credentials, whoever logs them: a bearer token, an imagemill key, a Standard
# Webhooks secret, and the API keys of the providers imagemill speaks to.
_CREDENTIAL_SHAPES = re.compile(
    r"(?P<scheme>(?i:bearer)\s+)[A-Za-z0-9._~+/=-]{8,}"
    r"|\bim_[A-Za-z0-9_-]{16,}"
    r"|\bwhsec_[A-Za-z0-9+/=]{16,}"
    r"|\bsk-[A-Za-z0-9_-]{16,}"
    r"|\br8_[A-Za-z0-9]{16,}"
    r"|\bAIza[A-Za-z0-9_-]{30,}"
)
REDACTED = "[redacted]"
#: The id of the HTTP request being handled, for the log lines written meanwhile.
REQUEST_ID: ContextVar[str | None] = ContextVar("imagemill_request_id", default=None)
#: What a JSON line carries besides its message, where the record has it.
FACTS = (
    "request_id",
    "job_id",
    "owner_id",
    "model",
    "kind",
    "status",
    "attempt",
    "duration_ms",
    "cost_usd",
    "error_code",
    "outcome",
)


class RequestIds(logging.Filter):
    """Puts the id of the request being handled (``REQUEST_ID``) on the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = REQUEST_ID.get()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True


class JsonLines(logging.Formatter):
    """A record as one JSON object on one line (``IMAGEMILL_LOG_FORMAT=json``)."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        line: dict[str, Any] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FACTS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, default=str, ensure_ascii=False)


class Redact(logging.Filter):
    """Blanks the given secrets, and anything shaped like a credential, out of a record."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first, so a secret containing another is blanked whole.
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return _CREDENTIAL_SHAPES.sub(rf"\g<scheme>{REDACTED}", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def secrets_of(settings: Settings) -> list[str]:
    """Every secret the settings hold: keys, tokens, and passwords inside URLs and options."""
    found = [
        value.get_secret_value()
        for value in (
            settings.openai_api_key,
            settings.gemini_api_key,
            settings.replicate_api_token,
            settings.replicate_webhook_secret,
            settings.recraft_api_key,
        )
        if value is not None
    ]
    for url in (
        settings.database_url,
        settings.broker_url,
        settings.storage_url,
        settings.rate_limit_storage_url,
    ):
        password = _password(url)
        if password:
            found.append(password)
    for key, value in settings.storage_options.items():
        if isinstance(value, str) and any(w in key.lower() for w in ("secret", "key", "token")):
            found.append(value)
    return found


def _password(url: str | None) -> str | None:
    if not url:
        return None
    try:
        password = make_url(url).password
        return str(password) if password else None
    except Exception:  # not a URL SQLAlchemy reads (a path, memory://): no password in it
        return None


class Background(logging.handlers.QueueHandler):
    """Writes to standard error from a thread of its own: the thread that logs (the event
    loop, a few lines a job) only puts the record on a queue; ``Redact``, the format and
    the write happen on the writer's thread, so a slow reader of standard error (a full
    pipe to a log collector) never stalls the event loop. Closing it (at exit, or when
    logging is configured again) writes what is queued first."""

    def __init__(self, secrets: Iterable[str] = (), json_lines: bool = False) -> None:
        super().__init__(queue.SimpleQueue())
        target = logging.StreamHandler(sys.stderr)
        target.setFormatter(JsonLines() if json_lines else logging.Formatter(FORMAT))
        target.addFilter(Redact(secrets))
        self.listener: logging.handlers.QueueListener | None = logging.handlers.QueueListener(
            self.queue, target
        )
        self.listener.start()

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record  # one process: the record itself, formatted by the writer

    def close(self) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.stop()  # what is queued is written first
        super().close()


def config(settings: Settings) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for a server or worker process (and uvicorn's
    ``log_config``): everything to standard error through ``Redact``, written by a
    thread of its own (``Background``)."""
    level = settings.log_level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIds}},
        "handlers": {
            "stderr": {
                "()": Background,
                "secrets": secrets_of(settings),
                "json_lines": settings.log_format == "json",
                "filters": ["request_id"],  # here: the request's id is this thread's
            }
        },
        "root": {"handlers": ["stderr"], "level": level if level == "DEBUG" else LIBRARY_LEVEL},
        "loggers": {
            name: {"level": level, "handlers": [], "propagate": True}
            for name in ("imagemill", "uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }


def configure(settings: Settings) -> None:
    """Set up logging for this process from ``settings`` (``imagemill worker``)."""
    logging.config.dictConfig(config(settings))
