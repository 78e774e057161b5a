"""Camera motion over a still image: pan and zoom ("Ken Burns") rendered to an H.264 mp4.

This module owns the motion paths, their easing and the encoding; the ``local/motion``
model calls ``render`` from a worker thread. Each frame is a sub-pixel window of the
source resampled to the output size, so the motion glides instead of stepping a pixel at
a time. PyAV is imported only when a video is rendered, so importing this module is cheap.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from PIL import Image, ImageOps

from imagemill.storage.images import decoding

MOTIONS: tuple[str, ...] = (
    "zoom_in",
    "zoom_out",
    "pan_left",
    "pan_right",
    "pan_up",
    "pan_down",
    "ken_burns",
)
PARAMS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "duration": {
            "title": "Duration (s)",
            "type": "number",
            "minimum": 1,
            "maximum": 20,
            "default": 4,
            "description": "Length of the video in seconds.",
        },
        "fps": {
            "title": "Frames per second",
            "type": "integer",
            "minimum": 8,
            "maximum": 60,
            "default": 24,
            "description": "Frames per second.",
        },
        "motion": {
            "title": "Camera move",
            "type": "string",
            "enum": list(MOTIONS),
            "default": "ken_burns",
            "description": "The camera move: a zoom, a pan (the direction the camera "
            "travels), or ken_burns (a slow zoom in drifting up and to the right).",
        },
        "zoom": {
            "title": "Zoom",
            "type": "number",
            "minimum": 1.0,
            "maximum": 2.0,
            "default": 1.25,
            "description": "How far the camera moves in: the closest view shows 1/zoom of "
            "the image (1 keeps the camera still).",
        },
    },
}

# A window into the source in fractions of its size: centre x, centre y, and the
# magnification (the window is 1/magnification of the source on each side).
Window = tuple[float, float, float]


class Stopped(Exception):
    """``should_stop()`` returned True between two frames."""


def _ease(t: float) -> float:
    """Cosine ease-in-out: starts and ends at rest, fastest halfway."""
    return (1 - math.cos(math.pi * t)) / 2


def _window(motion: str, zoom: float, progress: float) -> Window:
    """Where the camera looks once ``progress`` (eased, 0..1) of the move is done."""
    edge = (1 - 1 / zoom) / 2  # how far a window of 1/zoom can sit off centre
    match motion:
        case "zoom_in" | "zoom_out":
            # Magnify geometrically so the zoom feels steady rather than slowing down.
            amount = progress if motion == "zoom_in" else 1 - progress
            return 0.5, 0.5, zoom**amount
        case "pan_left" | "pan_right" | "pan_up" | "pan_down":
            # Pans are named for the way the camera travels: the picture slides the other way.
            offset = edge * (1 - 2 * progress)
            if motion in ("pan_left", "pan_right"):
                return 0.5 + (offset if motion == "pan_left" else -offset), 0.5, zoom
            return 0.5, 0.5 + (offset if motion == "pan_up" else -offset), zoom
        case "ken_burns":
            magnification = zoom**progress
            # Half of the room the current window leaves, so it never reaches the border.
            drift = (1 - 1 / magnification) / 4
            return 0.5 + drift, 0.5 - drift, magnification
    raise ValueError(f"unknown motion {motion!r}; expected one of {', '.join(MOTIONS)}")


def render(
    image: bytes,
    *,
    width: int,
    height: int,
    duration: float,
    fps: int,
    motion: str,
    zoom: float = 1.25,
    progress: Callable[[float], None] = lambda fraction: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> bytes:
    """An H.264 mp4 (yuv420p, +faststart so browsers can play before the download ends) of
    round(duration*fps) frames at width×height."""
    if width % 2 or height % 2:
        raise ValueError(f"width and height must be even for yuv420p video, got {width}×{height}")
    if motion not in MOTIONS:
        raise ValueError(f"unknown motion {motion!r}; expected one of {', '.join(MOTIONS)}")
    frame_count = max(1, round(duration * fps))

    import av  # here, not at the top: PyAV loads all of ffmpeg

    # Cover the output aspect at the resolution the closest view needs, so the deepest
    # zoom samples about one source pixel per output pixel.
    with decoding("input_assets"), Image.open(io.BytesIO(image)) as opened:
        source = ImageOps.fit(
            ImageOps.exif_transpose(opened).convert("RGB"),
            (math.ceil(width * zoom), math.ceil(height * zoom)),
            Image.Resampling.LANCZOS,
        )

    buffer = io.BytesIO()
    # +faststart moves the index in front of the frames at the end by re-reading what was
    # written through a second handle; ffmpeg flushes before opening it, so a snapshot of
    # the buffer is exactly what was written. Without io_open it tries to open a file.
    with av.open(
        buffer,
        mode="w",
        format="mp4",
        options={"movflags": "+faststart"},
        io_open=lambda url, flags, options: io.BytesIO(buffer.getvalue()),
    ) as video:
        stream = video.add_stream("libx264", rate=fps, options={"crf": "20", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        # One tick per frame: frame i starts at exactly i/fps.
        stream.time_base = stream.codec_context.time_base = Fraction(1, fps)
        for index in range(frame_count):
            if should_stop():
                raise Stopped
            t = index / (frame_count - 1) if frame_count > 1 else 1.0
            still = _frame(source, _window(motion, zoom, _ease(t)), width, height)
            # PyAV's stub leaves from_image untyped; it is the one constructor every av>=12 has.
            frame = av.VideoFrame.from_image(still)  # type: ignore[no-untyped-call]
            frame = frame.reformat(format="yuv420p")
            frame.pts = index
            video.mux(stream.encode(frame))
            if index + 1 < frame_count:
                progress((index + 1) / frame_count)
        video.mux(stream.encode(None))  # drain the encoder's look-ahead
    progress(1.0)
    return buffer.getvalue()


def _frame(source: Image.Image, window: Window, width: int, height: int) -> Image.Image:
    """The window resampled to the output size, at sub-pixel precision."""
    centre_x, centre_y, magnification = window
    half_w, half_h = source.width / magnification / 2, source.height / magnification / 2
    box = (
        centre_x * source.width - half_w,
        centre_y * source.height - half_h,
        centre_x * source.width + half_w,
        centre_y * source.height + half_h,
    )
    # resize with a float box is PIL's affine resample with antialiasing: unlike
    # transform(), it filters over the whole footprint when shrinking, so fine detail
    # does not shimmer while the window moves.
    return source.resize((width, height), Image.Resampling.BICUBIC, box=box)
