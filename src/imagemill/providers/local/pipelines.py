"""Loaded diffusers pipelines, kept within a memory budget, least recently used first out.

A pipeline loads on first use, on the chosen device, and stays loaded while the budget
allows: loading the next one evicts the pipelines used longest ago until it fits (the
one being loaded always stays, even alone over budget). The image-to-image and
inpainting pipelines of a model share its weights (``from_pipe``), so they cost nothing
extra and leave with it.

Only the device's runner thread calls in here (one batch per device), so nothing in
use is ever evicted.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal

from imagemill.errors import ProviderError

log = logging.getLogger(__name__)
MARKER = "model_index.json"  # what save_pretrained writes: a folder holding one is a model

Mode = Literal["text", "image", "inpaint"]


def choose_device(torch: Any, wanted: str = "auto") -> tuple[str, Any]:
    """The device and dtype: the one configured, else CUDA, then MPS, then the CPU.
    Half precision on CUDA; full precision elsewhere (CPU half is slow, MPS's unstable)."""
    if wanted == "auto":
        if torch.cuda.is_available():
            wanted = "cuda"
        elif torch.backends.mps.is_available():
            wanted = "mps"
        else:
            wanted = "cpu"
    return wanted, torch.float16 if wanted == "cuda" else torch.float32


def default_budget(torch: Any, device: str) -> int:
    """Bytes of weights to keep loaded: 80% of the GPU's memory, or half of the RAM."""
    if device == "cuda":
        return int(torch.cuda.get_device_properties(0).total_memory * 0.8)
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.5)


def weight_bytes(pipeline: Any) -> int:
    """The memory a pipeline's modules hold (parameters and buffers)."""
    total = 0
    for component in pipeline.components.values():
        for tensor in (*_tensors(component, "parameters"), *_tensors(component, "buffers")):
            total += tensor.numel() * tensor.element_size()
    return total


def _tensors(component: Any, kind: str) -> list[Any]:
    method = getattr(component, kind, None)
    return list(method()) if callable(method) else []


class Pipelines:
    def __init__(self, directory: Path, device: str = "auto", budget_bytes: int | None = None):
        self.directory = directory
        self._wanted_device = device
        self._budget = budget_bytes
        self._loaded: OrderedDict[str, tuple[int, dict[Mode, Any]]] = OrderedDict()
        self.device: str | None = None

    def get(self, name: str, mode: Mode = "text") -> Any:
        """The pipeline of model ``name`` for ``mode``, loading it if need be."""
        import torch

        if self.device is None:
            self.device, self._dtype = choose_device(torch, self._wanted_device)
        entry = self._loaded.get(name)
        if entry is None:
            entry = self._load(torch, self.device, name)
        self._loaded.move_to_end(name)
        modes = entry[1]
        if mode not in modes:
            modes[mode] = _derive(modes["text"], mode)
        return modes[mode]

    def loaded(self) -> list[str]:
        """Names of the loaded models, least recently used first."""
        return list(self._loaded)

    def _load(self, torch: Any, device: str, name: str) -> tuple[int, dict[Mode, Any]]:
        from diffusers import AutoPipelineForText2Image

        folder = self.directory / name
        if not (folder / MARKER).is_file():
            raise ProviderError(f"model folder {name!r} is gone from the models directory")
        budget = self._budget if self._budget is not None else default_budget(torch, device)
        self._make_room(_disk_bytes(folder), budget)  # before loading: never both at once
        loader: Any = AutoPipelineForText2Image  # diffusers' loaders are untyped
        pipeline = loader.from_pretrained(str(folder), dtype=self._dtype)
        pipeline.set_progress_bar_config(disable=True)
        if device != "cuda" and hasattr(pipeline, "vae"):
            pipeline.vae.enable_slicing()  # decode a batch image by image: RAM, not speed
        pipeline = pipeline.to(device)
        entry: tuple[int, dict[Mode, Any]] = (weight_bytes(pipeline), {"text": pipeline})
        self._loaded[name] = entry
        return entry

    def _make_room(self, needed: int, budget: int) -> None:
        in_use = sum(size for size, _ in self._loaded.values())
        evicted = False
        while self._loaded and in_use + needed > budget:
            name, (freed, _) = self._loaded.popitem(last=False)
            in_use -= freed
            evicted = True
            log.info("unloaded local model %r (%d MB) to make room", name, freed >> 20)
        if evicted and self.device == "cuda":
            import torch

            torch.cuda.empty_cache()


def _disk_bytes(folder: Path) -> int:
    """A model's weights on disk: what loading it will take, about (less if halved)."""
    suffixes = (".safetensors", ".bin", ".pt", ".ckpt")
    return sum(p.stat().st_size for p in folder.rglob("*") if p.suffix in suffixes)


def _derive(pipeline: Any, mode: Mode) -> Any:
    """The image-to-image or inpainting pipeline sharing ``pipeline``'s weights."""
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

    loader: Any = AutoPipelineForImage2Image if mode == "image" else AutoPipelineForInpainting
    derived = loader.from_pipe(pipeline)
    derived.set_progress_bar_config(disable=True)
    return derived
