"""The ``imagemill`` command line (typer + rich): serve, generate, jobs, models, keys, db.

Commands that read or make jobs go through the SDK, one code path in both modes: with
``--server URL`` over HTTP, otherwise in-process: a ``Runtime`` on the data dir, the
app around it, and the SDK's ``AsyncClient`` talking to the app through
``httpx.ASGITransport``. ``keys create`` and ``db upgrade`` work on the database itself.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from imagemill import __version__
from imagemill.client import AsyncClient, ClientError, Job, JobFilters
from imagemill.config import Settings
from imagemill.domain import CachePolicy, JobStatus, ModelSpec

if TYPE_CHECKING:
    from imagemill.db.engine import Database

T = TypeVar("T")
IN_PROCESS_URL = "http://imagemill.local"
POLL_INTERVAL = 0.1  # seconds between progress polls; in-process polls are cheap

app = typer.Typer(
    name="imagemill",
    no_args_is_help=True,
    add_completion=False,
)
jobs_app = typer.Typer(help="List, inspect and cancel jobs.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
db_app = typer.Typer(help="Manage the database schema.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")

console = Console()
err_console = Console(stderr=True)

ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        metavar="URL",
        envvar="IMAGEMILL_URL",
        help="URL of a running imagemill server. Without it the command runs in-process "
        "on the data dir.",
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
    return Settings(**given)


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; an SDK error becomes a message and exit status 1."""
    try:
        return asyncio.run(coroutine)
    except ClientError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(1) from exc


@asynccontextmanager
async def _connect(
    server: str | None, api_key: str | None, data_dir: Path | None, *, run_workers: bool = False
) -> AsyncIterator[AsyncClient]:
    """The SDK, talking to ``server`` or to an app started here on the data dir."""
    if server:
        async with AsyncClient(server, api_key=api_key) as client:
            yield client
        return
    from imagemill.api.app import create_app  # the server side, only needed in-process
    from imagemill.runtime import Runtime

    # Nothing listens on a network here, so no key is required; a key given picks its owner.
    # No sweeper: this short-lived process must not take over jobs queued for a server.
    settings = _settings(data_dir, require_keys=False)
    async with Runtime(settings, run_workers=run_workers, sweep=False) as runtime:
        server_app = create_app(runtime=runtime)
        transport = httpx.ASGITransport(app=server_app)
        async with (
            server_app.router.lifespan_context(server_app),
            AsyncClient(IN_PROCESS_URL, api_key=api_key, transport=transport) as client,
        ):
            yield client


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


# -- serve ------------------------------------------------------------------------------------


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
) -> None:
    """Run the API, the workers and the web studio in one process."""
    import uvicorn

    from imagemill.api.app import create_app

    settings = _settings(data_dir, host=host, port=port, workers=workers)
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
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")


async def _active_keys(settings: Settings) -> int:
    from imagemill.db.accounts import Accounts

    async with _database(settings) as db:
        return await Accounts(db).active_key_count()


# -- generate ---------------------------------------------------------------------------------


def _parse_params(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; a value is JSON when it parses as JSON, else the plain string."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected key=value, got {pair!r}", param_hint="--param")
        try:
            params[key.strip()] = json.loads(raw)
        except ValueError:
            params[key.strip()] = raw
    return params


@app.command()
def generate(
    prompt: Annotated[
        str, typer.Argument(metavar="PROMPT", help="What to draw.", show_default=False)
    ],
    model: Annotated[
        str, typer.Option("--model", "-m", help="Model id or alias; `imagemill models` lists them.")
    ] = "placeholder",
    n: Annotated[int, typer.Option("-n", "--n", min=1, max=10, help="How many images.")] = 1,
    size: Annotated[
        str | None,
        typer.Option(
            metavar="WxH",
            help="Exact size WIDTHxHEIGHT, e.g. 1920x1080 (default: the model's).",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(min=0, help="Same seed, same image.", show_default=False)
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            metavar="KEY=VALUE",
            help="A model param as key=value, repeatable; the value is "
            'read as JSON when it parses (5, true, "text"), else as text.',
            show_default=False,
        ),
    ] = None,
    negative_prompt: Annotated[
        str | None, typer.Option(help="What to keep out of the image.", show_default=False)
    ] = None,
    cache: Annotated[
        CachePolicy,
        typer.Option(
            help="auto: reuse an identical seeded request; use: reuse any identical "
            "request; bypass: always generate."
        ),
    ] = CachePolicy.AUTO,
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", metavar="DIR", file_okay=False, help="Directory for the images."
        ),
    ] = Path("."),
    timeout: Annotated[
        float, typer.Option(min=0, help="Seconds to wait for the job before giving up.")
    ] = 600.0,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Generate images and save them as DIR/<job_id>-<index>.<ext>."""
    params = _parse_params(param or [])

    async def run() -> list[Path]:
        async with _connect(server, api_key, data_dir, run_workers=True) as client:
            with Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                console=err_console,
                transient=True,
            ) as progress:
                bar = progress.add_task("submitting", total=1.0)

                def on_update(job: Job) -> None:
                    note = f" {job.progress_message}" if job.progress_message else ""
                    progress.update(bar, completed=job.progress, description=f"{job.status}{note}")

                job = await client.generate(
                    prompt,
                    model=model,
                    n=n,
                    size=size,
                    seed=seed,
                    params=params,
                    negative_prompt=negative_prompt,
                    cache=cache.value,
                    timeout=timeout,
                    poll_interval=POLL_INTERVAL,
                    on_update=on_update,
                )
            paths = await client.jobs.save_outputs(job, output)
        err_console.print(
            f"job {job.id} {job.status} in {_seconds(job.timings.total_seconds)}, "
            f"cost ${job.cost_usd:.4f}" + (" (cached)" if job.cached else "")
        )
        return paths

    for path in _run(run()):
        console.print(str(path), highlight=False, soft_wrap=True)


# -- jobs -------------------------------------------------------------------------------------


@jobs_app.command("ls")
def jobs_ls(
    status: Annotated[
        JobStatus | None, typer.Option(help="Only jobs in this state.", show_default=False)
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Only jobs of this model.", show_default=False)
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=200, help="How many jobs, newest first.")] = 20,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """List your jobs, newest first."""

    filters: JobFilters = {"limit": limit}
    if status is not None:
        filters["status"] = status.value
    if model:
        filters["model"] = model
    jobs = _with_client(server, api_key, data_dir, lambda client: client.jobs.list(**filters)).data
    table = Table(box=None)
    # Ids and states are never cut; the model and prompt give way on a narrow terminal.
    table.add_column("id", no_wrap=True, min_width=max((len(job.id) for job in jobs), default=2))
    table.add_column("status", no_wrap=True, min_width=len(JobStatus.SUCCEEDED))
    table.add_column("images", no_wrap=True, justify="right", min_width=6)
    table.add_column("created", no_wrap=True, min_width=11)
    table.add_column("model", no_wrap=True, overflow="ellipsis")
    table.add_column("prompt", no_wrap=True, overflow="ellipsis")
    for job in jobs:
        created = job.created_at.astimezone().strftime("%m-%d %H:%M")
        prompt = escape(" ".join(job.request.prompt.split()))
        table.add_row(job.id, _status(job), str(len(job.outputs)), created, job.model, prompt)
    console.print(table if jobs else "no jobs")


@jobs_app.command("show")
def jobs_show(
    job_id: JobIdArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Print the job as JSON.")] = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Show one job: request, status, outputs, cost, timings and error."""

    job = _with_client(server, api_key, data_dir, lambda client: client.jobs.get(job_id))
    if as_json:
        typer.echo(job.model_dump_json(indent=2))
        return
    request = job.request
    details = Table.grid(padding=(0, 2))
    rows = [
        ("id", job.id),
        ("status", _status(job) + (f" ({job.progress:.0%})" if not job.done else "")),
        ("model", job.model),
        ("kind", job.kind.value),
        ("prompt", escape(request.prompt)),
        ("negative prompt", escape(request.negative_prompt or "")),
        ("size", request.size or "model default"),
        ("n", str(request.n)),
        ("seed", "random" if request.seed is None else str(request.seed)),
        ("params", escape(json.dumps(request.params)) if request.params else ""),
        ("attempts", f"{job.attempt} of {job.max_attempts}"),
        ("cost", f"${job.cost_usd:.4f}" + (" (cached)" if job.cached else "")),
        ("created", _when(job.created_at)),
        ("started", _when(job.started_at)),
        ("finished", _when(job.finished_at)),
        ("queued for", _seconds(job.timings.queued_seconds)),
        ("ran for", _seconds(job.timings.running_seconds)),
    ]
    if job.error is not None:
        rows.append(("error", f"[red]{escape(job.error.code)}[/]: {escape(job.error.message)}"))
    for name, value in rows:
        if value:
            details.add_row(f"[bold]{name}[/]", value)
    console.print(details)
    if job.outputs:
        outputs = Table("#", "asset", "size", "type", "bytes", "seed", "made by", box=None)
        outputs.columns[1].no_wrap = True
        for out in job.outputs:
            made_by = out.model + (" (fallback)" if out.fallback else "")
            seed = "" if out.seed is None else str(out.seed)
            size = f"{out.width}x{out.height}"
            row = (str(out.index), out.asset_id, size, out.content_type, str(out.byte_size), seed)
            outputs.add_row(*row, made_by)
        console.print(outputs)


@jobs_app.command("cancel")
def jobs_cancel(
    job_id: JobIdArgument,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Cancel a queued or running job (an error if it already finished)."""

    job = _with_client(server, api_key, data_dir, lambda client: client.jobs.cancel(job_id))
    console.print(f"job {job.id} {_status(job)}")


# -- models -----------------------------------------------------------------------------------


@app.command()
def models(
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """List every model: what it can do, whether it is available, and its price."""

    specs = _with_client(server, api_key, data_dir, lambda client: client.models.list())
    table = Table("id", "kinds", "available", "price", box=None)
    for spec in specs:
        available = (
            "yes" if spec.available else f"[red]no[/] {escape(spec.unavailable_reason or '')}"
        )
        table.add_row(spec.id, ", ".join(spec.kinds), available, _price(spec))
    table.columns[0].no_wrap = True
    console.print(table)


def _price(spec: ModelSpec) -> str:
    pricing = spec.pricing
    prices = [pricing.per_image, *pricing.by_size.values()]
    if not any(prices):
        return "free"
    low, high = min(prices), max(prices)
    span = f"{low:g}" if low == high else f"{low:g}-{high:g}"
    return f"{span} {pricing.currency}/image"


# -- keys, db ---------------------------------------------------------------------------------


@keys_app.command("create")
def keys_create(
    name: Annotated[
        str,
        typer.Argument(help="A name for the key, e.g. the person or machine.", show_default=False),
    ],
    owner: Annotated[
        str | None,
        typer.Option(
            help="Owner of the key and of everything made with it, created if new "
            "(default: NAME). Jobs made without a key belong to the owner 'local'.",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Create an API key and print it. It is shown this once: only its hash is stored."""
    from imagemill.auth import new_key
    from imagemill.db.accounts import Accounts
    from imagemill.jobs.service import utcnow

    async def run() -> tuple[str, str]:
        async with _database(_settings(data_dir)) as db:
            accounts = Accounts(db)
            account = await accounts.owner_named(owner or name, utcnow())
            key = new_key()
            await accounts.add_key(account.id, name, key.prefix, key.key_hash, utcnow())
            return account.name, key.plaintext

    owner_name, plaintext = _run(run())
    err_console.print(
        f"created key {escape(name)!r} for owner {escape(owner_name)!r}. "
        "Copy it now, it is not shown again:"
    )
    console.print(plaintext, highlight=False, soft_wrap=True)


@db_app.command("upgrade")
def db_upgrade(data_dir: DataDirOption = None) -> None:
    """Bring the database schema to the latest version (the server also does this at start)."""
    from sqlalchemy.engine import make_url

    from imagemill.db.migrate import current_revision

    settings = _settings(data_dir)

    async def run() -> str | None:
        async with _database(settings) as db:
            return await current_revision(db)

    revision = _run(run())
    url = make_url(settings.resolved_database_url).render_as_string(hide_password=True)
    console.print(f"database {url} at revision {revision}", highlight=False, soft_wrap=True)


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


def _version(value: bool) -> None:
    if value:
        console.print(f"imagemill {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool | None,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = None,
) -> None:
    """imagemill: one API, CLI and studio over every image model, with durable jobs."""


def main() -> None:
    """The ``imagemill`` console script."""
    app()


if __name__ == "__main__":
    main()
