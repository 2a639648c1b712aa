"""Route length and time between two points: an OSRM-compatible router (ROUTER_URL) when
one is configured and answers in time, otherwise the great-circle estimate
(ROUTE_FACTOR, CITY_SPEED_KMH). ETAs on the per-report path use the estimate only: a
router call per position report would cost more than the report."""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass

import httpx

from taxi.core.config import Settings
from taxi.domain.fares import MAX_METERS
from taxi.domain.positions import Fix, distance
from taxi.domain.readmodels import LocationView

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Route:
    meters: int
    seconds: int


@dataclass(frozen=True, slots=True)
class Estimator:
    """The router-less estimate: great-circle distance * factor, at the city's speed."""

    route_factor: float = 1.3
    speed_kmh: float = 25.0

    @classmethod
    def of(cls, settings: Settings) -> Estimator:
        return cls(route_factor=settings.route_factor, speed_kmh=settings.city_speed_kmh)

    def route(self, *, start: tuple[float, float], end: tuple[float, float]) -> Route:
        meters = distance(*start, *end) * self.route_factor
        return Route(meters=round(meters), seconds=self.seconds(meters))

    def seconds(self, meters: float) -> int:
        return round(meters / (self.speed_kmh / 3.6))

    def eta(self, *, fix: Fix, stop: tuple[float, float]) -> int:
        """Seconds from a car's position to a stop."""
        return self.route(start=(fix.latitude, fix.longitude), end=stop).seconds

    def located(self, *, location: LocationView, stop: tuple[float, float] | None) -> LocationView:
        """A driverLocation frame: the position, with the ETA to the trip's next stop."""
        start = (location.latitude, location.longitude)
        eta = None if stop is None else self.route(start=start, end=stop).seconds
        # Built, not dataclasses.replace'd: one per report of a car on a trip.
        return LocationView(
            latitude=location.latitude,
            longitude=location.longitude,
            heading=location.heading,
            recorded_at=location.recorded_at,
            eta_seconds=eta,
        )


class Router:
    """OSRM's `/route/v1/driving/{lon},{lat};{lon},{lat}` with the estimate as fallback.
    One pooled HTTP client per process (opened with the app's services)."""

    def __init__(self, *, url: str | None, estimator: Estimator, timeout: float) -> None:
        self.estimator = estimator
        # A quote waits this long for the router, then estimates (ROUTER_TIMEOUT_SECONDS,
        # PROTOCOL.md: "slow (> 300 ms)").
        self.timeout = timeout
        self._client = httpx.AsyncClient(base_url=url.rstrip("/"), timeout=timeout) if url else None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def route(self, *, start: tuple[float, float], end: tuple[float, float]) -> Route:
        if self._client is not None:
            try:
                # The whole exchange, not each phase (httpx's timeout), is bounded.
                async with asyncio.timeout(self.timeout):
                    return await self._ask(self._client, start, end)
            except (TimeoutError, httpx.HTTPError, ValueError, LookupError, TypeError) as exc:
                # Slow, down or answering nonsense: the estimate, and a line for the operator.
                log.warning("router failed, using the estimate: %r", exc)
        return self.estimator.route(start=start, end=end)

    @staticmethod
    async def _ask(
        client: httpx.AsyncClient, start: tuple[float, float], end: tuple[float, float]
    ) -> Route:
        points = f"{start[1]!r},{start[0]!r};{end[1]!r},{end[0]!r}"
        response = await client.get(
            f"/route/v1/driving/{points}", params={"overview": "false", "steps": "false"}
        )
        response.raise_for_status()
        body = response.json()
        if body.get("code") != "Ok":
            raise ValueError(f"router answered {body.get('code')!r}")
        best = body["routes"][0]
        meters, seconds = float(best["distance"]), float(best["duration"])
        if not all(math.isfinite(v) and 0 <= v <= MAX_METERS for v in (meters, seconds)):
            raise ValueError("not a route length and time")
        return Route(meters=round(meters), seconds=round(seconds))
