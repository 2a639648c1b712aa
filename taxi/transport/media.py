"""`/media/`: the re-encoded photos (taxi/domain/photos.py) served with headers that keep a
browser from treating one as anything but an image."""

from __future__ import annotations

from pathlib import Path

from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

# What /media/ adds to every response: never sniffed into HTML or script, and run as
# nothing even when opened directly (an opaque-origin sandbox, no sources at all).
MEDIA_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", b"default-src 'none'; img-src 'self'; sandbox"),
]


class MediaFiles:
    """Serves MEDIA_ROOT (Starlette's StaticFiles) with MEDIA_HEADERS."""

    def __init__(self, directory: Path) -> None:
        self.files = StaticFiles(directory=directory, check_dir=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *MEDIA_HEADERS]
            await send(message)

        await self.files(scope, receive, send_with_headers)
