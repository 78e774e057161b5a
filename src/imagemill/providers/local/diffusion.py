"""Running diffusers models: text-to-image, image-to-image and inpainting, batched.

Each job becomes a request on the device's ``BatchQueue``; text-to-image requests with
the same model, size, steps and guidance share one pipeline call, each image with a
generator of its own, so a seed gives the same image whatever it is batched with (up
to the device's arithmetic: batched GPU kernels may differ in the last bits). Edits
run one at a time (their inputs differ). The denoising callback reports every step to
every job in the batch, sends a cheap preview every few steps (the latents mapped
straight to colours, no VAE decode), and stops the batch once all its jobs are
canceled.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from imagemill.domain import Task, TaskKind
from imagemill.providers.local.batching import Pending
from imagemill.providers.local.pipelines import Mode, Pipelines
from imagemill.storage.images import decoding

PREVIEWS = 4  # previews per job, spread over its steps
PREVIEW_SIDE = 192
# Stable Diffusion's four latent channels mapped linearly to RGB: a well-known, cheap
# approximation of what the VAE would decode, good enough to watch an image form.
LATENT_RGB = ((0.298, 0.207, 0.208), (0.187, 0.286, 0.173), (-0.158, 0.189, 0.264))
LATENT_RGB_4 = (*LATENT_RGB, (-0.184, -0.271, -0.473))

PARAMS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "steps": {
            "title": "Steps",
            "type": "integer",
            "minimum": 1,
            "maximum": 150,
            "default": 25,
            "description": "Denoising steps.",
        },
        "guidance_scale": {
            "title": "Guidance scale",
            "type": "number",
            "minimum": 0,
            "maximum": 30,
            "default": 7.5,
            "description": "How closely to follow the prompt (0 turns guidance off).",
        },
        "strength": {
            "title": "Edit strength",
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 1,
            "default": 0.75,
            "description": "Edits: how much of the input image to repaint (1 ignores it).",
        },
    },
}


class Canceled(Exception):
    """Every job of the batch was canceled; it stopped between two steps."""


@dataclass(eq=False)
class Request:
    """One job's share of a batch, with the thread-safe ways back to its job."""

    task: Task
    seeds: list[int]
    on_step: Callable[[int, int], None]  # step done (1-based), steps
    on_preview: Callable[[bytes], None]


def batch_key(task: Task) -> tuple[Any, ...]:
    """Requests with equal keys can share a pipeline call."""
    if task.kind is not TaskKind.IMAGE:
        return (task.job_id,)  # edits carry their own input images: never shared
    params = task.params
    return (task.model, task.width, task.height, steps_of(task), params.get("guidance_scale"))


def steps_of(task: Task) -> int:
    return int(task.params.get("steps", 25))


def steps_run(task: Task) -> int:
    """Steps the pipeline will actually take: an edit skips the first ``1 - strength``
    of the schedule, as diffusers does."""
    steps = steps_of(task)
    if task.kind is TaskKind.IMAGE:
        return steps
    strength = float(task.params.get("strength", 0.75))
    return max(1, steps - int(max(steps - min(steps * strength, steps), 0)))


def run_batch(
    pipelines: Pipelines, batch: Sequence[Pending[Request, list[tuple[int, bytes]]]]
) -> list[list[tuple[int, bytes]] | BaseException]:
    """One pipeline call for the whole batch (in the device's thread); images per job."""
    import torch

    requests = [p.item for p in batch]
    first = requests[0].task
    mode: Mode = "text" if first.kind is TaskKind.IMAGE else "inpaint" if first.mask else "image"
    pipeline = pipelines.get(first.model, mode)
    steps = steps_run(first)
    preview_every = max(1, steps // PREVIEWS)
    prompts: list[str] = []
    negatives: list[str] = []
    generators = []
    for request in requests:
        for seed in request.seeds:
            prompts.append(request.task.prompt)
            negatives.append(request.task.negative_prompt or "")
            generators.append(torch.Generator().manual_seed(seed))

    def on_step(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        if all(p.stopped.is_set() for p in batch):
            raise Canceled
        offset = 0
        for pending in batch:
            request = pending.item
            if not pending.stopped.is_set():
                request.on_step(step + 1, steps)
                latents = tensors.get("latents")
                if (step + 1) % preview_every == 0 and step + 1 < steps and latents is not None:
                    request.on_preview(preview(latents[offset]))
            offset += len(request.seeds)
        return tensors

    width, height = multiple_of_8(first.width), multiple_of_8(first.height)
    call: dict[str, Any] = {
        "prompt": prompts,
        "negative_prompt": negatives if any(negatives) else None,
        "num_inference_steps": steps_of(first),
        "guidance_scale": float(first.params.get("guidance_scale", 7.5)),
        "generator": generators,
        "callback_on_step_end": on_step,
    }
    if mode == "text":
        call |= {"width": width, "height": height}
    else:
        call |= _edit_inputs(first, width, height, len(prompts))
    try:
        result = pipeline(**call)
    except Canceled as exc:
        return [exc] * len(batch)
    images = iter(result.images)
    return [[(seed, encode(next(images))) for seed in r.seeds] for r in requests]


def _edit_inputs(task: Task, width: int, height: int, count: int) -> dict[str, Any]:
    source = _open(task.inputs[0].data, "RGB", width, height)
    inputs: dict[str, Any] = {
        "image": [source] * count,
        "strength": float(task.params.get("strength", 0.75)),
    }
    if task.mask is not None:  # white repaints, black keeps
        inputs |= {
            "mask_image": [_open(task.mask.data, "L", width, height)] * count,
            "width": width,
            "height": height,
        }
    return inputs


def _open(data: bytes, mode: str, width: int, height: int) -> Image.Image:
    with decoding(), Image.open(io.BytesIO(data)) as image:
        return image.convert(mode).resize((width, height), Image.Resampling.LANCZOS)


def preview(latents: Any) -> bytes:
    """A small WebP of what the latents (channels × h × w) show so far, without the VAE."""
    import torch

    channels = latents.shape[0]
    factors = torch.tensor(LATENT_RGB_4 if channels == 4 else LATENT_RGB[:channels])
    if channels not in (3, 4):  # another latent space: show its first three channels
        factors = torch.eye(channels, 3)
    rgb = torch.einsum("chw,cr->hwr", latents.float().cpu(), factors[:channels])
    low, high = rgb.amin(), rgb.amax()
    pixels = ((rgb - low) / (high - low + 1e-6) * 255).to(torch.uint8).numpy()
    image = Image.fromarray(pixels)
    image.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    if max(image.size) < PREVIEW_SIDE // 2:  # latents are 1/8 of the image: enlarge
        scale = PREVIEW_SIDE // max(image.size)
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="WEBP", quality=60)
    return buffer.getvalue()


def encode(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def multiple_of_8(side: int) -> int:
    return max(8, side - side % 8)


def threadsafe(
    loop: asyncio.AbstractEventLoop, progress: Callable[[float, str], Any]
) -> Callable[[int, int], None]:
    """A step callback for the device thread that reports progress on the event loop."""

    def on_step(step: int, steps: int) -> None:
        asyncio.run_coroutine_threadsafe(progress(step / steps, f"step {step}/{steps}"), loop)

    return on_step
