"""Points as requests give them: the checks every coordinate input goes through."""

from __future__ import annotations

from dataclasses import dataclass


def location_errors(
    latitude: float, longitude: float, heading: float | None
) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if not -90 <= latitude <= 90:
        errors["latitude"] = ["Must be between -90 and 90."]
    if not -180 <= longitude <= 180:
        errors["longitude"] = ["Must be between -180 and 180."]
    if heading is not None and not 0 <= heading < 360:
        errors["heading"] = ["Must be at least 0 and less than 360."]
    return errors


@dataclass(frozen=True)
class Coordinates:
    """A request's optional pick-up and drop-off points (latitude, longitude)."""

    pick_up: tuple[float, float] | None = None
    drop_off: tuple[float, float] | None = None

    def errors(self) -> dict[str, list[str]]:
        errors: dict[str, list[str]] = {}
        for name, point in (("pickUp", self.pick_up), ("dropOff", self.drop_off)):
            if point is not None and (problems := location_errors(*point, None)):
                errors[name] = [f"{k}: {m}" for k, ms in problems.items() for m in ms]
        return errors


NO_COORDINATES = Coordinates()
