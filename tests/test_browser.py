"""The web app in real headless Chromium: tests/js/browser.mjs rides with drivers and riders
in their own browser contexts against a live server, on a desktop screen (plus the home page
and GraphiQL) and on a phone's (390 x 844): a quoted ride to its receipt, the ETA falling and
"your driver is here", a trip given back and taken by another driver, a no-show, an expiry,
a session ended elsewhere (4403), and a keyboard-only rider whom an admin then deactivates.

Chromium comes from the system's packages (`.ci/run` installs it when missing); Playwright
drives it and never downloads a browser. Without Chromium or node the test skips locally and
fails with CI=true. Screenshots of every step land in
tests/artifacts/browser-<backend>/<screen>/."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from taxi.core.config import Settings
from taxi.domain.services.sessions import deactivate_user
from tests.backends import CI, Backend, sub_prefix
from tests.live import serve
from tests.node import ensure_node_modules, run, tools

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"
BROWSER_TIMEOUT = 240.0  # the script fails each step by itself after STEP_TIMEOUT_MS
# Short enough for the test to see a request expire and a no-show become possible, long
# enough for a driver in the test to accept a trip (and another to take it back) in time.
DISPATCH_TIMEOUT_SECONDS = 8.0
NO_SHOW_SECONDS = 2.0


def _chromium() -> str:
    if shutil.which(CHROMIUM):
        return CHROMIUM
    message = f"browser test: no Chromium at {CHROMIUM} (apt-get install chromium, or set CHROMIUM)"
    if CI:
        pytest.fail(f"CI=true but {message}")
    pytest.skip(message)


# Long enough for the app's refresh margin (15 s before expiry), short enough to wait for.
SHORT_TOKEN_TTL = 17


async def _browse(
    settings: Settings,
    backend: Backend,
    shots_name: str,
    script_env: dict[str, str],
    **update: object,
) -> tuple[Path, str]:
    """browser.mjs against a live server with `update` applied to its settings; the
    screenshots and the script's output (browser.log) in browser-<backend>/<shots_name>/.
    Its Redis keys (its own prefix) are dropped afterwards."""
    chromium = _chromium()
    node, npm = tools()
    await ensure_node_modules(npm)
    shots = ARTIFACTS / f"browser-{backend.name}" / shots_name
    shutil.rmtree(shots, ignore_errors=True)
    env = {**os.environ, "CHROMIUM": chromium, "STEP_TIMEOUT_MS": "20000", **script_env}
    # Its own channels and position store: drivers that other tests left online at the
    # map's centre (positions outlive a test on the shared Redis) stay out of these rides.
    # Its keys go with the session's after the test (tests/redis_keys.py).
    update["channel_prefix"] = sub_prefix("browser")
    mine = settings.model_copy(update=update)
    code, out = await _serve_and_run(mine, node, shots, env)
    # Beside the screenshots: what the script measured (re-dispatch, expiry, the ETAs).
    (shots / "browser.log").write_text(out, encoding="utf-8")
    assert code == 0, f"node browser.mjs exited with {code}:\n{out}"
    return shots, out


async def _serve_and_run(
    settings: Settings, node: str, shots: Path, env: dict[str, str]
) -> tuple[int, str]:
    """A live server for the script; a line "deactivate <user id>" from the script is done
    here, as an admin would."""
    async with serve(settings) as live:
        services = live.app.state.services

        async def admin(line: str) -> None:
            if line.startswith("deactivate "):
                assert await deactivate_user(
                    db=services.db,
                    events=services.events,
                    positions=services.positions,
                    settings=services.settings,
                    user_id=int(line.split()[1]),
                )

        return await run(
            node, "browser.mjs", live.url, str(shots), limit=BROWSER_TIMEOUT, env=env, on_line=admin
        )


@pytest.mark.parametrize("screen", ["desktop", "phone"])
async def test_browser_rides(settings: Settings, backend: Backend, screen: str) -> None:
    shots, out = await _browse(
        settings,
        backend,
        screen,
        {"SCREEN": screen},
        dispatch_timeout_seconds=DISPATCH_TIMEOUT_SECONDS,
        no_show_seconds=NO_SHOW_SECONDS,
    )
    assert f"rides complete ({screen})" in out
    assert "fare.quoted == receipt" in out, out
    assert len(list(shots.glob("*.png"))) >= 20, out


async def test_browser_reconnects_after_token_expiry(settings: Settings, backend: Backend) -> None:
    """The other 4403: the token that opened the socket expired. The page refreshes it and
    reconnects, still signed in (a refused refresh would end the session instead)."""
    _, out = await _browse(
        settings,
        backend,
        "token-expiry",
        {"SCENARIO": "token-expiry"},
        access_token_ttl=SHORT_TOKEN_TTL,
    )
    assert "token-expiry complete" in out, out
