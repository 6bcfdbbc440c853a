"""ReDoc's page, as fastapi-offline serves it, but with no request to Redocly's CDN.

ReDoc's script draws Redocly's logo from cdn.redoc.ly in its sidebar (the same report
against drf-spectacular-sidecar: https://github.com/tfranzel/drf-spectacular-sidecar/issues/11).
This page loads a copy of the script without that address: the image has no source, and
ReDoc hides it.
"""

from importlib.resources import files

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import HTMLResponse, Response

REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
REDOC_JS = (files("fastapi_offline") / "static" / "redoc.standalone.js").read_bytes().replace(REDOC_LOGO, b"")

router = APIRouter(include_in_schema=False)


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    return get_redoc_html(
        openapi_url=request.app.openapi_url,
        title=f"{request.app.title} - ReDoc",
        redoc_js_url="/redoc/redoc.standalone.js",
        redoc_favicon_url="/static-offline-docs/favicon.png",
        with_google_fonts=False,
    )


@router.get("/redoc/redoc.standalone.js")
async def redoc_script() -> Response:
    return Response(REDOC_JS, media_type="text/javascript")
