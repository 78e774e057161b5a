"""``imagemill generate``: one job, followed live, its images saved."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from imagemill.client import (
    JobFailed,
    SubmissionFields,
    WaitTimeout,
)
from imagemill.domain import CachePolicy, JobStatus, TaskKind
from imagemill.watch import Bars, follow

if TYPE_CHECKING:
    pass

from imagemill.cli.common import (
    ApiKeyOption,
    DataDirOption,
    ServerOption,
    _connect,
    _run,
    _seconds,
    app,
    console,
    err_console,
)


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
        str,
        typer.Argument(
            metavar="[PROMPT]",
            help="What to draw (for an edit: what to change; upscaling needs none).",
            show_default=False,
        ),
    ] = "",
    kind: Annotated[
        TaskKind,
        typer.Option(
            help="image: from the prompt; edit, upscale, video: from --input; text: caption "
            "(the prompt is the product text, and/or --input images), enhance (a richer "
            "prompt), describe (--input image -> prompt)."
        ),
    ] = TaskKind.IMAGE,
    input_file: Annotated[
        list[Path] | None,
        typer.Option(
            "--input",
            "-i",
            metavar="FILE",
            exists=True,
            dir_okay=False,
            help="An input image (edit, upscale, video), repeatable.",
            show_default=False,
        ),
    ] = None,
    mask: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            exists=True,
            dir_okay=False,
            help="Edits: a mask image, white where to repaint and black where to keep (a PNG "
            "with transparency is read as OpenAI's: transparent repaints).",
            show_default=False,
        ),
    ] = None,
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
    enhance: Annotated[
        str | None,
        typer.Option(
            metavar="MODEL",
            help="Enhance the prompt with this text model first (e.g. placeholder, "
            "openai/gpt-4o-mini); both prompts are recorded.",
            show_default=False,
        ),
    ] = None,
    style: Annotated[
        str | None,
        typer.Option(
            help="Style modifiers to enhance with, e.g. 'cinematic, golden hour' (with "
            "--enhance, or --kind enhance).",
            show_default=False,
        ),
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
    """Generate images (or edit, upscale, animate one) and save the outputs as
    DIR/<job_id>-<index>.<ext>; or write text (captions, an enhanced prompt, a
    description) and print it.

    \b
    imagemill generate "a red fox in snow" -m placeholder -n 2
    imagemill generate "a red fox" --enhance placeholder --style "watercolour"
    imagemill generate --kind upscale -i photo.png -m local/realesrgan-x4
    imagemill generate --kind video -i still.png -m local/motion --size 1280x720 -p motion=zoom_in
    imagemill generate --kind caption "Linen dress" -p 'tones=["playful","elegant"]' -p hashtags=3
    imagemill generate --kind describe -i photo.png -m placeholder
    """
    params = _parse_params(param or [])
    if style is not None and kind is TaskKind.ENHANCE:
        params.setdefault("style", style)

    async def run() -> list[Path]:
        async with _connect(server, api_key, data_dir, run_workers=True) as client:
            fields: SubmissionFields = {
                "kind": kind.value,
                "model": model,
                "prompt": prompt,
                "n": n,
                "params": params,
                "cache": cache.value,
            }
            if size is not None:
                fields["size"] = size
            if seed is not None:
                fields["seed"] = seed
            if negative_prompt is not None:
                fields["negative_prompt"] = negative_prompt
            if input_file:
                fields["input_assets"] = [(await client.assets.upload(p)).id for p in input_file]
            if mask is not None:
                fields["mask"] = (await client.assets.upload(mask)).id
            if enhance is not None:
                fields["enhance"] = {"model": enhance, **({"style": style} if style else {})}
            job = await client.jobs.create(**fields)
            with Bars(err_console, transient=True) as bars:
                try:
                    async with asyncio.timeout(timeout):
                        await follow(client, [job.id], bars)
                except TimeoutError:
                    raise WaitTimeout(await client.jobs.get(job.id)) from None
            job = await client.jobs.get(job.id)
            if job.status is not JobStatus.SUCCEEDED:
                raise JobFailed(job)
            written = [o for o in job.outputs if o.text is not None]
            paths = [] if written else await client.jobs.save_outputs(job, output)
        if job.enhanced_prompt:
            err_console.print(f"enhanced prompt: {job.enhanced_prompt}", markup=False)
        err_console.print(
            f"job {job.id} {job.status} in {_seconds(job.timings.total_seconds)}, "
            f"cost ${job.cost_usd:.4f}" + (" (cached)" if job.cached else "")
        )
        for index, out in enumerate(written):  # text goes to stdout, one block each
            if len(written) > 1:
                tone = f" · {out.tone}" if out.tone else ""
                err_console.print(f"[{index + 1}{tone}]", markup=False, highlight=False)
            console.print(out.text, highlight=False, soft_wrap=True, markup=False)
        return paths

    for path in _run(run()):
        console.print(str(path), highlight=False, soft_wrap=True)
