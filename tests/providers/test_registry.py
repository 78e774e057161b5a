"""The registry: providers from entry points, model lookup by id and alias, price overrides;
and the price tables themselves."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imagemill.config import Settings
from imagemill.domain import Output, Size, Task
from imagemill.errors import InvalidInput
from imagemill.providers.base import ENTRY_POINT_GROUP, RunContext
from imagemill.providers.placeholder import PlaceholderProvider
from imagemill.providers.registry import Registry
from imagemill.specs import ModelSpec, Pricing


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


_SDKS = ("openai", "google.genai", "replicate", "aiohttp")
_IMPORTED_SDKS = f"""
import sys
from imagemill.config import Settings
from imagemill.providers.registry import Registry
registry = Registry.from_entry_points(Settings())
assert registry.resolve("placeholder")
print(" ".join(m for m in {_SDKS!r} if m in sys.modules))
"""


@pytest.mark.parametrize(
    ("keys", "imported"),
    [
        ({}, set()),
        ({"OPENAI_API_KEY": "sk-test", "REPLICATE_API_TOKEN": "r8_test"}, {"openai", "replicate"}),
    ],
)
def test_a_providers_sdk_is_imported_only_where_its_key_is_set(
    keys: dict[str, str], imported: set[str]
) -> None:
    """Importing the hosted providers' SDKs costs a process about 2 s of CPU at start-up
    (every CLI command, every worker): without their keys, nothing imports them."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("IMAGEMILL_") and not name.endswith(("_API_KEY", "_API_TOKEN"))
    }
    found = subprocess.run(
        [sys.executable, "-c", _IMPORTED_SDKS],
        env={**env, **keys},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    sdks = set(found.stdout.split())
    assert imported <= sdks
    assert "google.genai" not in sdks  # no Gemini key in either case
    if not keys:
        assert not sdks  # aiohttp neither: only a keyed SDK brings it


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
        "from imagemill.providers.base import ModelSpec\n"
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


# -- prices ---------------------------------------------------------------------------------


class Priced:
    name = "acme"

    def models(self) -> list[ModelSpec]:
        return [
            ModelSpec(
                id="acme/big-1",
                provider="acme",
                name="big-1",
                aliases=["big"],
                pricing=Pricing(per_image=0.10, by_size={"2048x2048": 0.30}),
            ),
            ModelSpec(
                id="acme/small-1", provider="acme", name="small-1", pricing=Pricing(per_image=0.01)
            ),
        ]

    async def run(self, task: Task, ctx: RunContext) -> list[Output]:
        return []


def test_a_price_override_replaces_the_models_whole_price_table() -> None:
    override = Pricing(per_image=0.05, by_quality={"hd": {"*": 0.09}})
    registry = Registry([Priced(), PlaceholderProvider()], {"acme/big-1": override})

    [big] = [s for s in registry.models() if s.id == "acme/big-1"]
    configured = override.model_copy(update={"configured": True})  # the operator's: it wins
    assert big.pricing == configured
    assert registry.resolve("acme/big-1")[1].pricing == configured
    assert registry.resolve("big")[1].pricing == configured
    assert not Registry([Priced()]).resolve("big")[1].pricing.configured
    # The whole table is replaced: the built-in by-size price is gone.
    assert Registry([Priced()]).resolve("big")[1].pricing.price(Size(2048, 2048)) == 0.30
    assert big.pricing.price(Size(2048, 2048)) == 0.05
    assert big.pricing.price(Size(2048, 2048), "hd") == 0.09


def test_models_without_an_override_keep_their_prices() -> None:
    registry = Registry([Priced(), PlaceholderProvider()], {"acme/big-1": Pricing(per_image=1.0)})

    assert registry.resolve("acme/small-1")[1].pricing == Pricing(per_image=0.01)
    assert registry.resolve("placeholder")[1].pricing == Pricing(per_image=0.0)


def test_an_override_for_an_unknown_model_is_ignored() -> None:
    registry = Registry([Priced()], {"nope/x": Pricing(per_image=9.0)})
    assert sorted(s.pricing.per_image for s in registry.models()) == [0.01, 0.10]


def test_from_entry_points_applies_the_configured_prices(settings: Settings) -> None:
    configured = settings.model_copy(update={"prices": {"placeholder": Pricing(per_image=0.02)}})
    registry = Registry.from_entry_points(configured)
    assert registry.resolve("placeholder")[1].pricing == Pricing(per_image=0.02, configured=True)


DALL_E_3_PRICES = Pricing(
    per_image=0.04,
    by_size={"1792x1024": 0.08, "1024x1792": 0.08},
    by_quality={"hd": {"1024x1024": 0.08, "*": 0.12}},
)


@pytest.mark.parametrize(
    ("size", "quality", "price"),
    [
        (Size(1024, 1024), None, 0.04),  # flat
        (Size(1792, 1024), None, 0.08),  # by size
        (Size(1024, 1792), "standard", 0.08),  # a quality without a table: by size
        (Size(1024, 1024), "standard", 0.04),  # ... or flat
        (Size(1024, 1024), "hd", 0.08),  # by quality and size
        (Size(1792, 1024), "hd", 0.12),  # by quality, any other size ("*")
    ],
)
def test_pricing_by_size_then_quality(size: Size, quality: str | None, price: float) -> None:
    assert DALL_E_3_PRICES.price(size, quality) == price


def test_a_quality_table_without_a_wildcard_falls_back_to_the_size_price() -> None:
    pricing = Pricing(
        per_image=0.02, by_size={"512x512": 0.01}, by_quality={"high": {"1024x1024": 0.2}}
    )
    assert pricing.price(Size(1024, 1024), "high") == 0.2
    assert pricing.price(Size(512, 512), "high") == 0.01
    assert pricing.price(Size(640, 480), "high") == 0.02


def test_the_default_price_is_free() -> None:
    assert Pricing().price(Size(1024, 1024), "hd") == 0.0


def test_every_param_of_every_model_has_a_title_and_a_description(tmp_path: Path) -> None:
    """The studio labels a param by its schema's ``title`` and explains it with its
    ``description``: a raw name (``latency_ms``) or an unexplained field is a bug."""
    from fakes.tiny_diffusers import save_tiny_stable_diffusion
    from fakes.tiny_transformers import save_tiny_text_model

    settings = Settings(
        data_dir=tmp_path,
        openai_api_key="sk-test",
        gemini_api_key="test",
        replicate_api_token="r8_test",
        recraft_api_key="test",
    )
    save_tiny_stable_diffusion(settings.resolved_models_dir / "tiny")
    save_tiny_text_model(settings.resolved_models_dir / "tiny-writer")
    models = Registry.from_entry_points(settings).models()
    assert {"local/tiny", "local/tiny-writer", "openai/gpt-image-1"} <= {m.id for m in models}

    untitled = [
        f"{model.id}: {name}"
        for model in models
        for name, rule in model.params_schema.get("properties", {}).items()
        if not rule.get("title") or not rule.get("description")
    ]
    assert untitled == []
