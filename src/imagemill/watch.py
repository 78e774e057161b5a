"""Live progress of jobs in a terminal, from their event streams: one rich progress bar
per job, moving as events arrive (``imagemill generate``, ``imagemill jobs watch``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress_bar import ProgressBar

from imagemill.client import AsyncClient, ClientError, Event

FINISHED = {"succeeded", "failed", "canceled"}
LABEL_CHARS = 32


class StatusBar(BarColumn):
    """A bar red once its job failed or was canceled, green only when it succeeded."""

    def render(self, task: Task) -> ProgressBar:
        bar = super().render(task)
        if task.fields.get("ended") in ("failed", "canceled"):
            bar.complete_style = bar.finished_style = "red"
        return bar


def label(prompt: str, job_id: str) -> str:
    """A bar's label: the prompt's start, or the job id where there is no prompt."""
    words = " ".join(prompt.split())
    if not words:
        return job_id
    return words if len(words) <= LABEL_CHARS else words[: LABEL_CHARS - 1] + "…"


class Bars:
    """The bars on screen, one per job, updated by events."""

    def __init__(self, console: Console, *, transient: bool) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.fields[job]}"),
            TextColumn("{task.description}", style="dim"),
            StatusBar(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
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

    def name(self, job_id: str, prompt: str) -> None:
        """Label the job's bar by its prompt."""
        shown = escape(label(prompt, job_id))
        bar = self._bars.get(job_id)
        if bar is None:
            self._bars[job_id] = self.progress.add_task("queued", total=1.0, job=shown, ended="")
        else:
            self.progress.update(bar, job=shown)

    def show(self, event: Event) -> None:
        bar = self._bars.get(event.job_id)
        if bar is None:
            bar = self._bars[event.job_id] = self.progress.add_task(
                "queued", total=1.0, job=event.job_id, ended=""
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
                ended=status,
            )
            self.progress.stop_task(bar)


async def follow(client: AsyncClient, job_ids: Iterable[str], bars: Bars) -> dict[str, str]:
    """Show the jobs' events until every one is done; their final statuses."""
    ids = list(job_ids)

    async def one(job_id: str) -> None:
        bars.name(job_id, (await client.jobs.get(job_id)).request.prompt)
        async for event in client.jobs.events(job_id):
            bars.show(event)

    await asyncio.gather(*(one(job_id) for job_id in ids))
    return {job_id: bars.finished.get(job_id, "unknown") for job_id in ids}


async def follow_all(client: AsyncClient, bars: Bars) -> None:
    """Show every event of the caller's jobs from now on, until interrupted."""
    named: set[str] = set()
    async for event in client.events():
        if event.job_id not in named:
            named.add(event.job_id)
            with contextlib.suppress(ClientError):  # deleted meanwhile: its id will do
                bars.name(event.job_id, (await client.jobs.get(event.job_id)).request.prompt)
        bars.show(event)
