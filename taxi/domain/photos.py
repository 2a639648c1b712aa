"""Uploaded photos: decoded and re-encoded with Pillow, never stored as sent.

Re-encoding keeps only pixels: metadata (EXIF with GPS, comments) is dropped, and so is
whatever a polyglot hides beside the image (HTML or script after a PNG's IEND, inside a
comment chunk): what /media/ serves is an image and nothing else."""

from __future__ import annotations

import asyncio
import io
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

MAX_PIXELS = 40_000_000
FORMATS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}
JPEG_QUALITY = 90
_NOT_AN_IMAGE = "Upload a valid image (PNG, JPEG or WebP)."


class NotAnImage(Exception):
    """The upload is not a PNG, JPEG or WebP image within the limits."""


# What Pillow raises for truncated, corrupt or oversized input.
_UNDECODABLE = (
    UnidentifiedImageError,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
)


@dataclass(frozen=True)
class Photo:
    data: bytes
    ext: str


def _reencode(data: bytes) -> Photo:
    try:
        with warnings.catch_warnings():
            # Pillow warns (and only past twice the limit raises) about bombs: here
            # any image over the limit is refused.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=list(FORMATS)) as im:
                # The header alone gives the size: checked BEFORE any pixel is decoded.
                if im.width * im.height > MAX_PIXELS:
                    raise NotAnImage(f"The photo may not have more than {MAX_PIXELS} pixels.")
                fmt = im.format or ""
                im.load()
                pixels = im.convert("RGBA" if im.mode in ("RGBA", "LA", "P", "PA") else "RGB")
    except _UNDECODABLE as exc:
        raise NotAnImage(_NOT_AN_IMAGE) from exc
    if fmt == "JPEG" and pixels.mode == "RGBA":
        pixels = pixels.convert("RGB")
    out = io.BytesIO()
    # Nothing but pixels is passed on: no exif=, icc_profile=, pnginfo=.
    save = {"JPEG": {"quality": JPEG_QUALITY}, "WEBP": {"quality": JPEG_QUALITY}}.get(fmt, {})
    pixels.save(out, format=fmt, **save)
    return Photo(out.getvalue(), FORMATS[fmt])


async def reencode(data: bytes) -> Photo:
    """NotAnImage unless `data` is a PNG, JPEG or WebP of at most MAX_PIXELS. Decoding is
    CPU work: a thread keeps the event loop free."""
    return await asyncio.to_thread(_reencode, data)


def save(media_root: Path, photo: Photo) -> str:
    rel = f"photos/{uuid.uuid4().hex}.{photo.ext}"
    path = Path(media_root) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(photo.data)
    return rel


def remove(media_root: Path, rel: str) -> None:
    (Path(media_root) / rel).unlink(missing_ok=True)
