"""Images per second of a local model: diffusers called naively versus imagemill's batched worker.

The model is SD-Turbo's real architecture with random weights (the cost of running it
does not depend on the weights), 512×512, 1 step, no guidance. Both sides run the same
folder on the same device:

- baseline: diffusers' pipeline called one request at a time, as a naive service would;
- imagemill: ``imagemill serve`` with ``IMAGEMILL_LOCAL_BATCH_SIZE=B``, all requests
  submitted at once through the API, waiting until every image is stored.

    .venv/bin/python bench/local.py [--requests 32] [--batch-sizes 1 2 4 8 16] [--size 512]

Each row is images/s and the ratio to the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import imagemill_serve

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fakes.tiny_diffusers import save_random_sd_turbo

MODEL = "sd-turbo-random"


def baseline(folder: Path, requests: int, size: int) -> float:
    """Images/s of one pipeline call per request, after a warm-up call."""
    import torch
    from diffusers import AutoPipelineForText2Image

    from imagemill.providers.local.pipelines import choose_device

    device, dtype = choose_device(torch)
    pipeline = AutoPipelineForText2Image.from_pretrained(str(folder), dtype=dtype).to(device)
    pipeline.set_progress_bar_config(disable=True)

    def one(index: int) -> None:
        pipeline(
            f"a lighthouse, variation {index}",
            num_inference_steps=1,
            guidance_scale=0.0,
            height=size,
            width=size,
            generator=torch.Generator().manual_seed(index),
        )

    one(requests)  # warm-up
    _sync(torch)
    started = time.perf_counter()
    for index in range(requests):
        one(index)
    _sync(torch)
    return requests / (time.perf_counter() - started)


def _sync(torch: object) -> None:
    cuda = getattr(torch, "cuda", None)
    if cuda is not None and cuda.is_available():
        cuda.synchronize()


async def batched(models_dir: Path, workdir: Path, batch: int, requests: int, size: int) -> float:
    """Images/s of imagemill with local batch size ``batch``, after a warm-up job."""
    settings = {
        "models_dir": str(models_dir),
        "local_batch_size": str(batch),
        "worker_concurrency": str(max(16, 2 * batch)),
        "job_timeout_seconds": "3600",
        "job_deadline_seconds": "3600",
        "max_wait_seconds": "3600",
    }
    async with (
        imagemill_serve(workdir / f"batch-{batch}", **settings) as url,
        httpx.AsyncClient(base_url=url, timeout=3600) as http,
    ):

        async def job(index: int) -> None:
            body = {
                "model": f"local/{MODEL}",
                "prompt": f"a lighthouse, variation {index}",
                "size": f"{size}x{size}",
                "seed": index,
                "cache": "bypass",
                "params": {"steps": 1, "guidance_scale": 0.0},
            }
            response = await http.post("/v1/jobs", json=body, headers={"Prefer": "wait=3600"})
            result = response.json()
            if result.get("status") != "succeeded":
                raise RuntimeError(f"job did not succeed: {result}")

        await job(requests)  # loads the model
        started = time.perf_counter()
        await asyncio.gather(*(job(index) for index in range(requests)))
        return requests / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="imagemill-bench-local-") as tmp:
        workdir = Path(tmp)
        models_dir = workdir / "models"
        print(f"building {MODEL} (SD-Turbo's architecture, random weights)...", flush=True)
        save_random_sd_turbo(models_dir / MODEL)
        base = baseline(models_dir / MODEL, args.requests, args.size)
        gc.collect()  # the baseline's pipeline is gone before the server loads its own
        device = _device()
        print(f"\ndevice: {device}; {args.requests} requests, {args.size}², 1 step", flush=True)
        print("| batch | imagemill images/s | naive images/s | ratio |\n|---|---|---|---|")
        for batch in args.batch_sizes:
            rate = asyncio.run(batched(models_dir, workdir, batch, args.requests, args.size))
            print(f"| {batch} | {rate:.3f} | {base:.3f} | {rate / base:.2f}× |", flush=True)


def _device() -> str:
    import torch

    from imagemill.providers.local.pipelines import choose_device

    device, _ = choose_device(torch)
    return torch.cuda.get_device_name(0) if device == "cuda" else device


if __name__ == "__main__":
    main()
