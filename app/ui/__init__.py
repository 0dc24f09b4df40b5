"""The web console at /ui: packaged static files (plain HTML, CSS and JavaScript), no CDN, no build."""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC = files("app.ui") / "static"


def install_ui(app: FastAPI) -> None:
    """Serve the console's page at /ui and its files under /ui/assets. The page is public, like /docs:
    every call it makes carries the key a person enters, and the API decides what that key may do."""
    app.mount("/ui/assets", StaticFiles(directory=str(STATIC)), name="ui-assets")

    @app.get("/ui", include_in_schema=False)
    async def console() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), media_type="text/html")

    @app.get("/ui/", include_in_schema=False)
    async def console_slash() -> RedirectResponse:
        return RedirectResponse("/ui")
