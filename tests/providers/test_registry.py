"""The registry: providers from entry points, model lookup by id and alias."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from imagemill.config import Settings
from imagemill.domain import ModelSpec, Output, Task
from imagemill.errors import InvalidInput
from imagemill.providers.base import ENTRY_POINT_GROUP, RunContext
from imagemill.providers.placeholder import PlaceholderProvider
from imagemill.providers.registry import Registry


class Aliased:
    name = "acme"

    def models(self) -> list[ModelSpec]:
        return [
            ModelSpec(id="acme/big-1", provider="acme", name="big-1", aliases=["big"]),
            ModelSpec(id="acme/small-1", provider="acme", name="small-1"),
        ]

    async def run(self, task: Task, ctx: RunContext) -> list[Output]:
        return []


def test_resolve_by_id_and_alias() -> None:
    acme = Aliased()
    registry = Registry([PlaceholderProvider(), acme])

    provider, spec = registry.resolve("acme/big-1")
    assert (provider, spec.name) == (acme, "big-1")
    assert registry.resolve("big") == registry.resolve("acme/big-1")
    assert registry.resolve("placeholder")[1].id == "placeholder"
    assert sorted(s.id for s in registry.models()) == ["acme/big-1", "acme/small-1", "placeholder"]
    assert set(registry.providers) == {"acme", "placeholder"}


@pytest.mark.parametrize("field", ["model", "models.3"])
def test_an_unknown_model_is_invalid_input_on_the_field(field: str) -> None:
    registry = Registry([PlaceholderProvider()])
    with pytest.raises(InvalidInput) as raised:
        registry.resolve("acme/nope", field)
    assert raised.value.field == field
    assert "acme/nope" in raised.value.message


def test_from_entry_points_finds_the_builtin_placeholder(settings: Settings) -> None:
    registry = Registry.from_entry_points(settings)
    provider, spec = registry.resolve("placeholder")
    assert isinstance(provider, PlaceholderProvider)
    assert spec.provider == "placeholder"


def _install_plugin(root: Path, name: str, target: str) -> None:
    """A distribution on ``sys.path`` that declares one ``imagemill.providers`` entry point."""
    info = root / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{name} = {target}\n")


def test_a_broken_plugin_does_not_stop_the_others(
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    (tmp_path / "broken_imagemill_plugin.py").write_text(
        "def factory(settings):\n    raise RuntimeError('missing API key')\n"
    )
    (tmp_path / "good_imagemill_plugin.py").write_text(
        "from imagemill.domain import ModelSpec\n"
        "class Good:\n"
        "    name = 'good'\n"
        "    def __init__(self, settings): pass\n"
        "    def models(self): return [ModelSpec(id='good/one', provider='good', name='one')]\n"
        "    async def run(self, task, ctx): return []\n"
    )
    _install_plugin(tmp_path, "broken_plugin", "broken_imagemill_plugin:factory")
    _install_plugin(tmp_path, "missing_plugin", "no_such_module_anywhere:factory")
    _install_plugin(tmp_path, "good_plugin", "good_imagemill_plugin:Good")
    monkeypatch.syspath_prepend(str(tmp_path))

    with caplog.at_level(logging.ERROR, logger="imagemill.providers.registry"):
        registry = Registry.from_entry_points(settings)

    assert registry.resolve("placeholder")[1].id == "placeholder"
    assert registry.resolve("good/one")[1].provider == "good"
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "broken_plugin" in logged and "missing_plugin" in logged
