"""Fare quotes as signed, self-contained ids: everything requestTrip needs to hold a price
travels in the id itself (no server state, valid on every process), under an HMAC whose
key is derived from JWT_SECRET (never the JWT key itself)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from dataclasses import asdict, dataclass

import orjson

from taxi.domain.errors import BadUserInput
from taxi.domain.positions import distance

# Longer than any id we issue: refused before any decoding.
MAX_QUOTE_ID = 512
_PURPOSE = b"taxi fare quote v1"


def _key(secret: str) -> bytes:
    # A key of its own: a quote id can never be replayed as (or forged from) a token.
    return hmac.new(secret.encode(), _PURPOSE, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class Quote:
    rider: int  # whose quote: another rider's is refused
    pick_up: tuple[float, float]
    drop_off: tuple[float, float]
    meters: int
    seconds: int
    surge: float
    price: int
    expires: float  # epoch seconds

    def sign(self, *, secret: str) -> str:
        payload = orjson.dumps(asdict(self))
        mac = hmac.new(_key(secret), payload, hashlib.sha256).digest()
        return f"{_b64(payload)}.{_b64(mac)}"

    @classmethod
    def verify(cls, quote_id: str, *, secret: str) -> Quote:
        """The quote an id holds; BAD_USER_INPUT on `quoteId` for anything we did not
        sign, with this secret, unchanged."""
        try:
            if len(quote_id) > MAX_QUOTE_ID:
                raise ValueError("too long")
            payload_text, mac_text = quote_id.split(".")
            payload, mac = _unb64(payload_text), _unb64(mac_text)
            want = hmac.new(_key(secret), payload, hashlib.sha256).digest()
            if not hmac.compare_digest(mac, want):
                raise ValueError("bad signature")
            data = orjson.loads(payload)
            return cls(
                rider=int(data["rider"]),
                pick_up=(float(data["pick_up"][0]), float(data["pick_up"][1])),
                drop_off=(float(data["drop_off"][0]), float(data["drop_off"][1])),
                meters=int(data["meters"]),
                seconds=int(data["seconds"]),
                surge=float(data["surge"]),
                price=int(data["price"]),
                expires=float(data["expires"]),
            )
        except (ValueError, TypeError, LookupError, binascii.Error, orjson.JSONDecodeError):
            raise _invalid("This quote is not valid.") from None

    def check(
        self,
        *,
        rider: int,
        pick_up: tuple[float, float] | None,
        drop_off: tuple[float, float] | None,
        within: float,
    ) -> None:
        """For this rider, unexpired, for the same points (within `within` metres)."""
        if self.rider != rider:
            raise _invalid("This quote was made for someone else.")
        if time.time() >= self.expires:
            raise _invalid("This quote has expired; ask for a new one.")
        for mine, asked in ((self.pick_up, pick_up), (self.drop_off, drop_off)):
            if asked is None or distance(*mine, *asked) > within:
                raise _invalid("This quote is for other pick-up and drop-off points.")


def _invalid(message: str) -> BadUserInput:
    return BadUserInput("Invalid quote.", fields={"quoteId": [message]})
