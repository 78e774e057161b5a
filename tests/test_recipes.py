"""docs/recipes.md runs as written: every ``python`` and ``bash`` block of each recipe, in
order, from a working directory of the recipe's own, against a real ``imagemill serve``
on a fresh data dir, twice: with no provider keys (the recipes' fallbacks stand in), and
with keys for the providers' fakes (the hosted models do the work)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from fakes.gemini import FakeGemini
from fakes.openai_images import FakeOpenAI
from fakes.replicate import FakeReplicate
from fakes.server import free_port, serve, wait_until_ready

RECIPES = Path(__file__).parents[1] / "docs" / "recipes.md"
BLOCK = re.compile(r"^```(python|bash)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
PROVIDERS = ("OPENAI", "GEMINI", "REPLICATE", "RECRAFT")  # their variables are unprefixed


def _recipes() -> dict[str, list[tuple[str, str]]]:
    """Each ``## `` section's runnable blocks, in order."""
    sections: dict[str, list[tuple[str, str]]] = {}
    for section in RECIPES.read_text().split("\n## ")[1:]:
        title, _, body = section.partition("\n")
        sections[title] = [(m[1], m[2]) for m in BLOCK.finditer(body)]
    return sections


def _environment(**extra: str) -> dict[str, str]:
    """This process's environment without anything that configures imagemill or holds a
    provider's key, the project's executables first on the PATH."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("IMAGEMILL_", *(f"{p}_" for p in PROVIDERS)))
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


@contextmanager
def _hosted_fakes() -> Iterator[dict[str, str]]:
    """The OpenAI, Gemini and Replicate fakes, served; the settings that point at them."""
    openai, gemini = FakeOpenAI(api_key="sk-recipes"), FakeGemini(api_key="gm-recipes")
    replicate = FakeReplicate(token="r8_recipes", run_seconds=0.1)
    with (
        serve(openai.app) as openai_url,
        serve(gemini.app) as gemini_url,
        serve(replicate.app) as replicate_url,
    ):
        yield {
            "OPENAI_API_KEY": "sk-recipes",
            "OPENAI_BASE_URL": f"{openai_url}/v1",
            "GEMINI_API_KEY": "gm-recipes",
            "GEMINI_BASE_URL": gemini_url,
            "REPLICATE_API_TOKEN": "r8_recipes",
            "REPLICATE_BASE_URL": replicate_url,
        }


@pytest.fixture(scope="module", params=["offline", "hosted"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``imagemill serve`` without keys, or with keys for the hosted fakes."""
    data_dir = tmp_path_factory.mktemp(f"recipes-{request.param}")
    port = free_port()
    log_path = data_dir / "server.log"
    with contextlib.ExitStack() as stack:
        keys = stack.enter_context(_hosted_fakes()) if request.param == "hosted" else {}
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [Path(sys.executable).with_name("imagemill"), "serve", "--port", str(port)],
                env=_environment(IMAGEMILL_DATA_DIR=str(data_dir), **keys),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_ready(url, process, log_path)
            yield url, request.param
        finally:
            process.terminate()
            process.wait(timeout=30)


def test_the_readme_links_the_recipes() -> None:
    readme = (RECIPES.parents[1] / "README.md").read_text()
    assert "](docs/recipes.md)" in readme


def test_every_recipe_has_a_python_and_a_bash_version() -> None:
    recipes = _recipes()
    assert len(recipes) == 4
    for title, blocks in recipes.items():
        assert {kind for kind, _ in blocks} == {"python", "bash"}, title


@pytest.mark.parametrize("title", list(_recipes()))
def test_the_recipe_runs_as_written(server: tuple[str, str], title: str, tmp_path: Path) -> None:
    assert shutil.which("jq"), "the recipes' curl examples need jq (apt-get install jq)"
    url, mode = server
    env = _environment(IMAGEMILL_URL=url)
    before = {job["id"] for job in _jobs(url)}
    for kind, code in _recipes()[title]:
        command = (
            [sys.executable, "-c", code]
            if kind == "python"
            else ["bash", "-euo", "pipefail", "-c", code]
        )
        result = subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, (
            f"{title}: this {kind} block failed\n{code}\n--- stdout\n{result.stdout}"
            f"\n--- stderr\n{result.stderr}"
        )

    made = [job for job in _jobs(url) if job["id"] not in before]
    assert made and all(job["status"] == "succeeded" for job in made)
    asked_hosted = [job for job in made if job["request"]["fallback"]]
    stood_in = [job for job in asked_hosted if job["outputs"][0]["fallback"]]
    if mode == "hosted":  # the hosted models (their fakes) did the work
        assert not stood_in, [job["outputs"][0]["fallback_reason"] for job in stood_in]
    else:  # no keys here: every hosted model's fallback stood in, and said why
        assert stood_in == asked_hosted
        assert all("is unavailable" in job["outputs"][0]["fallback_reason"] for job in stood_in)


def _jobs(url: str) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = httpx.get(f"{url}/v1/jobs", params={"limit": 200}).json()["data"]
    return jobs
