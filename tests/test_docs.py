"""The README is part of the product: every setting and every endpoint is documented there."""

from __future__ import annotations

import re
from pathlib import Path

from imagemill.api.app import create_app
from imagemill.config import Settings

README = (Path(__file__).parents[1] / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    missing = [
        Settings.env_name(name)
        for name in Settings.model_fields
        if f"`{Settings.env_name(name)}`" not in README
    ]
    assert not missing, f"settings missing from the README's configuration table: {missing}"


def test_every_endpoint_is_documented() -> None:
    documented = README.replace("{id or name}", "{preset}")
    # The OpenAPI document's paths: FastAPI keeps an included router's routes inside it,
    # not in ``app.routes``.
    paths = list(create_app().openapi()["paths"])
    assert "/v1/jobs/{job_id}" in paths and len(paths) > 30
    missing = []
    for route_path in paths:
        path = re.sub(
            r"\{(\w+)(:path)?\}",
            lambda m: "{id}" if m[1].endswith("_id") else "{" + m[1] + "}",
            route_path,
        )
        if path not in documented:
            missing.append(route_path)
    assert not missing, f"endpoints missing from the README's API table: {missing}"


def test_readme_opens_with_the_two_commands() -> None:
    first_block = README.split("```bash", 1)[1].split("```", 1)[0]
    assert "./scripts/serve" in first_block and "./scripts/test" in first_block
