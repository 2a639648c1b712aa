"""What a browser loads: `/` links somewhere useful, GraphiQL and the web app are served with
every asset from this server (no CDN), with the right content types."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urljoin

import httpx

from taxi.core.config import Settings
from tests.backends import base_settings

BROWSER = {"Accept": "text/html,application/xhtml+xml"}
TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}


class _Assets(HTMLParser):
    """Every URL an HTML page makes the browser fetch (scripts, styles, icons) or links to."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "script" and values.get("src"):
            self.loads.append(values["src"] or "")
        if tag == "link" and values.get("href"):
            self.loads.append(values["href"] or "")
        if tag == "a" and values.get("href"):
            self.links.append(values["href"] or "")


def _parse(html: str) -> _Assets:
    parser = _Assets()
    parser.feed(html)
    return parser


def _same_origin(url: str) -> bool:
    return url.startswith("data:") or not re.match(r"^([a-z]+:)?//", url)


async def _check_served(client: httpx.AsyncClient, page: str, url: str) -> str:
    if url.startswith("data:"):
        return ""
    path = urljoin(page, url)
    response = await client.get(path)
    assert response.status_code == 200, path
    suffix = path[path.rfind(".") :]
    assert response.headers["content-type"].startswith(TYPES[suffix]), (path, response.headers)
    return response.text


async def test_home_links_the_app_graphiql_and_admin(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    links = _parse(response.text).links
    assert {"/app/", "/graphql", "/admin/"} <= set(links)


async def test_graphiql_is_served_offline(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", headers=BROWSER)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = _parse(response.text)
    assert page.loads, response.text
    assert all(_same_origin(url) for url in page.loads), page.loads
    bodies = [await _check_served(client, "/graphql", url) for url in page.loads]
    assert any("graphql-transport-ws" in body for body in bodies)  # the graphql-ws client
    assert any("graphiql-container" in body for body in bodies)  # GraphiQL's stylesheet


async def test_the_app_loads_only_its_own_assets(client: httpx.AsyncClient) -> None:
    index = await client.get("/app/")
    assert index.status_code == 200
    assert {"rider.html", "driver.html"} <= set(_parse(index.text).links)
    for name in ("rider.html", "driver.html"):
        page = f"/app/{name}"
        html = (await client.get(page)).text
        loads = _parse(html).loads
        assert all(_same_origin(url) for url in loads), loads
        pending = [(page, url) for url in loads]
        seen: set[str] = set()
        while pending:  # follow the ES module imports too
            base, url = pending.pop()
            path = urljoin(base, url)
            if path in seen or url.startswith("data:"):
                continue
            seen.add(path)
            body = await _check_served(client, base, url)
            if path.endswith(".js"):
                for spec in re.findall(r'^import [^;]*? from "([^"]+)";', body, flags=re.M):
                    assert _same_origin(spec), (path, spec)
                    pending.append((path, spec))
        assert "/vendor/graphql-ws.js" in seen, seen


async def test_app_config_has_the_map_settings(client: httpx.AsyncClient) -> None:
    body = (await client.get("/app/config.json")).json()
    assert body == {
        "center": {"latitude": 52.52, "longitude": 13.405},
        "tileUrl": None,
        "noShowSeconds": 300.0,
    }


async def test_tile_url_reaches_the_app() -> None:
    from taxi.main import create_app

    settings: Settings = base_settings(
        tile_url="https://tiles.example/{z}/{x}/{y}.png", map_center="40.7,-74.0", no_show_seconds=2
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        body = (await c.get("/app/config.json")).json()
    assert body == {
        "center": {"latitude": 40.7, "longitude": -74.0},
        "tileUrl": "https://tiles.example/{z}/{x}/{y}.png",
        "noShowSeconds": 2.0,
    }
