"""The registry: every provider found through entry points, and model lookup by id or alias."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from importlib.metadata import entry_points

from imagemill.config import Settings
from imagemill.domain import ModelSpec
from imagemill.errors import InvalidInput
from imagemill.providers.base import ENTRY_POINT_GROUP, Provider

log = logging.getLogger(__name__)


class Registry:
    def __init__(self, providers: Iterable[Provider]) -> None:
        self.providers = {p.name: p for p in providers}
        self._models: dict[str, tuple[Provider, ModelSpec]] = {}
        self._aliases: dict[str, str] = {}
        for provider in self.providers.values():
            for spec in provider.models():
                self._models[spec.id] = (provider, spec)
                for alias in spec.aliases:
                    self._aliases[alias] = spec.id

    @classmethod
    def from_entry_points(cls, settings: Settings) -> Registry:
        """Every provider installed under the ``imagemill.providers`` entry-point group."""
        providers = []
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            try:
                providers.append(entry.load()(settings))
            except Exception:  # one broken plugin must not take the service down
                log.exception("could not load provider %r from %s", entry.name, entry.value)
        return cls(providers)

    def models(self) -> list[ModelSpec]:
        return [spec for _, spec in self._models.values()]

    def resolve(self, model_id: str, field: str = "model") -> tuple[Provider, ModelSpec]:
        """The provider and spec of ``model_id`` (or an alias); ``InvalidInput`` if unknown."""
        found = self._models.get(self._aliases.get(model_id, model_id))
        if found is None:
            raise InvalidInput(
                f"unknown model {model_id!r}; GET /v1/models lists the available ones", field=field
            )
        return found
