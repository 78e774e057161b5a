"""The README's screenshots: ``scripts/screenshots.py`` makes every one the README shows,
on a fresh install, showing only models a newcomer has."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from PIL import Image

from browser import require_chromium
from imagemill.config import Settings
from imagemill.providers.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
require_chromium()


def test_the_script_makes_every_screenshot_the_readme_shows(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "screenshots", ROOT / "scripts" / "screenshots.py"
    )
    assert spec and spec.loader
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    shown = script.main(tmp_path / "shots")

    fresh = Registry.from_entry_points(Settings(data_dir=tmp_path / "fresh")).models()
    assert set(shown) <= {m.id for m in fresh if m.available}
    readme = (ROOT / "README.md").read_text()
    pictured = re.findall(r"\(docs/screenshots/(\w+)\.png\)", readme)
    assert sorted(pictured) == sorted(script.SHOTS)
    for name in pictured:
        with Image.open(tmp_path / "shots" / f"{name}.png") as shot:
            assert shot.width == 1280 and shot.height >= 800, name
        assert (ROOT / "docs" / "screenshots" / f"{name}.png").exists(), name
