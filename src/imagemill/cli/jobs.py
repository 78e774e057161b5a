"""``imagemill jobs``: list, show, watch, cancel and retry jobs."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from imagemill.client import (
    JobFilters,
)
from imagemill.domain import JobStatus
from imagemill.watch import Bars, follow, follow_all

if TYPE_CHECKING:
    pass

from imagemill.cli.common import (
    ApiKeyOption,
    DataDirOption,
    JobIdArgument,
    ServerOption,
    _connect,
    _run,
    _seconds,
    _status,
    _when,
    _with_client,
    console,
    jobs_app,
    shown,
)


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
        prompt = shown(" ".join(job.request.prompt.split()))
        table.add_row(job.id, _status(job), str(len(job.outputs)), created, job.model, prompt)
    console.print(table if jobs else "no jobs")


@jobs_app.command(
    "watch",
    help="Follow jobs live: a progress bar per job, errors and logs as they happen. With an "
    "ID, until that job is done (exit status 1 unless it succeeded); without, every job of "
    "yours, including ones submitted later, until Ctrl-C.",
)
def jobs_watch(
    job_id: Annotated[
        str | None,
        typer.Argument(
            metavar="[ID]",
            help="The job to follow (default: all of yours, from now on).",
            show_default=False,
        ),
    ] = None,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    data_dir: DataDirOption = None,
) -> None:
    async def run() -> str | None:
        async with _connect(server, api_key, data_dir) as client:
            with Bars(console, transient=False) as bars:
                if job_id is None:
                    await follow_all(client, bars)
                    return None
                return (await follow(client, [job_id], bars))[job_id]

    try:
        status = _run(run())
    except KeyboardInterrupt:
        return
    if status is not None and status != JobStatus.SUCCEEDED:
        raise typer.Exit(1)


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
        ("prompt", shown(request.prompt)),
        ("negative prompt", shown(request.negative_prompt or "")),
        ("size", request.size or "model default"),
        ("n", str(request.n)),
        ("seed", "random" if request.seed is None else str(request.seed)),
        ("params", shown(json.dumps(request.params)) if request.params else ""),
        ("attempts", f"{job.attempt} of {job.max_attempts}"),
        ("cost", f"${job.cost_usd:.4f}" + (" (cached)" if job.cached else "")),
        ("created", _when(job.created_at)),
        ("started", _when(job.started_at)),
        ("finished", _when(job.finished_at)),
        ("queued for", _seconds(job.timings.queued_seconds)),
        ("ran for", _seconds(job.timings.running_seconds)),
    ]
    if job.error is not None:
        rows.append(("error", f"[red]{shown(job.error.code)}[/]: {shown(job.error.message)}"))
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


@jobs_app.command("retry")
def jobs_retry(
    job_id: JobIdArgument,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Run a failed or canceled job again, as the same job (an error for any other)."""

    job = _with_client(server, api_key, data_dir, lambda client: client.jobs.retry(job_id))
    console.print(f"job {job.id} {_status(job)}")
