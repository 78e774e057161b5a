"""Persistence: tables, the database handle, the repository (all SQL), migrations."""
