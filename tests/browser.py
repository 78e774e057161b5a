"""The studio in a real browser: Debian's Chromium driven by Playwright (never a browser
Playwright downloads). Used by the browser tests and by ``scripts/screenshots.py``."""

from __future__ import annotations

import asyncio
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from imagemill.auth import new_key
from imagemill.config import Settings
from imagemill.jobs.service import utcnow
from imagemill.runtime import Runtime

CHROMIUM = "/usr/bin/chromium"  # Debian's package
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here, or ``None``."""
    if not Path(CHROMIUM).exists() and not shutil.which(CHROMIUM):
        return f"no Chromium at {CHROMIUM} (scripts/test installs Debian's package)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (it is in the dev extra)"
    return None


# The page's cumulative layout shift so far (Chromium's Layout Instability API).
LAYOUT_SHIFT = """() => new Promise((resolve) => {
  let shift = 0;
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) if (!entry.hadRecentInput) shift += entry.value;
  }).observe({ type: "layout-shift", buffered: true });
  setTimeout(() => resolve(shift), 300);
})"""
AXE = Path(__file__).parent / "web" / "node_modules" / "axe-core" / "axe.min.js"


def require_chromium() -> None:
    """Skip the calling test module where Chromium cannot run (fail instead in CI, where
    the browser tests must run)."""
    import os

    import pytest

    missing = chromium_missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests must run in CI: {missing}", pytrace=False)
        pytest.skip(missing, allow_module_level=True)


def make_keys(settings: Settings, *owners: str) -> dict[str, str]:
    """An API key for each owner, made before the server starts: {owner: key}."""

    async def make() -> dict[str, str]:
        keys = {}
        async with Runtime(settings, run_workers=False, sweep=False) as runtime:
            for name in owners:
                owner = await runtime.accounts.owner_named(name, utcnow())
                key = new_key()
                await runtime.accounts.add_key(owner.id, name, key.prefix, key.key_hash, utcnow())
                keys[name] = key.plaintext
        return keys

    # A thread of its own: Playwright's sync API keeps an event loop in this one.
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, make()).result()
