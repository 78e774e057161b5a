"""Peak memory of thumbnail requests for huge uploads, against unbounded decoding, in one run.

Four uploads of 7000×7000 mostly-empty pixels (about 200 KB each on disk, 49 million
pixels each when decoded), then four thumbnail requests at once; the figure is how much
the server's peak resident memory (``VmHWM``, reset just before) rises during them.

- **at ingest**: how imagemill runs: an upload's thumbnail is made when it is uploaded,
  so a thumbnail request reads a small stored file. **The target (under 300 MB for four
  at once) is about this number.**
- **made later, bounded**: the same assets with their thumbnails forgotten (as for an
  asset stored before thumbnails were made at upload, or a model's output before its
  first view): each request decodes its image, within ``IMAGEMILL_DECODE_BUDGET_PIXELS``
  (64 million pixels at once by default, so one of these at a time).
- **baseline, unbounded**: the same as the previous, with the budget set beyond reach:
  every request decodes at once, as before the bound.

    .venv/bin/python bench/thumbnails.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sqlite3
import statistics
import tempfile
from pathlib import Path

import httpx
from common import imagemill_server
from PIL import Image, ImageDraw

SIDE = 7000
UPLOADS = 4
UNBOUNDED = str(10**12)


def mostly_empty_png(seed: int) -> bytes:
    """A 7000×7000 RGB PNG, black but for one small shape (different for each seed)."""
    image = Image.new("RGB", (SIDE, SIDE))
    ImageDraw.Draw(image).ellipse(
        (seed * 500, seed * 400, seed * 500 + 300, seed * 400 + 300), fill=(200, 40 * seed, 90)
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=9)
    return buffer.getvalue()


def peak_reset(pid: int) -> None:
    """Start ``VmHWM`` (peak resident memory) afresh from the current size."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc: Linux only")


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc: Linux only")


async def rise_during_thumbnails(
    workdir: Path, images: list[bytes], *, forget: bool, budget: str | None
) -> float:
    """MB the server's peak memory rises while four thumbnails are asked for at once.

    The uploads go to one server; a fresh one (same data) answers the thumbnails, so its
    memory holds nothing the uploads' decoding left behind."""
    settings = {"max_image_pixels": str(SIDE * SIDE)}
    if budget is not None:
        settings["decode_budget_pixels"] = budget
    async with (
        imagemill_server(workdir, **settings) as (url, _),
        httpx.AsyncClient(base_url=url, timeout=300) as http,
    ):
        ids = []
        for index, data in enumerate(images):
            uploaded = await http.post("/v1/assets", files={"file": (f"{index}.png", data)})
            uploaded.raise_for_status()
            ids.append(uploaded.json()["id"])
    if forget:  # as an asset stored before thumbnails were made at upload
        with sqlite3.connect(workdir / "imagemill.db") as db:
            db.execute("UPDATE assets SET thumbnail_key = NULL")
    async with (
        imagemill_server(workdir, **settings) as (url, server),
        httpx.AsyncClient(base_url=url, timeout=300) as http,
    ):
        await asyncio.gather(*(http.get(f"/v1/assets/{i}") for i in ids))  # warm every path
        before = resident_mb(server.pid)
        peak_reset(server.pid)
        answers = await asyncio.gather(*(http.get(f"/v1/assets/{i}/thumbnail") for i in ids))
        assert all(a.status_code == 200 and a.content[:4] == b"RIFF" for a in answers)
        return peak_mb(server.pid) - before


async def main(rounds: int) -> None:
    images = await asyncio.to_thread(lambda: [mostly_empty_png(s) for s in range(UPLOADS)])
    sizes = ", ".join(f"{len(i) // 1024} KB" for i in images)
    print(f"{UPLOADS} uploads of {SIDE}x{SIDE} ({sizes}); {UPLOADS} thumbnail requests at once")
    results: dict[str, list[float]] = {"ingest": [], "bounded": [], "unbounded": []}
    with tempfile.TemporaryDirectory() as tmp:
        for round_number in range(rounds):
            root = Path(tmp) / f"round{round_number}"
            for name, forget, budget in (
                ("ingest", False, None),
                ("bounded", True, None),
                ("unbounded", True, UNBOUNDED),
            ):
                rise = await rise_during_thumbnails(
                    root / name, images, forget=forget, budget=budget
                )
                results[name].append(rise)
                print(f"round {round_number + 1}: {name:>9}: +{rise:.0f} MB")
    baseline = statistics.median(results["unbounded"])
    print("\nmedians (peak resident memory added by four thumbnail requests at once):")
    for name, label in (
        ("unbounded", "baseline, unbounded decoding"),
        ("bounded", "made later, bounded"),
        ("ingest", "made at ingest (imagemill)"),
    ):
        median = statistics.median(results[name])
        print(f"  {label:<30} +{median:6.0f} MB  ({median / baseline:.2f}x the baseline)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args().rounds))
