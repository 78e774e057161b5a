"""The HTTP API (FastAPI): app factory, dependencies, wire schemas and routes."""
