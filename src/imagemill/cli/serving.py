"""``imagemill serve`` and ``imagemill worker``: the long-running processes."""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from imagemill import __version__
from imagemill.cli.running import announced
from imagemill.config import Settings
from imagemill.telemetry import tracing

if TYPE_CHECKING:
    pass

from imagemill.cli.common import (
    DataDirOption,
    LogLevelOption,
    _database,
    _settings,
    app,
    console,
    err_console,
)


@app.command()
def serve(
    host: Annotated[
        str | None,
        typer.Option(
            help="Address to bind (default 127.0.0.1). Any non-loopback address requires API keys.",
            show_default=False,
        ),
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Port (default 8000).", show_default=False)
    ] = None,
    data_dir: DataDirOption = None,
    workers: Annotated[
        bool | None,
        typer.Option(
            "--workers/--no-workers",
            help="Run job workers in this process (default: yes).",
            show_default=False,
        ),
    ] = None,
    log_level: LogLevelOption = None,
) -> None:
    """Run the API, the workers and the web studio in one process."""
    import uvicorn

    from imagemill import logs
    from imagemill.api.app import create_app

    settings = _settings(data_dir, host=host, port=port, workers=workers, log_level=log_level)
    if settings.keys_required and not asyncio.run(_active_keys(settings)):
        err_console.print(
            f"[bold red]error:[/] binding to {escape(settings.host)} requires API keys and "
            "there are none yet. Create one first:\n\n    imagemill keys create NAME\n"
        )
        raise typer.Exit(2)
    shown_host = f"[{settings.host}]" if ":" in settings.host else settings.host
    url = (settings.public_url or f"http://{shown_host}:{settings.port}").rstrip("/")
    console.print(
        f"imagemill {__version__}: studio at {url}/  API at {url}/v1  docs at {url}/docs",
        soft_wrap=True,
    )
    tracing.configure()  # spans over OTLP where OpenTelemetry's environment asks for them
    loopback = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else shown_host
    here = f"http://{loopback}:{settings.port}"
    with announced(settings.data_dir, here, keys_required=settings.keys_required):
        uvicorn.run(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            log_config=logs.config(settings),
            log_level=settings.log_level,
            # asyncio's loop, not uvloop: libuv reads a socket up to 32 times per wake-up
            # before a paused reader can stop it, so each provider answer waiting for the
            # response budget (``imagemill.memory``) had megabytes read in ahead of it.
            loop="asyncio",
        )


async def _active_keys(settings: Settings) -> int:
    from imagemill.db.accounts import Accounts

    async with _database(settings) as db:
        return await Accounts(db).active_key_count()


@app.command(
    help="Run job workers only, no HTTP: as many processes, on as many machines, as needed. "
    "They take jobs from the broker (IMAGEMILL_BROKER_URL, amqp:// or redis://) and share "
    "the database and storage of the API servers (`imagemill serve --no-workers`). SIGTERM or "
    "Ctrl-C finishes nothing half-way: running jobs go back to the queue."
)
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=1024,
            help="Jobs on local models at once (default 8; IMAGEMILL_WORKER_CONCURRENCY).",
            show_default=False,
        ),
    ] = None,
    hosted_concurrency: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=100_000,
            help="Jobs on hosted providers in flight at once (default 10000; "
            "IMAGEMILL_HOSTED_CONCURRENCY).",
            show_default=False,
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="Serve this worker's Prometheus metrics at http://HOST:PORT/metrics (HOST: "
            "--metrics-host); the jobs it runs are counted here, not by the API servers.",
            show_default=False,
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(help="Address the metrics port binds to.")
    ] = "127.0.0.1",
    data_dir: DataDirOption = None,
    log_level: LogLevelOption = None,
) -> None:
    from imagemill import logs

    settings = _settings(
        data_dir,
        worker_concurrency=concurrency,
        hosted_concurrency=hosted_concurrency,
        log_level=log_level,
    )
    logs.configure(settings)
    tracing.configure()
    if settings.broker_url.startswith("memory://"):
        err_console.print(
            "[bold red]error:[/] a separate worker needs a shared broker: set "
            "IMAGEMILL_BROKER_URL to amqp://… or redis://… (and the same on the servers)."
        )
        raise typer.Exit(2)
    asyncio.run(_work(settings, (metrics_host, metrics_port) if metrics_port else None))


async def _work(settings: Settings, metrics_at: tuple[str, int] | None = None) -> None:
    from imagemill.runtime import Runtime

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stopping.set)
    async with Runtime(settings, run_workers=True) as runtime:
        if metrics_at is not None:
            runtime.metrics.serve(*metrics_at)
        console.print(
            f"imagemill {__version__} worker: {settings.hosted_concurrency} hosted and "
            f"{settings.worker_concurrency} local jobs at once, "
            f"from {make_url_safe(settings.broker_url)}",
            soft_wrap=True,
        )
        await stopping.wait()
    console.print("worker stopped; running jobs went back to the queue")


def make_url_safe(url: str) -> str:
    """``url`` without its password, for printing."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]
