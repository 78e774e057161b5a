"""The text task kinds: what a caption, an enhanced prompt or a description asks of a
language model, and how its answer becomes outputs.

Every provider that writes text shares this, so a caption means the same thing from
OpenAI, Gemini, a local model or the placeholder:

- ``caption``: from product text (the prompt) and/or input images, ``n`` captions in
  each of ``params.tones`` (tone by tone, in the order given), in ``params.language``,
  each with exactly ``params.hashtags`` hashtags and emojis if ``params.emojis``;
- ``enhance``: the prompt made richer for an image model, with ``params.style``'s
  modifiers, ``n`` variants; returned as text for a person to review before rendering;
- ``describe``: an input image → ``n`` prompts that would make it.

``brief(task)`` is the request: instructions, the user's text and images, and the JSON
Schema the answer must follow (OpenAI's strict structured outputs and Gemini's response
schema both take it). ``read_answer(task, answer)`` turns the answer into ``Output``s,
refusing one that breaks the brief (a caption short of hashtags, too few captions) with a
retryable ``UnusableAnswer``: another attempt may do better, and nothing half-right is
reported as done.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from imagemill import domain
from imagemill.domain import InputImage, Output, Task, TaskKind
from imagemill.errors import UnusableAnswer
from imagemill.specs import InputLimits, ModelSpec, Pricing

TEXT_KINDS = [TaskKind.CAPTION, TaskKind.ENHANCE, TaskKind.DESCRIBE]
MAX_TONES = 5
MAX_HASHTAGS = 30
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"

TEXT_PARAMS: dict[str, dict[str, Any]] = {
    "tones": {
        "title": "Tones",
        "type": "array",
        "items": {"type": "string", "minLength": 1, "maxLength": 40},
        "minItems": 1,
        "maxItems": MAX_TONES,
        "uniqueItems": True,
        "description": 'caption: the tones to write in, e.g. ["professional", "playful", '
        '"luxurious"]; n captions in each, tone by tone.',
    },
    "language": {
        "title": "Language",
        "type": "string",
        "minLength": 2,
        "maxLength": 40,
        "description": "caption: the language to write in, e.g. 'en', 'German' (default: "
        "the product text's).",
    },
    "hashtags": {
        "title": "Hashtags",
        "type": "integer",
        "minimum": 0,
        "maximum": MAX_HASHTAGS,
        "default": 0,
        "description": "caption: exactly this many hashtags after each caption.",
    },
    "emojis": {
        "title": "Emojis",
        "type": "boolean",
        "default": False,
        "description": "caption: use emojis.",
    },
    "style": {
        "title": "Style",
        "type": "string",
        "minLength": 1,
        "maxLength": 300,
        "description": "enhance: style modifiers to work in, e.g. 'cinematic, golden hour'.",
    },
}
TEXT_PARAM_KINDS = {
    "tones": [TaskKind.CAPTION],
    "language": [TaskKind.CAPTION],
    "hashtags": [TaskKind.CAPTION],
    "emojis": [TaskKind.CAPTION],
    "style": [TaskKind.ENHANCE],
}
TEMPERATURE = {
    "title": "Temperature",
    "type": "number",
    "minimum": 0,
    "maximum": 2,
    "description": "Sampling temperature: lower is plainer, higher more varied.",
}
STRUCTURED_ONLY = ("hashtags",)  # asked of models that answer in a JSON Schema only


def text_params(*, structured: bool = True) -> dict[str, dict[str, Any]]:
    """The params every text model takes (``structured``: it answers in a JSON Schema, so
    it can be held to a count of hashtags)."""
    return {k: v for k, v in TEXT_PARAMS.items() if structured or k not in STRUCTURED_ONLY}


def text_model(
    provider: str,
    name: str,
    title: str,
    description: str,
    pricing: Pricing,
    limits: InputLimits,
) -> ModelSpec:
    """A hosted model of the text kinds, answering in a JSON Schema (so it takes every
    text param, and ``temperature``); ``limits``: the images it reads."""
    return ModelSpec(
        id=f"{provider}/{name}",
        provider=provider,
        name=name,
        title=title,
        description=description,
        kinds=list(TEXT_KINDS),
        params_schema={
            "type": "object",
            "additionalProperties": False,
            "properties": {**text_params(), "temperature": TEMPERATURE},
        },
        limits=limits.model_copy(update={"param_kinds": TEXT_PARAM_KINDS}),
        pricing=pricing,
    )


def tones(task: Task) -> list[str | None]:
    """The tone of each caption group: the ones asked for, or one group in no tone."""
    asked = task.params.get("tones") if task.kind is TaskKind.CAPTION else None
    return list(asked) if asked else [None]


def output_count(task: Task) -> int:
    """How many outputs the task makes: ``n`` per tone for a caption, else ``n``."""
    return domain.output_count(task.kind, task.n, task.params)


@dataclass(frozen=True, slots=True)
class Brief:
    """One request to a language model."""

    instructions: str  # the system (developer) message
    text: str  # the user's message
    images: tuple[InputImage, ...]
    schema: dict[str, Any]  # the JSON Schema the answer follows (strict-mode ready)
    count: int  # the texts the answer holds


_INSTRUCTIONS = {
    TaskKind.CAPTION: (
        "You write captions for product posts on social media and in shops. Write from the "
        "product text and images you are given; never invent facts, prices or claims "
        "that are not there. Keep each caption under 60 words."
    ),
    TaskKind.ENHANCE: (
        "You rewrite prompts for text-to-image models. Keep the subject and every detail "
        "the user gave; add concrete composition, lighting, lens and material details and "
        "the style asked for. Answer with prompts only: no preamble, no quotes, under 120 "
        "words each."
    ),
    TaskKind.DESCRIBE: (
        "You write prompts for text-to-image models. Describe the image you are given as a "
        "prompt that would make it: subject, composition, style, lighting, colours and "
        "medium, in one paragraph under 80 words, with no preamble."
    ),
}


def brief(task: Task) -> Brief:
    """What to ask a language model for ``task`` (a text kind)."""
    count = output_count(task)
    if task.kind is TaskKind.CAPTION:
        return Brief(
            _INSTRUCTIONS[task.kind],
            _caption_text(task),
            task.inputs,
            _captions_schema(task),
            count,
        )
    if task.kind is TaskKind.ENHANCE:
        text = f"Prompt: {task.prompt}\n"
        if task.params.get("style"):
            text += f"Style to work in: {task.params['style']}\n"
    else:
        text = f"Guidance from the user: {task.prompt}\n" if task.prompt.strip() else ""
    text += f"Write {count} {'variant' if count == 1 else 'different variants'}."
    return Brief(_INSTRUCTIONS[task.kind], text, task.inputs, _prompts_schema(count), count)


def plain_prompt(task: Task, index: int) -> tuple[str, str]:
    """For a model that cannot be held to a JSON Schema (a small local one): the
    instructions and the user's text asking for output ``index`` alone, as plain text."""
    if task.kind is TaskKind.CAPTION:
        tone = tones(task)[index // task.n]
        lines = [f"Product text: {task.prompt}"]
        if task.params.get("language"):
            lines.append(f"Write in this language: {task.params['language']}.")
        lines.append(f"Write one caption{f' in a {tone} tone' if tone else ''}.")
        lines.append("Use a few fitting emojis." if task.params.get("emojis") else "No emojis.")
        return _INSTRUCTIONS[task.kind], "\n".join(lines)
    if task.kind is TaskKind.ENHANCE:
        style = f"\nStyle to work in: {task.params['style']}" if task.params.get("style") else ""
        return _INSTRUCTIONS[task.kind], f"Prompt: {task.prompt}{style}\nWrite one prompt."
    return _INSTRUCTIONS[task.kind], f"{task.prompt}\nWrite one prompt."


def _caption_text(task: Task) -> str:
    lines = [f"Product text: {task.prompt}" if task.prompt.strip() else "Product text: (none)"]
    if task.inputs:
        lines.append(f"Product images: {len(task.inputs)}, attached.")
    groups = tones(task)
    if groups == [None]:
        lines.append(f"Write {task.n} caption(s).")
    else:
        order = ", ".join(f"{task.n} {tone}" for tone in groups)
        lines.append(f"Write captions in this order: {order}.")
    if task.params.get("language"):
        lines.append(f"Write in this language: {task.params['language']}.")
    hashtags = int(task.params.get("hashtags", 0))
    if hashtags:
        lines.append(
            f"Give each caption exactly {hashtags} hashtags in `hashtags` (without '#'), "
            "and none in its text."
        )
    lines.append("Use a few fitting emojis." if task.params.get("emojis") else "Use no emojis.")
    return "\n".join(lines)


def _captions_schema(task: Task) -> dict[str, Any]:
    count = output_count(task)
    hashtags = int(task.params.get("hashtags", 0))
    caption: dict[str, Any] = {
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
        "additionalProperties": False,
    }
    if hashtags:
        caption["properties"]["hashtags"] = {
            "type": "array",
            "items": {"type": "string"},
            "minItems": hashtags,
            "maxItems": hashtags,
        }
        caption["required"].append("hashtags")
    return {
        "type": "object",
        "properties": {
            "captions": {"type": "array", "items": caption, "minItems": count, "maxItems": count}
        },
        "required": ["captions"],
        "additionalProperties": False,
    }


def _prompts_schema(count: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "prompts": {
                "type": "array",
                "items": {"type": "string"},
                "minItems": count,
                "maxItems": count,
            }
        },
        "required": ["prompts"],
        "additionalProperties": False,
    }


def read_answer(task: Task, answer: str, cost_usd: float | None = None) -> list[Output]:
    """The outputs of a structured answer to ``brief(task)``; ``cost_usd``: what the whole
    call cost, shared evenly. ``UnusableAnswer`` (retryable) if the answer breaks the brief."""
    try:
        document = json.loads(answer)
    except ValueError as exc:
        raise _broken("the model's answer is not the JSON it was asked for") from exc
    field = "captions" if task.kind is TaskKind.CAPTION else "prompts"
    items = document.get(field) if isinstance(document, dict) else None
    count = output_count(task)
    if not isinstance(items, list) or len(items) < count:
        got = len(items) if isinstance(items, list) else 0
        raise _broken(f"the model wrote {got} {field} of the {count} asked for")
    share = cost_usd / count if cost_usd is not None else None
    if task.kind is TaskKind.CAPTION:
        texts = [caption_text(item, int(task.params.get("hashtags", 0))) for item in items[:count]]
    else:
        texts = [_plain(item) for item in items[:count]]
    return text_outputs(task, texts, share)


def text_outputs(task: Task, texts: list[str], cost_usd: float | None = None) -> list[Output]:
    """``Output``s of ``texts`` (in order), each with its caption's tone; ``cost_usd``
    each."""
    groups = tones(task)
    outputs = []
    for index, text in enumerate(texts):
        if not text.strip():
            raise _broken("the model's answer holds an empty text")
        tone = groups[index // task.n] if index // task.n < len(groups) else None
        outputs.append(
            Output(
                text=text.strip(),
                content_type=TEXT_CONTENT_TYPE,
                tone=tone,
                cost_usd=cost_usd,
            )
        )
    return outputs


def caption_text(item: Any, hashtags: int) -> str:
    """A caption's text, with exactly ``hashtags`` hashtags after it."""
    if not isinstance(item, dict) or not isinstance(item.get("text"), str):
        raise _broken("the model's answer holds a caption without text")
    text: str = item["text"].strip()
    if not text:
        raise _broken("the model's answer holds an empty text")
    if not hashtags:
        return text
    tags = hashtag_words(item.get("hashtags"))
    if len(tags) < hashtags:
        raise _broken(
            f"the model gave a caption {len(tags)} usable hashtags of the {hashtags} asked for"
        )
    return f"{text}\n\n{' '.join('#' + tag for tag in tags[:hashtags])}"


_NOT_IN_HASHTAG = re.compile(r"[^\w]+")


def hashtag_words(values: Any) -> list[str]:
    """Hashtags as words (``"#Summer Sale"`` → ``SummerSale``), each once, blanks dropped."""
    if not isinstance(values, list):
        return []
    words: list[str] = []
    seen: set[str] = set()
    for value in values:
        if not isinstance(value, str):
            continue
        word = _NOT_IN_HASHTAG.sub("", unicodedata.normalize("NFC", value))
        if word and word.casefold() not in seen:
            seen.add(word.casefold())
            words.append(word)
    return words


def fit_prompt(
    text: str,
    max_chars: int | None = None,
    max_bytes: int | None = None,
    max_tokens: int | None = None,
) -> str:
    """``text`` cut at a word boundary to fit a model's prompt limits: characters, UTF-8
    bytes, and tokens (kept to half as many words, where a word is a token or more)."""
    words = text.split()
    if max_tokens is not None:
        words = words[: max(1, max_tokens // 2)]
    fitted = " ".join(words)
    while words and (
        (max_chars is not None and len(fitted) > max_chars)
        or (max_bytes is not None and len(fitted.encode()) > max_bytes)
    ):
        words.pop()
        fitted = " ".join(words)
    return fitted


def count_hashtags(text: str) -> int:
    """How many hashtags a text holds (``#`` and a word)."""
    return len(re.findall(r"(?<!\w)#\w+", text))


def _broken(message: str) -> UnusableAnswer:
    """An answer that breaks the brief: another attempt may do better."""
    return UnusableAnswer(message)


def _plain(item: Any) -> str:
    if not isinstance(item, str):
        raise _broken("the model's answer holds a prompt that is not text")
    text: str = item.strip().strip('"').strip()
    return text
