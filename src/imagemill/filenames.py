"""What a downloaded output is called: the first words of its prompt and its seed
(``a-red-fox-in-snow-seed-42.png``), never an asset id; shared by the studio's download
links and the zip archives of ``POST /v1/archives``."""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Sized
from typing import Protocol

from imagemill.domain import Request, TaskKind

MAX_STEM_CHARS = 60


class NamedJob(Protocol):
    """A job as stored (``Job``) or as answered (``JobOut``)."""

    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> TaskKind: ...
    @property
    def request(self) -> Request: ...
    @property
    def outputs(self) -> Sized: ...


class NamedOutput(Protocol):
    @property
    def index(self) -> int: ...
    @property
    def seed(self) -> int | None: ...
    @property
    def content_type(self) -> str: ...


def filename_of(job: NamedJob, output: NamedOutput) -> str:
    """``output_filename`` for one of ``job``'s outputs."""
    return output_filename(
        prompt=job.request.prompt,
        kind=job.kind.value,
        job_id=job.id,
        index=output.index,
        outputs=len(job.outputs),
        seed=output.seed,
        content_type=output.content_type,
    )


def output_filename(
    *,
    prompt: str,
    kind: str,
    job_id: str,
    index: int,
    outputs: int,
    seed: int | None,
    content_type: str,
) -> str:
    """``outputs``: how many the job made (the index tells apart those without a seed)."""
    words = re.findall(r"\w+", prompt.lower())
    stem = "-".join(words)[:MAX_STEM_CHARS].rstrip("-") or f"{kind}-{job_id}"
    if seed is not None:
        stem += f"-seed-{seed}"
    elif outputs > 1:
        stem += f"-{index + 1}"
    return stem + (mimetypes.guess_extension(content_type.split(";")[0].strip()) or "")


def unique(names: list[str]) -> list[str]:
    """``names`` with repeats told apart (``x.png``, ``x-2.png``), as a zip needs."""
    used: set[str] = set()
    result = []
    for name in names:
        stem, dot, extension = name.rpartition(".") if "." in name else (name, "", "")
        candidate, count = name, 1
        while candidate in used:  # "x-2.png" may be a name of its own already
            count += 1
            candidate = f"{stem}-{count}{dot}{extension}"
        used.add(candidate)
        result.append(candidate)
    return result
