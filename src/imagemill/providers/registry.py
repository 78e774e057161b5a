"""The registry: every provider found through entry points, and model lookup by id or alias."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points

from imagemill.boundary import quoted
from imagemill.config import Settings
from imagemill.errors import InvalidInput
from imagemill.providers.base import ENTRY_POINT_GROUP, Provider
from imagemill.specs import ModelSpec, Pricing

log = logging.getLogger(__name__)
RESCAN_SECONDS = 1.0


class Registry:
    def __init__(
        self, providers: Iterable[Provider], prices: Mapping[str, Pricing] | None = None
    ) -> None:
        """``prices`` replaces the price tables of the models it names (configuration)."""
        self.providers = {p.name: p for p in providers}
        self._prices = dict(prices or {})
        self._next_rescan = 0.0
        self._index()

    def _index(self) -> None:
        prices = self._prices
        self._models: dict[str, tuple[Provider, ModelSpec]] = {}
        self._aliases: dict[str, str] = {}
        for provider in self.providers.values():
            for spec in provider.models():
                if prices and spec.id in prices:
                    configured = prices[spec.id].model_copy(update={"configured": True})
                    spec = spec.model_copy(update={"pricing": configured})
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
        return cls(providers, settings.prices)

    async def refresh(self) -> None:
        """Let providers that can (``async def refresh()``) update their models, e.g. fetch
        params schemas, then index the models again."""
        for provider in self.providers.values():
            refresh = getattr(provider, "refresh", None)
            if refresh is not None:
                try:
                    await refresh()
                except Exception:
                    log.warning("refreshing provider %r failed", provider.name, exc_info=True)
        self._index()

    async def aclose(self) -> None:
        """Close the providers' clients (a provider may have an ``aclose``)."""
        for provider in self.providers.values():
            close = getattr(provider, "aclose", None)
            if close is not None:
                try:
                    await close()
                except Exception:
                    log.warning("closing provider %r failed", provider.name, exc_info=True)

    def _rescan(self) -> None:
        """Index again if a provider's models came or went (local model folders), looking
        at most every ``RESCAN_SECONDS``."""
        now = time.monotonic()
        if now < self._next_rescan:
            return
        self._next_rescan = now + RESCAN_SECONDS
        changed = (getattr(p, "changed", None) for p in self.providers.values())
        if any(check() for check in changed if check is not None):
            self._index()

    def on_device(self, provider: str) -> bool:
        """Whether ``provider`` runs on this machine's device (``device = True``: local
        models, CPU or GPU bound) rather than calling out over the network."""
        return bool(getattr(self.providers.get(provider), "device", False))

    def models(self) -> list[ModelSpec]:
        self._rescan()
        return [spec for _, spec in self._models.values()]

    def providers_of_models(self) -> list[tuple[Provider, ModelSpec]]:
        """Every model with the provider that serves it."""
        self._rescan()
        return list(self._models.values())

    def resolve(self, model_id: str, field: str = "model") -> tuple[Provider, ModelSpec]:
        """The provider and spec of ``model_id`` (or an alias); ``InvalidInput`` if unknown."""
        self._rescan()
        found = self._models.get(self._aliases.get(model_id, model_id))
        if found is None:
            raise InvalidInput(
                f"unknown model {quoted(model_id)}; GET /v1/models lists the available ones",
                field=field,
            )
        return found
