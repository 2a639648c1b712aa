"""What a person opens in a browser: `/` (links), the web app at `/app/`, the offline GraphiQL
page, and the vendored browser files it and the app load (`/vendor/`, built by web/build.mjs).

Every asset is served by this process: no CDN, so all of it works offline or air-gapped.
The app's two pages share their head and log-in panel: `/app/rider.html` and
`/app/driver.html` are web/roles/page.html with the role's name (`$role`, `$Role`) and
its panels (web/roles/<role>.html, in place of `$panels`)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from string import Template

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from taxi.core.config import Settings

WEB = Path(__file__).parent.parent / "web"
ROLES = ("rider", "driver")


@cache
def _page(name: str) -> str:
    return (WEB / name).read_text(encoding="utf-8")


@cache
def _app_page(role: str) -> str:
    page = Template(_page("roles/page.html"))
    panels = _page(f"roles/{role}.html").removesuffix("\n")
    return page.substitute(role=role, Role=role.title(), panels=panels)


def graphiql_html() -> str:
    return _page("graphiql.html")


async def home(_request: Request) -> HTMLResponse:
    return HTMLResponse(_page("home.html"))


def _app_route(role: str) -> Route:
    async def page(_request: Request) -> HTMLResponse:
        return HTMLResponse(_app_page(role))

    return Route(f"/app/{role}.html", page)


async def app_config(request: Request) -> JSONResponse:
    """What the web app cannot know by itself: where its map starts, where tiles come from,
    and how long a driver waits at the pick-up before a no-show may be reported."""
    settings: Settings = request.app.state.settings
    latitude, longitude = settings.map_center_point
    return JSONResponse(
        {
            "center": {"latitude": latitude, "longitude": longitude},
            "tileUrl": settings.tile_url,
            "noShowSeconds": settings.no_show_seconds,
        }
    )


def routes() -> list[BaseRoute]:
    return [
        Route("/", home),
        Route("/app/config.json", app_config),
        *(_app_route(role) for role in ROLES),
        Mount("/app", StaticFiles(directory=WEB / "app", html=True), name="app"),
        Mount("/vendor", StaticFiles(directory=WEB / "vendor"), name="vendor"),
    ]
