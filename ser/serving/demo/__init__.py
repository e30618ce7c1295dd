"""The browser demo's route: the static page in `ser/serving/demo/static/` as an ASGI app the service mounts.

The page (upload or microphone recording, probability bars, emotion over time)
is plain HTML/JS/CSS with no external resources; it posts to the service's own
`/predict`, so the demo and the API share one process and one port:

    EmotionService.mount_asgi_app(demo_app(), path="/demo", name="demo")
    bentoml serve ser.serving.service:EmotionService --port 3000   # then open http://127.0.0.1:3000/demo/
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

DEMO_DIR = Path(__file__).with_name("static")


def demo_app(directory: Path = DEMO_DIR) -> Starlette:
    """A Starlette app serving `directory` (index.html at its root), without caching.

    Args:
        directory: folder holding index.html and its scripts and styles.

    Returns:
        The app; when the folder is missing (e.g. a Bento built without it) every
        path answers 404 with a message saying so, and the service still starts.
    """
    if not (directory / "index.html").is_file():
        missing = f"the demo page is not in this build ({directory} is missing)"

        async def absent(_request: object) -> PlainTextResponse:
            return PlainTextResponse(missing, status_code=404)

        return Starlette(routes=[Route("/{path:path}", absent)])
    static = StaticFiles(directory=directory, html=True)

    async def no_cache(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"cache-control", b"no-cache"))
            await send(message)

        await static(scope, receive, send_with_header)

    return Starlette(routes=[Mount("/", app=no_cache, name="demo")])
