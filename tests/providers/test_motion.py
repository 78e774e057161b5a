"""Camera motion video: the mp4 has the frames, rate, duration and size asked for, plays
from the start, and the camera really moves, the right way, smoothly. Every check decodes
the real mp4 with PyAV."""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise
from statistics import mean

import av
import pytest
from PIL import Image, ImageChops, ImageDraw, ImageStat

from imagemill.providers.local.motion import MOTIONS, Stopped, render

WIDTH, HEIGHT = 160, 96


@dataclass
class Video:
    format_names: set[str]
    codec: str
    pix_fmt: str
    width: int
    height: int
    average_rate: Fraction | None
    duration: float  # seconds, as the container states it
    frames: list[Image.Image]  # greyscale


def decode(data: bytes) -> Video:
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        frames = [frame.to_image().convert("L") for frame in container.decode(stream)]
        assert container.duration is not None
        return Video(
            format_names=set(container.format.name.split(",")),
            codec=stream.codec_context.name,
            pix_fmt=str(stream.codec_context.pix_fmt),
            width=stream.width,
            height=stream.height,
            average_rate=stream.average_rate,
            duration=container.duration / av.time_base,
            frames=frames,
        )


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def detailed() -> Image.Image:
    """A 400×240 picture (the output's aspect) with detail at every scale."""
    return Image.effect_mandelbrot((400, 240), (-2, -1.2, 1, 1.2), 64)


def bars(*, vertical: bool, offsets: tuple[int, ...] = (0,)) -> bytes:
    """A dark 400×240 picture (the output's aspect) with bright bars through the centre,
    shifted by ``offsets`` pixels: features whose position is easy to measure."""
    image = Image.new("L", (400, 240), 16)
    draw = ImageDraw.Draw(image)
    for offset in offsets:
        if vertical:
            draw.rectangle((197 + offset, 0, 203 + offset, 239), fill=240)
        else:
            draw.rectangle((0, 117 + offset, 399, 123 + offset), fill=240)
    return png(image)


def centroids(frame: Image.Image, *, vertical: bool) -> list[float]:
    """Sub-pixel positions (x for vertical bars, y for horizontal ones) of the bright bars
    in the frame, left to right or top to bottom."""
    size = (frame.width, 1) if vertical else (1, frame.height)
    profile = list(frame.resize(size, Image.Resampling.BOX).tobytes())
    found: list[float] = []
    run: list[tuple[int, float]] = []
    for position, value in enumerate([*profile, 0]):
        if value > 64:
            run.append((position, value - 64))
        elif run:
            found.append(sum(p * w for p, w in run) / sum(w for _, w in run))
            run = []
    return found


def difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference of two greyscale images, 0..255."""
    return float(ImageStat.Stat(ImageChops.difference(a, b)).mean[0])


@pytest.mark.parametrize(("duration", "fps"), [(2.0, 12), (1.5, 24)])
def test_frames_rate_duration_and_size(duration: float, fps: int) -> None:
    video = decode(
        render(
            png(detailed()),
            width=WIDTH,
            height=HEIGHT,
            duration=duration,
            fps=fps,
            motion="ken_burns",
        )
    )
    assert len(video.frames) == round(duration * fps)
    assert video.average_rate == fps
    assert abs(video.duration - duration) <= 1 / fps
    assert (video.width, video.height) == (WIDTH, HEIGHT)
    assert all(frame.size == (WIDTH, HEIGHT) for frame in video.frames)


def test_plays_from_the_start_in_browsers() -> None:
    data = render(
        bars(vertical=True), width=WIDTH, height=HEIGHT, duration=1, fps=8, motion="pan_left"
    )
    video = decode(data)
    assert "mp4" in video.format_names
    assert data[4:12] == b"ftypisom"  # the mp4 brand, not QuickTime's "qt  "
    assert (video.codec, video.pix_fmt) == ("h264", "yuv420p")
    # Top-level boxes in file order: the index (moov) must come before the frames (mdat).
    boxes, offset = [], 0
    while offset < len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        boxes.append(kind.decode())
        offset += size
    assert boxes[0] == "ftyp"
    assert boxes.index("moov") < boxes.index("mdat")


@pytest.mark.parametrize("motion", MOTIONS)
def test_every_motion_moves_the_camera(motion: str) -> None:
    image = png(detailed())
    frames = decode(
        render(image, width=WIDTH, height=HEIGHT, duration=1, fps=12, motion=motion, zoom=1.5)
    ).frames
    assert difference(frames[0], frames[-1]) > 8
    # Eased moves barely creep at the ends; a frame may equal its neighbour there, never
    # in the middle.
    middle = frames[len(frames) // 4 : 3 * len(frames) // 4 + 1]
    assert all(difference(a, b) > 0.5 for a, b in pairwise(middle))


@pytest.mark.parametrize("motion", ["zoom_in", "zoom_out"])
def test_zoom_magnifies_the_centre(motion: str) -> None:
    zoom = 2.0
    source = detailed()
    frames = decode(
        render(png(source), width=WIDTH, height=HEIGHT, duration=1, fps=8, motion=motion, zoom=zoom)
    ).frames
    whole = source.resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS)
    centre = source.crop((100, 60, 300, 180)).resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS)
    wide, close = (frames[0], frames[-1]) if motion == "zoom_in" else (frames[-1], frames[0])
    # Each end matches what it should several times better than what it should not.
    assert difference(wide, whole) * 3 < difference(wide, centre)
    assert difference(close, centre) * 3 < difference(close, whole)


# (motion, the picture, what to measure, which way it must go)
TRACKED = [
    # Pans are named for the way the camera travels, so the bar slides the other way.
    ("pan_left", bars(vertical=True), "x", +1),
    ("pan_right", bars(vertical=True), "x", -1),
    ("pan_up", bars(vertical=False), "y", +1),
    ("pan_down", bars(vertical=False), "y", -1),
    # Zooming in spreads two bars apart; zooming out draws them together.
    ("zoom_in", bars(vertical=True, offsets=(-60, 60)), "spread", +1),
    ("zoom_out", bars(vertical=True, offsets=(-60, 60)), "spread", -1),
    ("ken_burns", bars(vertical=True, offsets=(-60, 60)), "spread", +1),
]


@pytest.mark.parametrize(("motion", "image", "measure", "direction"), TRACKED)
def test_motion_is_monotonic_smooth_and_eased(
    motion: str, image: bytes, measure: str, direction: int
) -> None:
    frames = decode(
        render(image, width=WIDTH, height=HEIGHT, duration=2, fps=12, motion=motion, zoom=1.5)
    ).frames
    positions = []
    for frame in frames:
        found = centroids(frame, vertical=measure != "y")
        assert len(found) == (2 if measure == "spread" else 1)
        positions.append(found[1] - found[0] if measure == "spread" else found[0])
    steps = [direction * (b - a) for a, b in pairwise(positions)]
    assert sum(steps) > 20  # it went the right way, and far
    assert min(steps) > -0.1  # never back, beyond the encoder's noise
    assert max(steps) < 3 * mean(steps)  # no jumps
    # Eased: slow out of the start and into the end, fastest in the middle.
    fastest = max(steps[len(steps) // 3 : 2 * len(steps) // 3])
    assert steps[0] < fastest / 4 and steps[-1] < fastest / 4


@pytest.mark.parametrize(("motion", "vertical"), [("pan_right", True), ("pan_down", False)])
def test_slow_pan_glides_between_pixels(motion: str, vertical: bool) -> None:
    # About 0.7 px a frame: whole-pixel crops would step 0, 1, 0, 1…; a sub-pixel window
    # changes speed gradually (the encoder adds about 0.25 px of noise).
    frames = decode(
        render(
            bars(vertical=vertical),
            width=WIDTH,
            height=HEIGHT,
            duration=2,
            fps=12,
            motion=motion,
            zoom=1.1,
        )
    ).frames
    positions = [centroids(frame, vertical=vertical)[0] for frame in frames]
    steps = [b - a for a, b in pairwise(positions)]
    assert all(abs(b - a) < 0.5 for a, b in pairwise(steps))


def test_progress_rises_to_one() -> None:
    reported: list[float] = []
    render(
        bars(vertical=True),
        width=WIDTH,
        height=HEIGHT,
        duration=1.5,
        fps=8,
        motion="zoom_in",
        progress=reported.append,
    )
    assert reported == sorted(reported)
    assert reported[-1] == 1.0
    assert 0 < reported[0] < 1
    assert len(reported) <= round(1.5 * 8) + 1


def test_stops_between_frames() -> None:
    checks: list[None] = []
    reported: list[float] = []

    def should_stop() -> bool:
        checks.append(None)
        return len(checks) > 3

    with pytest.raises(Stopped):
        render(
            bars(vertical=True),
            width=WIDTH,
            height=HEIGHT,
            duration=2,
            fps=12,
            motion="pan_left",
            progress=reported.append,
            should_stop=should_stop,
        )
    assert len(checks) == 4  # asked once per frame, and not again after saying stop
    assert reported and max(reported) < 1.0


@pytest.mark.parametrize(("width", "height"), [(161, 96), (160, 95)])
def test_odd_size_is_refused(width: int, height: int) -> None:
    with pytest.raises(ValueError, match="even"):
        render(bars(vertical=True), width=width, height=height, duration=1, fps=8, motion="zoom_in")
