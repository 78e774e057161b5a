"""imagemill: a self-hosted image-generation service.

One API, CLI, Python SDK and web studio over every image model, with durable jobs,
permanent storage, caching and cost accounting.
"""

__version__ = "0.1.0"
