"""Settings from ``IMAGEMILL_*`` environment variables, and what they imply."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from imagemill.config import Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("IMAGEMILL_"):
            monkeypatch.delenv(name)


def test_env_vars_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IMAGEMILL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("IMAGEMILL_PORT", "9001")
    monkeypatch.setenv("IMAGEMILL_WORKERS", "false")
    monkeypatch.setenv("IMAGEMILL_LEASE_SECONDS", "2.5")
    monkeypatch.setenv("IMAGEMILL_REQUIRE_KEYS", "true")

    settings = Settings()

    assert settings.data_dir == tmp_path
    assert settings.port == 9001
    assert settings.workers is False
    assert settings.lease_seconds == 2.5
    assert settings.require_keys is True


def test_allowed_private_networks_is_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "IMAGEMILL_ALLOWED_PRIVATE_NETWORKS", " 10.0.0.0/8, 192.168.1.0/24,,fd00::/8 "
    )
    assert Settings().allowed_private_networks == ["10.0.0.0/8", "192.168.1.0/24", "fd00::/8"]


def test_allowed_private_networks_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().allowed_private_networks == []
    monkeypatch.setenv("IMAGEMILL_ALLOWED_PRIVATE_NETWORKS", "")
    assert Settings().allowed_private_networks == []


@pytest.mark.parametrize("value", ["10.0.0.300/8", "not-a-network", "10.0.0.0/8,bogus"])
def test_an_invalid_cidr_is_an_error(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("IMAGEMILL_ALLOWED_PRIVATE_NETWORKS", value)
    with pytest.raises(ValidationError) as raised:
        Settings()
    assert "allowed_private_networks" in str(raised.value)


def test_a_list_given_in_code_is_checked_too() -> None:
    assert Settings(allowed_private_networks=["10.1.0.0/16"]).allowed_private_networks == [
        "10.1.0.0/16"
    ]
    with pytest.raises(ValidationError):
        Settings(allowed_private_networks=["10.1.0.0/33"])


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "70000"),
        ("LEASE_SECONDS", "0"),
        ("WORKER_CONCURRENCY", "0"),
        ("MAX_ATTEMPTS", "0"),
        ("MAX_ATTEMPTS", "21"),
        ("REQUEUE_AFTER_SECONDS", "-1"),
        ("JOB_TIMEOUT_SECONDS", "0"),
    ],
)
def test_out_of_range_values_are_rejected(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(f"IMAGEMILL_{name}", value)
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize(
    ("host", "required"),
    [
        ("127.0.0.1", False),
        ("localhost", False),
        ("::1", False),
        ("0.0.0.0", True),
        ("192.168.1.5", True),
        ("::", True),
    ],
)
def test_keys_are_required_off_loopback(host: str, required: bool) -> None:
    assert Settings(host=host).keys_required is required


def test_require_keys_overrides_the_host() -> None:
    assert Settings(host="127.0.0.1", require_keys=True).keys_required is True
    assert Settings(host="0.0.0.0", require_keys=False).keys_required is False


def test_defaults_live_under_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'imagemill.db'}"
    assert settings.resolved_storage_url == (tmp_path / "blobs").resolve().as_uri()
    assert settings.broker_url == "memory://"


def test_explicit_urls_win(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        database_url="postgresql+asyncpg://db/imagemill",
        storage_url="s3://bucket/prefix",
    )
    assert settings.resolved_database_url == "postgresql+asyncpg://db/imagemill"
    assert settings.resolved_storage_url == "s3://bucket/prefix"


def test_every_setting_is_described() -> None:
    undocumented = [name for name, field in Settings.model_fields.items() if not field.description]
    assert undocumented == []


@pytest.mark.parametrize(
    "price",
    [
        {"per_image": -0.01},
        {"by_size": {"1024x1024": -1}},
        {"by_quality": {"hd": {"*": -0.5}}},
    ],
)
def test_a_negative_price_is_refused(price: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(prices={"placeholder": price})
