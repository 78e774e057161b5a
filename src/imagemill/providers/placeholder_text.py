"""The placeholder's text: captions, enhanced prompts and descriptions from templates.

Deterministic (the same task writes the same text), offline, and marked: every text
starts with ``[placeholder …]``. It follows the brief as a real model must: ``n`` texts per
tone, exactly the hashtags asked for, the style worked in, the input image described by
its size and colour.
"""

from __future__ import annotations

import io
import re

from PIL import Image

from imagemill import writing
from imagemill.domain import InputImage, Output, Task, TaskKind

_WORD = re.compile(r"[^\W_]{3,}")
SUMMARY_WORDS = 16
STOCK_HASHTAGS = ["placeholder", "draft", "preview", "sample", "mockup", "template"]
EMOJIS = ["✨", "🛍️", "🎉", "💫", "🌿"]
COLOURS = {  # a few named colours: a description says the nearest
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "grey": (128, 128, 128),
    "red": (200, 40, 40),
    "orange": (240, 140, 30),
    "yellow": (240, 220, 50),
    "green": (50, 160, 60),
    "teal": (30, 150, 150),
    "blue": (40, 80, 200),
    "purple": (130, 60, 170),
    "pink": (240, 130, 180),
    "brown": (120, 80, 40),
}


def write(task: Task) -> list[Output]:
    """The texts of ``task`` (a text kind), in order."""
    count = writing.output_count(task)
    if task.kind is TaskKind.CAPTION:
        texts = [_caption(task, index) for index in range(count)]
    elif task.kind is TaskKind.ENHANCE:
        texts = [_enhanced(task, index) for index in range(count)]
    else:
        texts = [_description(task, index) for index in range(count)]
    return writing.text_outputs(task, texts)  # priced by the table (free, unless configured)


def _caption(task: Task, index: int) -> str:
    tone = writing.tones(task)[index // task.n]
    label = f"[placeholder caption{', ' + tone if tone else ''}"
    label += f", {task.params['language']}]" if task.params.get("language") else "]"
    words = task.prompt.split()
    if words:
        summary = " ".join(words[:SUMMARY_WORDS]) + ("…" if len(words) > SUMMARY_WORDS else "")
    else:
        summary = f"the product in {len(task.inputs)} image(s)"
    variant = f" (variant {index % task.n + 1})" if task.n > 1 else ""
    emoji = f" {EMOJIS[index % len(EMOJIS)]}" if task.params.get("emojis") else ""
    text = f"{label} {summary}{variant}{emoji}"
    hashtags = int(task.params.get("hashtags", 0))
    return writing.caption_text({"text": text, "hashtags": _hashtags(task, hashtags)}, hashtags)


def _hashtags(task: Task, count: int) -> list[str]:
    """``count`` hashtag words: the prompt's own first, then stock ones, then numbered."""
    words = writing.hashtag_words(_WORD.findall(task.prompt) + STOCK_HASHTAGS)
    words += [f"tag{number}" for number in range(1, count - len(words) + 1)]
    return words[:count]


def _enhanced(task: Task, index: int) -> str:
    style = task.params.get("style")
    modifiers = [
        "detailed composition",
        "soft natural light",
        "sharp focus",
        "rich colour",
        "35 mm lens",
    ]
    picked = [modifiers[(index + step) % len(modifiers)] for step in range(3)]
    return ", ".join(
        ["[placeholder enhancement] " + task.prompt.strip(), *([style] if style else []), *picked]
    )


def _description(task: Task, index: int) -> str:
    image = task.inputs[index % len(task.inputs)]
    hint = f", {task.prompt.strip()}" if task.prompt.strip() else ""
    return (
        f"[placeholder description] a {_shape(image)} image, {image.width}x{image.height}, "
        f"mostly {_colour(image)}{hint}"
    )


def _shape(image: InputImage) -> str:
    if image.width > image.height * 1.1:
        return "landscape"
    if image.height > image.width * 1.1:
        return "portrait"
    return "square"


def _colour(image: InputImage) -> str:
    """The named colour nearest the image's average."""
    with Image.open(io.BytesIO(image.data)) as opened:
        opened.draft("RGB", (64, 64))  # JPEG: decode small
        average = opened.convert("RGB").resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
    assert isinstance(average, tuple)
    return min(
        COLOURS,
        key=lambda name: sum((a - b) ** 2 for a, b in zip(COLOURS[name], average, strict=False)),
    )
