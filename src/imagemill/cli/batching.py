"""``imagemill batch FILE.jsonl``: many job requests as one batch, one progress bar."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from imagemill.cli.common import (
    ApiKeyOption,
    DataDirOption,
    ServerOption,
    _connect,
    _run,
    app,
    console,
    err_console,
    shown,
)
from imagemill.client import Batch, SubmissionFields
from imagemill.domain import JobStatus
from imagemill.fields import MAX_DEADLINE_SECONDS


def read_requests(path: Path) -> list[SubmissionFields]:
    """One job request (a JSON object, as ``POST /v1/jobs`` takes it) per line; blank
    lines and lines starting with ``#`` are skipped."""
    requests: list[SubmissionFields] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            request = json.loads(line)
        except ValueError as exc:
            raise typer.BadParameter(
                f"line {number} is not JSON: {exc}", param_hint="FILE"
            ) from exc
        if not isinstance(request, dict):
            raise typer.BadParameter(f"line {number} is not a JSON object", param_hint="FILE")
        requests.append(request)  # type: ignore[arg-type]  # the server checks each field
    if not requests:
        raise typer.BadParameter("the file holds no requests", param_hint="FILE")
    return requests


def _positive(value: float | None) -> float | None:
    if value is not None and not value > 0:
        raise typer.BadParameter("must be more than 0 seconds")
    return value


def _counts(batch: Batch) -> str:
    counts = batch.counts
    shown_counts = ("succeeded", "running", "queued", "failed", "canceled")
    return ", ".join(f"{counts[name]} {name}" for name in shown_counts if counts.get(name))


@app.command()
def batch(
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE",
            exists=True,
            dir_okay=False,
            help="JSON Lines: one job request per line, as POST /v1/jobs takes it.",
        ),
    ],
    concurrency: Annotated[
        int, typer.Option(min=1, max=100, help="How many of its jobs run at once.")
    ] = 5,
    metadata: Annotated[
        str | None,
        typer.Option(
            metavar="JSON", help="The batch's own metadata, a JSON object.", show_default=False
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="DIR",
            file_okay=False,
            help="Save every output as DIR/<job_id>-<index>.<ext> once the batch is done.",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            min=0, help="Seconds to wait before giving up (default: no limit).", show_default=False
        ),
    ] = None,
    webhook_url: Annotated[
        str | None,
        typer.Option(
            "--webhook-url",
            metavar="URL",
            help="POST one signed batch.done here once every job has ended.",
            show_default=False,
        ),
    ] = None,
    deadline: Annotated[
        float | None,
        typer.Option(
            max=MAX_DEADLINE_SECONDS,
            callback=_positive,
            metavar="SECONDS",
            help="Fail each job not done this long after submit (retries included), unless "
            "its line sets its own deadline_seconds.",
            show_default=False,
        ),
    ] = None,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Submit the requests in FILE as one batch and follow it to the end with one
    progress bar; exit 1 if any job failed or was canceled.

    \b
    imagemill batch story.jsonl --concurrency 5 -o pages/
    imagemill batch story.jsonl --webhook-url https://example.com/hooks --deadline 600
    (story.jsonl:  {"model": "placeholder", "prompt": "page 1", "size": "1024x576"}  …)
    """
    requests = read_requests(file)
    extra: dict[str, Any] = {}
    if metadata is not None:
        try:
            extra = json.loads(metadata)
        except ValueError as exc:
            raise typer.BadParameter(f"not JSON: {exc}", param_hint="--metadata") from exc

    async def run() -> Batch:
        async with _connect(server, api_key, data_dir, run_workers=True) as client:
            created = await client.batches.create(
                requests,
                concurrency=concurrency,
                metadata=extra,
                webhook_url=webhook_url,
                deadline_seconds=deadline,
            )
            columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn())
            with Progress(*columns, TimeElapsedColumn(), console=err_console) as progress:
                bar = progress.add_task(created.id, total=1.0)

                def update(seen: Batch) -> None:
                    progress.update(
                        bar, completed=seen.progress, description=f"{seen.id} {_counts(seen)}"
                    )

                done = await client.batches.wait(created.id, timeout=timeout, on_update=update)
            if output is not None:
                for job_id in done.job_ids:
                    job = await client.jobs.get(job_id)
                    if job.status is JobStatus.SUCCEEDED:
                        for path in await client.jobs.save_outputs(job, output):
                            console.print(str(path), highlight=False, soft_wrap=True)
            return done

    done = _run(run())
    err_console.print(f"batch {done.id} {done.status}: {shown(_counts(done))}")
    if done.status is not JobStatus.SUCCEEDED:
        raise typer.Exit(1)
