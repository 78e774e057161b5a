"""Terminal progress bars (``watch.py``): labelled by prompt, red when a job failed or
was canceled, green and full only when it succeeded."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from rich.console import Console

from imagemill.client import Event
from imagemill.watch import Bars, label


def _event(kind: str, **data: object) -> Event:
    return Event(
        id=1, job_id="job_x", seq=1, type=kind, data=dict(data), created_at=datetime.now(UTC)
    )


def test_a_bar_is_labelled_by_the_prompt_shortened() -> None:
    assert label("a red fox in snow", "job_x") == "a red fox in snow"
    assert label("  a  lighthouse\n at dusk ", "job_x") == "a lighthouse at dusk"
    long = label("an extremely long prompt about a lighthouse at dusk in oils", "job_x")
    assert len(long) == 32 and long.endswith("…")
    assert label("", "job_x") == "job_x"


def _bar_styles(status: str) -> tuple[str, str, float]:
    bars = Bars(Console(file=io.StringIO(), width=120), transient=False)
    with bars:
        bars.name("job_x", "a kite")
        bars.show(_event("progress", progress=0.4))
        bars.show(_event("done", status=status))
        [task] = bars.progress.tasks
        rendered = bars.progress.columns[3].render(task)  # the bar
    return str(rendered.complete_style), str(rendered.finished_style), task.completed


def test_a_failed_bar_is_red_and_stays_where_it_stopped() -> None:
    complete, finished, done = _bar_styles("failed")
    assert (complete, finished, done) == ("red", "red", 0.4)
    assert _bar_styles("canceled")[:2] == ("red", "red")


def test_a_succeeded_bar_fills_in_the_usual_colours() -> None:
    complete, finished, done = _bar_styles("succeeded")
    assert done == 1.0 and "red" not in (complete, finished)
