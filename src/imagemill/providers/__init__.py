"""Providers: the adapters between imagemill's one request shape and every image model."""

from imagemill.providers.base import Provider, RunContext

__all__ = ["Provider", "RunContext"]
