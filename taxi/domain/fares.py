"""The tariff and the rules of what a ride costs (PROTOCOL.md "Fares and the ride's
life"). Integers in minor units throughout: a price is computed once, rounded once, and
never passes through a float that is shown to anyone."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from taxi.core.config import Settings

# Distances and amounts are GraphQL Ints (32-bit) and INTEGER columns: whatever positions a
# client reports (a car "jumping" between continents adds its jumps to the driven
# distance), what is stored and served stays below these.
MAX_METERS = 100_000_000  # 100,000 km
MAX_AMOUNT = 2**31 - 1

# fare.final stays the quoted price unless the driven distance exceeds the quote's by more
# than this share.
DETOUR_TOLERANCE = Decimal("0.25")


@dataclass(frozen=True, slots=True)
class Tariff:
    currency: str
    base: int
    per_km: int
    per_minute: int
    minimum: int
    surge_max: float

    @classmethod
    def of(cls, settings: Settings) -> Tariff:
        return cls(
            currency=settings.fare_currency,
            base=settings.fare_base,
            per_km=settings.fare_per_km,
            per_minute=settings.fare_per_minute,
            minimum=settings.fare_minimum,
            surge_max=settings.fare_surge_max,
        )

    def price(self, *, meters: int, seconds: int, surge: float) -> int:
        """max(minimum, base + per km * km + per minute * minutes) * surge, rounded half
        up to a whole minor unit. Decimal, so 0.5 rounds up whatever binary floats say."""
        km = Decimal(meters) / 1000
        minutes = Decimal(seconds) / 60
        fare = max(Decimal(self.minimum), self.base + self.per_km * km + self.per_minute * minutes)
        total = (fare * Decimal(repr(surge))).quantize(Decimal(1), rounding=ROUND_HALF_UP)
        return min(int(total), MAX_AMOUNT)

    def surge(self, *, demand: int, supply: int) -> float:
        """1.0 while drivers outnumber (or match) requests, else requests per driver, at
        most `surge_max` (no driver at all: the maximum)."""
        if demand <= supply:
            return 1.0
        ratio = demand / supply if supply else self.surge_max
        return round(min(self.surge_max, ratio), 2)

    def final(
        self,
        *,
        quoted: int | None,
        quoted_meters: int | None,
        surge: float,
        driven_meters: int,
        seconds: int,
    ) -> int:
        """What the rider pays at COMPLETED: the quoted price, unless the driven distance
        exceeds the quote's by more than 25 % (then the tariff over what was driven, at
        the quote's surge); without a quote, always the tariff over what was driven."""
        if quoted is not None and quoted_meters is not None:
            if driven_meters <= quoted_meters * (1 + DETOUR_TOLERANCE):
                return quoted
        return self.price(meters=driven_meters, seconds=seconds, surge=surge)
