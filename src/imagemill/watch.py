"""Live progress of jobs in a terminal, from their event streams: one rich progress bar
per job, moving as events arrive (``imagemill generate``, ``imagemill jobs watch``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from imagemill.client import AsyncClient, Event

FINISHED = {"succeeded", "failed", "canceled"}


class Bars:
    """The bars on screen, one per job, updated by events."""

    def __init__(self, console: Console, *, transient: bool) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.fields[job]}", style="dim"),
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=transient,
        )
        self._bars: dict[str, TaskID] = {}
        self.finished: dict[str, str] = {}  # job id → final status

    def __enter__(self) -> Bars:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.__exit__(None, None, None)

    def show(self, event: Event) -> None:
        bar = self._bars.get(event.job_id)
        if bar is None:
            bar = self._bars[event.job_id] = self.progress.add_task(
                "queued", total=1.0, job=event.job_id[-8:]
            )
        data = event.data
        if event.type == "status":
            self.progress.update(bar, description=str(data.get("status", "")))
        elif event.type == "progress":
            message = f"running {escape(str(data['message']))}" if data.get("message") else None
            self.progress.update(
                bar, completed=float(data.get("progress", 0.0)), description=message or "running"
            )
        elif event.type == "error":
            retry = " (will retry)" if data.get("will_retry") else ""
            self.progress.console.print(
                f"[yellow]{event.job_id}[/] {escape(str(data.get('code')))}: "
                f"{escape(str(data.get('message')))}{retry}"
            )
        elif event.type == "log":
            self.progress.console.print(
                f"[dim]{event.job_id}[/] {escape(str(data.get('message')))}"
            )
        elif event.type == "done":
            status = str(data.get("status", ""))
            self.finished[event.job_id] = status
            colour = "green" if status == "succeeded" else "red"
            self.progress.update(
                bar,
                completed=1.0 if status == "succeeded" else None,
                description=f"[{colour}]{status}[/]",
            )
            self.progress.stop_task(bar)


async def follow(client: AsyncClient, job_ids: Iterable[str], bars: Bars) -> dict[str, str]:
    """Show the jobs' events until every one is done; their final statuses."""
    ids = list(job_ids)

    async def one(job_id: str) -> None:
        async for event in client.jobs.events(job_id):
            bars.show(event)

    await asyncio.gather(*(one(job_id) for job_id in ids))
    return {job_id: bars.finished.get(job_id, "unknown") for job_id in ids}


async def follow_all(client: AsyncClient, bars: Bars) -> None:
    """Show every event of the caller's jobs from now on, until interrupted."""
    async for event in client.events():
        bars.show(event)
