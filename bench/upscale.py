"""Memory and time of Real-ESRGAN upscaling, tiled versus in one piece.

Each run is its own process (peak RSS is per process), upscaling a generated image of
each side ×4; the untiled run is the baseline. Tiling should keep the peak near the
output's own size while the untiled peak grows with the input.

    .venv/bin/python bench/upscale.py [--model realesrgan-x4-fast] [--sides 256 512 1024]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap

PROBE = textwrap.dedent(
    """
    import io, json, resource, sys, time
    from PIL import Image
    from imagemill.providers.local import upscale
    model, side, tile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    upscaler = upscale.UPSCALERS[model]
    net = upscale.load(upscaler)
    buffer = io.BytesIO()
    picture = Image.effect_mandelbrot((side, side), (-2, -1.5, 1, 1.5), 100).convert("RGB")
    picture.save(buffer, "PNG")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    upscale.upscale(net, upscaler.scale, buffer.getvalue(), tile=tile)
    seconds = time.perf_counter() - started
    grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(json.dumps({"seconds": seconds, "grew_mb": grew}))
    """
)
UNTILED = 1 << 16  # a tile larger than any input: one piece


def probe(model: str, side: int, tile: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, model, str(side), str(tile)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="realesrgan-x4-fast")
    parser.add_argument("--sides", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--tile", type=int, default=128)
    args = parser.parse_args()
    print(f"{args.model}, tile {args.tile}")
    print("| input | tiled: peak growth, time | untiled: peak growth, time | memory ratio |")
    print("|---|---|---|---|")
    for side in args.sides:
        tiled = probe(args.model, side, args.tile)
        whole = probe(args.model, side, UNTILED)
        print(
            f"| {side}² | {tiled['grew_mb']:.0f} MB, {tiled['seconds']:.1f} s "
            f"| {whole['grew_mb']:.0f} MB, {whole['seconds']:.1f} s "
            f"| {tiled['grew_mb'] / whole['grew_mb']:.2f}× |",
            flush=True,
        )


if __name__ == "__main__":
    main()
