"""imagemill: a self-hosted image-generation service.

One API, CLI, Python SDK and web studio over every image model, with durable jobs,
permanent storage, caching and cost accounting. The SDK is ``imagemill.Client`` (sync)
and ``imagemill.AsyncClient`` (async); see ``imagemill.client``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["AsyncClient", "Client", "__version__"]

if TYPE_CHECKING:
    from imagemill.client import AsyncClient, Client


def __getattr__(name: str) -> Any:
    # Imported on first use: the server and workers import this package without the SDK.
    if name in ("AsyncClient", "Client"):
        from imagemill import client

        return getattr(client, name)
    raise AttributeError(f"module 'imagemill' has no attribute {name!r}")
