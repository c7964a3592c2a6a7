"""What a browser loads, with no key and nothing from the internet: the web page at `/`
(api/static/: plain HTML, CSS and JS; its scripts send the key kept in the browser), and
/docs (Swagger UI) and /redoc (ReDoc) from the assets the fastapi-offline package keeps.

None of it is in the OpenAPI document: it is not the API.
"""

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

PAGE = Path(__file__).parent / "static"
DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"
STATIC = "/static"
DOCS_STATIC = "/static/docs"  # mounted before STATIC, which would otherwise take its paths
# The browser itself refuses anything from elsewhere (ReDoc's sidebar would fetch a logo from
# cdn.redoc.ly). The docs pages start their UI with an inline script; ReDoc inlines its styles.
PAGE_POLICY = "default-src 'self'; img-src 'self' data: blob:; frame-ancestors 'none'"
DOCS_POLICY = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
               "img-src 'self' data:; worker-src 'self' blob:; frame-ancestors 'none'")


def install(app: FastAPI) -> None:
    """Add `/`, /docs, /redoc and the static files; the app is made with docs_url=None, redoc_url=None."""
    assert app.openapi_url is not None
    openapi_url = app.openapi_url
    favicon = f"{DOCS_STATIC}/favicon.png"

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(PAGE / "index.html",
                            headers={"Cache-Control": "no-cache", "Content-Security-Policy": PAGE_POLICY})

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return _confined(get_swagger_ui_html(
            openapi_url=openapi_url, title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{DOCS_STATIC}/swagger-ui-bundle.js", swagger_css_url=f"{DOCS_STATIC}/swagger-ui.css",
            swagger_favicon_url=favicon, oauth2_redirect_url=None,
            # No validator badge (it would call validator.swagger.io); the key survives a reload.
            swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True},
        ))

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return _confined(get_redoc_html(openapi_url=openapi_url, title=f"{app.title} - ReDoc",
                                        redoc_js_url=f"{DOCS_STATIC}/redoc.standalone.js",
                                        redoc_favicon_url=favicon, with_google_fonts=False))

    app.mount(DOCS_STATIC, StaticFiles(directory=DOCS_ASSETS), name="docs-static")
    app.mount(STATIC, StaticFiles(directory=PAGE), name="static")


def _confined(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = DOCS_POLICY
    return page
