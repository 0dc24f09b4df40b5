"""The web console at /ui: packaged static files (plain HTML, CSS and JavaScript), no CDN, no build."""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC = files("app.ui") / "static"
# The page holds a key that can delete: only its own files may run in it, no other site may frame it, and
# no address it opens learns where it came from.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def install_ui(app: FastAPI) -> None:
    """Serve the console's page at /ui and its files under /ui/assets. The page is public, like /docs:
    every call it makes carries the key a person enters, and the API decides what that key may do."""
    app.mount("/ui/assets", StaticFiles(directory=str(STATIC)), name="ui-assets")

    @app.get("/ui", include_in_schema=False)
    async def console() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), media_type="text/html", headers=PAGE_HEADERS)

    @app.get("/ui/", include_in_schema=False)
    async def console_slash() -> RedirectResponse:
        return RedirectResponse("/ui")
