"""Settings: every knob of imagemill, read from ``IMAGEMILL_*`` environment variables.

A ``Settings`` value is built once at the edge (CLI, app factory, test fixture) and
passed to the objects that need it; nothing reads the environment anywhere else.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from imagemill.specs import Pricing

DEFAULT_DATA_DIR = Path.home() / ".imagemill"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def _provider_env(variable: str, description: str) -> Any:
    """A field set by a provider's standard variable (``OPENAI_API_KEY``), unprefixed."""
    return Field(
        None, validation_alias=AliasChoices(variable, variable.lower()), description=description
    )


class Settings(BaseSettings):
    """imagemill's configuration. Each field is also the env var ``IMAGEMILL_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix="IMAGEMILL_", extra="ignore", populate_by_name=True
    )

    data_dir: Path = Field(
        DEFAULT_DATA_DIR, description="Where the embedded default keeps its files."
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default: SQLite file `<data_dir>/imagemill.db`."
    )
    storage_url: str | None = Field(
        None, description="Blob store URL (`file:///path`); default: `<data_dir>/blobs`."
    )
    models_dir: Path | None = Field(
        None,
        description="Local diffusers model folders (each becomes `local/<folder>`); "
        "default: `<data_dir>/models`.",
    )
    local_device: Literal["auto", "cuda", "mps", "cpu"] = Field(
        "auto", description="Where local models run; `auto`: CUDA, then MPS, then the CPU."
    )
    local_memory_gb: float | None = Field(
        None,
        gt=0,
        description="Weights of local models kept loaded (least recently used unloaded "
        "first); default: 80% of the GPU's memory, or half of the RAM.",
    )
    local_batch_size: int = Field(
        8,
        ge=1,
        le=64,
        description="Most images in one local pipeline call: queued requests with the same "
        "model, size and steps are batched up to this.",
    )
    semantic_search: Literal["auto", "off"] = Field(
        "auto",
        description="Search the gallery (and GET /v1/search) by meaning, with sentence "
        "embeddings of each job's text, where the search extra is installed "
        "(imagemill[search]); off: substring matching only.",
    )
    safety_threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Score outputs with the Open-NSFW classifier (imagemill[safety]) and flag "
        "those at or above this (0.8 is a common choice); flagged thumbnails are blurred. "
        "Off when unset.",
    )
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Options of a cloud blob store, as JSON: "
        '`{"endpoint": "http://s3.local:8333", "region": "us-east-1"}` (or the `AWS_*` variables).',
    )
    broker_url: str = Field("memory://", description="Task transport; `memory://` runs in-process.")
    broker_queue: str = Field(
        "imagemill.jobs",
        description="Queue (RabbitMQ) or list (Redis) of job wake-ups; one per deployment.",
    )
    rate_limit_storage_url: str | None = Field(
        None,
        description="Where API keys' rate limits are counted: `memory://` (this process), or "
        "`redis://…` to share them among API processes; default: the broker's URL when it "
        "is Redis, else `memory://`.",
    )
    host: str = Field("127.0.0.1", description="Address `imagemill serve` binds to.")
    port: int = Field(8000, ge=0, le=65535, description="Port `imagemill serve` listens on.")
    public_url: str | None = Field(
        None, description="Base URL clients reach the server at, when behind a proxy."
    )
    workers: bool = Field(True, description="Run job workers inside the server process.")
    log_format: Literal["console", "json"] = Field(
        "console",
        description="`console`: lines for people; `json`: one JSON object a line, with "
        "request and job ids.",
    )
    log_level: Literal["debug", "info", "warning", "error", "critical"] = Field(
        "info",
        description="Level of imagemill's and uvicorn's logs (on standard error, secrets "
        "blanked out); `debug` also shows the libraries' own (httpx, provider SDKs).",
    )
    worker_concurrency: int = Field(
        8,
        ge=1,
        le=1024,
        description="Jobs on local devices (local models: CPU or GPU work) one process runs "
        "at once.",
    )
    hosted_concurrency: int = Field(
        10_000,
        ge=1,
        le=100_000,
        description="Jobs on hosted providers (each mostly waits on the network) one process "
        "keeps in flight at once; a provider's own limit is IMAGEMILL_PROVIDER_CONCURRENCY.",
    )
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
    circuit_failure_threshold: int = Field(
        5,
        ge=0,
        le=1000,
        description="Calls in a row a provider may fail (down, timed out, 5xx) before its "
        "circuit opens and jobs skip it to their fallback; 0 never opens.",
    )
    circuit_cooldown_seconds: float = Field(
        30.0, gt=0, description="How long an open circuit skips its provider before a trial call."
    )
    max_wait_seconds: float = Field(
        120.0, ge=0, description="Longest `Prefer: wait=N` or OpenAI-compatible call the API holds."
    )
    openai_wait_seconds: float = Field(
        600.0,
        gt=0,
        description="Longest an OpenAI-compatible call waits for its images (the openai SDK "
        "waits 10 minutes); it answers sooner when the client says it waits less.",
    )
    require_keys: bool | None = Field(
        None,
        description="Require API keys. Default: only when bound to a non-loopback address.",
    )
    max_upload_bytes: int = Field(25 * 1024 * 1024, gt=0, description="Largest accepted upload.")
    max_image_pixels: int = Field(
        50_000_000, gt=0, description="Largest accepted image, in pixels."
    )
    decode_budget_pixels: int = Field(
        64_000_000,
        gt=0,
        description="Pixels being decoded at once, at most (checking uploads, thumbnails, "
        "fitting sizes), about 4 bytes each: bounds the memory image work takes however many "
        "requests arrive together.",
    )
    response_budget_bytes: int = Field(
        16 * 1024 * 1024,
        gt=0,
        description="Bytes of provider answers one process holds at once, at most, from "
        "reading them until their images are stored (a 2 MB PNG comes as about 2.7 MB of "
        "base64): bounds the memory a burst of large images takes; a job whose answer would "
        "pass it waits before reading it.",
    )
    allowed_private_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="CIDRs that fetched URLs (inputs, webhooks) may reach despite being private.",
    )

    job_deadline_seconds: float = Field(
        1800.0,
        gt=0,
        description="A job not finished this long after submit fails, retries included.",
    )

    webhook_max_attempts: int = Field(
        8, ge=1, le=50, description="Attempts per webhook delivery before it is failed."
    )
    webhook_retry_base_seconds: float = Field(
        5.0, ge=0, description="First webhook retry delay; doubles each attempt."
    )
    webhook_retry_max_seconds: float = Field(
        3600.0, ge=0, description="Cap of the webhook retry delay."
    )
    webhook_timeout_seconds: float = Field(
        10.0, gt=0, description="How long a webhook target has to answer."
    )
    webhook_concurrency: int = Field(
        16, ge=1, le=1024, description="Webhook deliveries one process sends at once."
    )

    # -- hosted providers: their own standard variables, without the IMAGEMILL_ prefix ------
    openai_api_key: SecretStr | None = _provider_env("OPENAI_API_KEY", "OpenAI API key.")
    openai_base_url: str | None = _provider_env("OPENAI_BASE_URL", "OpenAI API base URL.")
    gemini_api_key: SecretStr | None = _provider_env("GEMINI_API_KEY", "Google Gemini API key.")
    gemini_base_url: str | None = _provider_env("GEMINI_BASE_URL", "Gemini API base URL.")
    replicate_api_token: SecretStr | None = _provider_env(
        "REPLICATE_API_TOKEN", "Replicate API token."
    )
    replicate_base_url: str | None = _provider_env("REPLICATE_BASE_URL", "Replicate API base URL.")
    replicate_webhook_secret: SecretStr | None = Field(
        None,
        description="Replicate's webhook signing secret (`whsec_…`); default: fetched "
        "from Replicate with the token.",
    )
    recraft_api_key: SecretStr | None = _provider_env("RECRAFT_API_KEY", "Recraft API key.")
    recraft_base_url: str | None = _provider_env("RECRAFT_BASE_URL", "Recraft API base URL.")
    provider_timeout_seconds: float = Field(
        120.0, gt=0, description="Longest one HTTP call to a hosted provider may take."
    )
    provider_concurrency: dict[str, int] = Field(
        default_factory=dict,
        description='Jobs per provider at once, per worker process, as JSON: `{"openai": 4}`.',
    )
    prices: dict[str, Pricing] = Field(
        default_factory=dict,
        description="Price overrides per model id, as JSON: "
        '`{"openai/dall-e-3": {"per_image": 0.04, "by_size": {"1792x1024": 0.08}}}`.',
    )

    @field_validator("rate_limit_storage_url")
    @classmethod
    def _counted_where(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("memory://", "redis://", "rediss://")):
            raise ValueError("rate limits are counted in memory:// or redis://… (rediss://…)")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

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
        return self.database_url or f"sqlite:///{self.data_dir / 'imagemill.db'}"

    @property
    def resolved_models_dir(self) -> Path:
        return self.models_dir or self.data_dir / "models"

    @property
    def resolved_rate_limit_storage_url(self) -> str:
        if self.rate_limit_storage_url:
            return self.rate_limit_storage_url
        redis = self.broker_url.startswith(("redis://", "rediss://"))
        return self.broker_url if redis else "memory://"

    @property
    def resolved_storage_url(self) -> str:
        return self.storage_url or (self.data_dir / "blobs").resolve().as_uri()

    @staticmethod
    def env_name(field: str) -> str:
        """The environment variable that sets ``field``."""
        alias = Settings.model_fields[field].validation_alias
        if isinstance(alias, AliasChoices):
            return str(alias.choices[0])
        return f"IMAGEMILL_{field.upper()}"

    @property
    def keys_required(self) -> bool:
        if self.require_keys is not None:
            return self.require_keys
        return self.host not in LOOPBACK_HOSTS
