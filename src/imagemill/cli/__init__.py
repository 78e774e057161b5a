"""The ``imagemill`` command line (typer + rich): serve, generate, batch, jobs, models, keys,
db.

Commands that read or make jobs go through the SDK, one code path in both modes: with
``--server URL`` over HTTP, otherwise in-process: a ``Runtime`` on the data dir, the
app around it, and the SDK's ``AsyncClient`` talking to the app served on
a loopback port. ``keys create`` and ``db upgrade`` work on the database itself.
"""

from __future__ import annotations

from typing import Annotated

import typer

from imagemill import __version__
from imagemill.cli.common import app, console

# The commands are listed in the order their modules add them.
# isort: off
from imagemill.cli import serving, generating, batching, jobs, admin  # noqa: F401
# isort: on

__all__ = ["app", "main"]


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
