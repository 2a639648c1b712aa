"""The web app in real headless Chromium: tests/js/browser.mjs rides a whole dispatched trip
with a driver context and a rider context (and opens GraphiQL), against a live server.

Chromium comes from the system's packages (`.ci/run` installs it when missing); Playwright
drives it and never downloads a browser. Without Chromium or node the test skips locally and
fails with CI=true. Screenshots of every step land in tests/artifacts/browser-<backend>/."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from taxi.core.config import Settings
from tests.backends import CI, Backend, sub_prefix
from tests.live import serve
from tests.node import ensure_node_modules, run, tools

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"
BROWSER_TIMEOUT = 180.0  # the script fails each step by itself after STEP_TIMEOUT_MS


def _chromium() -> str:
    if shutil.which(CHROMIUM):
        return CHROMIUM
    message = f"browser test: no Chromium at {CHROMIUM} (apt-get install chromium, or set CHROMIUM)"
    if CI:
        pytest.fail(f"CI=true but {message}")
    pytest.skip(message)


async def test_browser_ride(settings: Settings, backend: Backend) -> None:
    chromium = _chromium()
    node, npm = tools()
    await ensure_node_modules(npm)
    shots = ARTIFACTS / f"browser-{backend.name}"
    shutil.rmtree(shots, ignore_errors=True)
    env = {**os.environ, "CHROMIUM": chromium, "STEP_TIMEOUT_MS": "20000"}
    # Its own channels and position store: drivers that other tests left online at the
    # map's centre (positions outlive a test on the shared Redis) stay out of this ride.
    settings = settings.model_copy(update={"channel_prefix": sub_prefix("browser")})
    async with serve(settings) as live:
        code, out = await run(
            node, "browser.mjs", live.url, str(shots), limit=BROWSER_TIMEOUT, env=env
        )
    assert code == 0, f"node browser.mjs exited with {code}:\n{out}"
    assert "ride complete" in out
    assert len(list(shots.glob("*.png"))) >= 10, out
