"""What the commands share: the typer apps, console, options, settings, and how a
command reaches the service (``--server URL``, or in-process on the data dir)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from imagemill.cli.running import running_server
from imagemill.client import (
    AsyncClient,
    ClientError,
    Job,
)
from imagemill.config import Settings
from imagemill.domain import JobStatus
from imagemill.errors import ImagemillError

if TYPE_CHECKING:
    from imagemill.db.engine import Database

T = TypeVar("T")

# Control characters but line breaks and tabs: an escape sequence in a stored prompt must
# not reach the terminal (colours, a changed title, a cleared screen).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def shown(text: str) -> str:
    """Text from a user or a server, ready to print: Rich markup escaped, and each control
    character (ESC included) written as ``\\uXXXX``."""
    return escape(_CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text))


app = typer.Typer(
    name="imagemill",
    no_args_is_help=True,
    add_completion=False,
)
jobs_app = typer.Typer(help="List, inspect, watch and cancel jobs.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
db_app = typer.Typer(help="Manage the database schema.", no_args_is_help=True)
budgets_app = typer.Typer(
    help="Spending limits per API key or per owner, in US dollars per UTC day, week, month "
    "or in total: requests that would pass one are refused (402).",
    no_args_is_help=True,
)
app.add_typer(jobs_app, name="jobs")
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
app.add_typer(budgets_app, name="budgets")

console = Console()
err_console = Console(stderr=True)

ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        metavar="URL",
        envvar="IMAGEMILL_URL",
        help="URL of a running imagemill server. Without it the command talks to the "
        "server running on the data dir, or runs in-process on it when none is.",
        show_default=False,
    ),
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        metavar="KEY",
        envvar="IMAGEMILL_API_KEY",
        help="API key (from `imagemill keys create`). Needed for servers not bound to loopback.",
        show_default=False,
    ),
]
JobIdArgument = Annotated[
    str, typer.Argument(metavar="JOB_ID", help="The job's id (job_…).", show_default=False)
]
LogLevelOption = Annotated[
    str | None,
    typer.Option(
        "--log-level",
        metavar="LEVEL",
        help="debug, info, warning, error or critical (default: IMAGEMILL_LOG_LEVEL, or "
        "info). Secrets never appear, at any level.",
        show_default=False,
    ),
]
DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        metavar="DIR",
        envvar="IMAGEMILL_DATA_DIR",
        file_okay=False,
        help="Where the embedded database and images live (default: ~/.imagemill).",
        show_default=False,
    ),
]


def _settings(data_dir: Path | None, **overrides: Any) -> Settings:
    """Settings from the environment, with the options the user gave on top."""
    given = {k: v for k, v in {"data_dir": data_dir, **overrides}.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else ""
            where = Settings.env_name(name) if name in Settings.model_fields else "a setting"
            message = str(error["msg"]).removeprefix("Value error, ")
            err_console.print(f"[bold red]error:[/] {where}: {shown(message)}", soft_wrap=True)
        raise typer.Exit(2) from exc


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; an SDK error (or, for commands working on the database
    itself, an imagemill error) becomes a message and exit status 1."""
    try:
        return asyncio.run(coroutine)
    except (ClientError, ImagemillError) as exc:
        err_console.print(f"[bold red]error:[/] {shown(str(exc))}", soft_wrap=True)
        raise typer.Exit(1) from exc


@asynccontextmanager
async def _connect(
    server: str | None, api_key: str | None, data_dir: Path | None, *, run_workers: bool = False
) -> AsyncIterator[AsyncClient]:
    """The SDK, talking to ``server``, else to the server running on the data dir
    (``cli/running.py``), else to an app started here on the data dir."""
    settings = _settings(data_dir, require_keys=False)
    server = server or running_server(settings.data_dir, with_key=api_key is not None)
    if server:
        async with AsyncClient(server, api_key=api_key) as client:
            yield client
        return
    from imagemill.api.app import create_app  # the server side, only needed in-process
    from imagemill.runtime import Runtime

    # Served on a loopback port of this process for as long as the command runs, so
    # event streams flow live (an in-memory transport would hold them to the end).
    # Keyless like any loopback server; a key given picks its owner. No sweeper: this
    # short-lived process must not take over jobs queued for a server.
    async with Runtime(settings, run_workers=run_workers, sweep=False) as runtime:
        server_app = create_app(runtime=runtime)
        async with (
            server_app.router.lifespan_context(server_app),
            _loopback(server_app) as url,
            AsyncClient(url, api_key=api_key) as client,
        ):
            yield client


@asynccontextmanager
async def _loopback(server_app: Any) -> AsyncIterator[str]:
    """``server_app`` served on a free port of 127.0.0.1 in this event loop; its URL."""
    import uvicorn

    config = uvicorn.Config(
        server_app, host="127.0.0.1", port=0, lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.005)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


def _with_client(
    server: str | None,
    api_key: str | None,
    data_dir: Path | None,
    action: Callable[[AsyncClient], Awaitable[T]],
) -> T:
    """Run ``action`` with the SDK connected as the options say; errors exit with status 1."""

    async def run() -> T:
        async with _connect(server, api_key, data_dir) as client:
            return await action(client)

    return _run(run())


@asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[Database]:
    """The database at the latest schema."""
    from imagemill.db.engine import Database
    from imagemill.db.migrate import upgrade

    db = Database(settings.resolved_database_url)
    try:
        await upgrade(db)
        yield db
    finally:
        await db.dispose()


# -- formatting -------------------------------------------------------------------------------

_STATUS_STYLE = {
    JobStatus.QUEUED: "yellow",
    JobStatus.RUNNING: "cyan",
    JobStatus.SUCCEEDED: "green",
    JobStatus.FAILED: "red",
    JobStatus.CANCELED: "dim",
}


def _status(job: Job) -> str:
    return f"[{_STATUS_STYLE[job.status]}]{job.status.value}[/]"


def _when(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.2f} s"
