"""Settings: every knob of imagemill, read from ``IMAGEMILL_*`` environment variables.

A ``Settings`` value is built once at the edge (CLI, app factory, test fixture) and
passed to the objects that need it; nothing reads the environment anywhere else.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DATA_DIR = Path.home() / ".imagemill"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


class Settings(BaseSettings):
    """imagemill's configuration. Each field is also the env var ``IMAGEMILL_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="IMAGEMILL_", extra="ignore")

    data_dir: Path = Field(
        DEFAULT_DATA_DIR, description="Where the embedded default keeps its files."
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy async URL; default: SQLite file `<data_dir>/imagemill.db`."
    )
    storage_url: str | None = Field(
        None, description="Blob store URL (`file:///path`); default: `<data_dir>/blobs`."
    )
    broker_url: str = Field("memory://", description="Task transport; `memory://` runs in-process.")
    host: str = Field("127.0.0.1", description="Address `imagemill serve` binds to.")
    port: int = Field(8000, ge=0, le=65535, description="Port `imagemill serve` listens on.")
    public_url: str | None = Field(
        None, description="Base URL clients reach the server at, when behind a proxy."
    )
    workers: bool = Field(True, description="Run job workers inside the server process.")
    worker_concurrency: int = Field(8, ge=1, le=1024, description="Jobs one process runs at once.")
    lease_seconds: float = Field(
        30.0, gt=0, description="How long a claim lasts without heartbeat."
    )
    sweep_interval_seconds: float = Field(15.0, gt=0, description="How often the sweeper runs.")
    requeue_after_seconds: float = Field(
        30.0,
        ge=0,
        description="A job queued this long without being claimed gets its message re-sent.",
    )
    max_attempts: int = Field(3, ge=1, le=20, description="Attempts per job for retryable errors.")
    retry_base_seconds: float = Field(
        1.0, ge=0, description="First retry delay; doubles each time."
    )
    retry_max_seconds: float = Field(60.0, ge=0, description="Cap of the retry delay.")
    job_timeout_seconds: float = Field(600.0, gt=0, description="Deadline of one job attempt.")
    max_wait_seconds: float = Field(
        120.0, ge=0, description="Longest `Prefer: wait=N` or OpenAI-compatible call the API holds."
    )
    require_keys: bool | None = Field(
        None,
        description="Require API keys. Default: only when bound to a non-loopback address.",
    )
    max_upload_bytes: int = Field(25 * 1024 * 1024, gt=0, description="Largest accepted upload.")
    max_image_pixels: int = Field(
        50_000_000, gt=0, description="Largest accepted image, in pixels."
    )
    allowed_private_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="CIDRs that fetched URLs (inputs, webhooks) may reach despite being private.",
    )

    @field_validator("allowed_private_networks", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            for cidr in value:
                ipaddress.ip_network(cidr, strict=False)
        return value

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'imagemill.db'}"

    @property
    def resolved_storage_url(self) -> str:
        return self.storage_url or (self.data_dir / "blobs").resolve().as_uri()

    @property
    def keys_required(self) -> bool:
        if self.require_keys is not None:
            return self.require_keys
        return self.host not in LOOPBACK_HOSTS
