"""The API document and its rendered reference, served by the local API Gateway only.

``GET /openapi.json`` answers openapi.yaml as JSON (its ``servers`` led by the running local API,
so "Try it out" and imported collections call it); ``GET /docs`` is a Swagger UI page over it.
Swagger UI's files come from the ``swagger-ui-py`` package's bundled static folder (Swagger UI 5,
which reads OpenAPI 3.1): nothing is fetched from the internet when the page is shown. None of
this is in template.yaml: a deployed stack serves no documentation.
"""

from __future__ import annotations

import html
import importlib.util
import json
import mimetypes
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import yaml

from local.apigw.integration import ProxyResponse

__all__ = ["DOCS_PATH", "SPEC_PATH", "STATIC_PREFIX", "ApiDocs", "swagger_ui_static_dir"]

SPEC_PATH: Final = "/openapi.json"
DOCS_PATH: Final = "/docs"
STATIC_PREFIX: Final = "/docs/static/"
#: The renderer's files the page loads; nothing else of the package is served.
STATIC_FILES: Final = frozenset(
    {
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
        "favicon-16x16.png",
        "favicon-32x32.png",
    }
)
# Same-origin only: the page, its scripts and styles, and the API calls of "Try it out". Swagger
# UI sets style attributes and shows its logo as a data: image; no inline script is needed
# (the page's own start-up script is a file too).
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
PAGE: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - API reference (local)</title>
<link rel="stylesheet" href="{static}swagger-ui.css">
<link rel="icon" type="image/png" href="{static}favicon-32x32.png" sizes="32x32">
</head>
<body>
<noscript>The reference needs JavaScript. The document itself:
<a href="{spec}">{spec}</a></noscript>
<div id="swagger-ui"></div>
<script src="{static}swagger-ui-bundle.js"></script>
<script src="{static}swagger-ui-standalone-preset.js"></script>
<script src="{docs}/init.js"></script>
</body>
</html>
"""
INIT_SCRIPT: Final = """window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "%s",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "StandaloneLayout",
    validatorUrl: null
  });
};
"""


def swagger_ui_static_dir() -> Path | None:
    """The folder of Swagger UI's files inside the installed swagger-ui-py package (found
    without importing it), or None when the package is not installed."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        return None
    static = Path(next(iter(spec.submodule_search_locations))) / "static"
    return static if (static / "swagger-ui-bundle.js").is_file() else None


def _answer(status: int, content_type: str, body: bytes, **headers: str) -> ProxyResponse:
    pairs = [("Content-Type", content_type), ("Cache-Control", "no-store")]
    pairs += list(headers.items())
    return ProxyResponse(status, pairs, body)


def _not_found(message: str) -> ProxyResponse:
    body = json.dumps({"error": {"code": "not_found", "message": message}}).encode()
    return _answer(404, "application/json", body)


class ApiDocs:
    """Answers ``/openapi.json``, ``/docs`` and the renderer's files from a document on disk.

    The document is read on each request (edit openapi.yaml, reload the page). ``base_url`` is
    the running API's URL, put first in the document's ``servers``.
    """

    def __init__(self, document_path: str | Path, static_dir: Path | None = None) -> None:
        self.document_path = Path(document_path)
        self.static_dir = static_dir if static_dir is not None else swagger_ui_static_dir()

    def serves(self, method: str, path: str) -> bool:
        """Whether this is a documentation request (GET or HEAD of one of its paths)."""
        if method not in ("GET", "HEAD"):
            return False
        return path in (SPEC_PATH, DOCS_PATH, DOCS_PATH + "/", DOCS_PATH + "/init.js") or (
            path.startswith(STATIC_PREFIX)
        )

    def document(self, base_url: str | None = None) -> dict[str, Any]:
        """The API document, with ``base_url`` (the running API) as its first server."""
        document: dict[str, Any] = yaml.safe_load(self.document_path.read_text(encoding="utf-8"))
        if base_url:
            others = [s for s in document.get("servers", []) if s.get("url") != base_url]
            document["servers"] = [
                {"url": base_url, "description": "This local stack (SigV4 is not checked)"},
                *others,
            ]
        return document

    def handle(self, path: str, base_url: str | None) -> ProxyResponse:
        """The answer to a GET of one of :meth:`serves`' paths."""
        if path == SPEC_PATH:
            body = json.dumps(self.document(base_url), ensure_ascii=False, indent=2)
            return _answer(200, "application/json", body.encode("utf-8"))
        if self.static_dir is None:
            return _not_found("the API reference needs swagger-ui-py (make setup)")
        if path in (DOCS_PATH, DOCS_PATH + "/"):
            title = str(self.document().get("info", {}).get("title", "API"))
            page = PAGE.format(
                title=_escape(title), static=STATIC_PREFIX, spec=SPEC_PATH, docs=DOCS_PATH
            )
            return _answer(200, "text/html; charset=utf-8", page.encode("utf-8"), **_page_headers())
        if path == DOCS_PATH + "/init.js":
            script = INIT_SCRIPT % SPEC_PATH
            return _answer(200, "text/javascript; charset=utf-8", script.encode("utf-8"))
        name = path.removeprefix(STATIC_PREFIX)
        if name not in STATIC_FILES:
            return _not_found("no such file")
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if content_type.startswith("text/"):
            content_type += "; charset=utf-8"
        return _answer(200, content_type, (self.static_dir / name).read_bytes())


def _page_headers() -> Mapping[str, str]:
    return {
        "Content-Security-Policy": CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


def _escape(text: str) -> str:
    return html.escape(text, quote=True)
