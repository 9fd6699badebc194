"""/api/docs/ is served whole by Kaizen: Swagger UI's files come from its own static files
(drf-spectacular-sidecar), never from a CDN, so the page works without the internet.

In-process, whitenoise finds the files in the apps (WHITENOISE_USE_FINDERS, as collectstatic
has not run); tests/core/test_web_server.py checks the same page under gunicorn after
collectstatic, as `make run` serves it.
"""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import drf_spectacular_sidecar
import pytest

SIDECAR = Path(drf_spectacular_sidecar.__file__).parent / "static"
ASSETS = {
    "/static/drf_spectacular_sidecar/swagger-ui-dist/favicon-32x32.png": "image/png",
    "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css": "text/css",
    "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js": "text/javascript",
    "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-standalone-preset.js": (
        "text/javascript"
    ),
}


class _References(HTMLParser):
    """Every URL a page makes the browser load or follow (src and href attributes)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.extend(value for name, value in attrs if name in {"src", "href"} and value)


def references(page: str) -> list[str]:
    parser = _References()
    parser.feed(page)
    return parser.found


def sidecar_file(url: str) -> bytes:
    return (SIDECAR / url.removeprefix("/static/")).read_bytes()


@pytest.mark.django_db
def test_docs_page__no_key__references_only_same_origin_assets(anonymous):
    # When
    response = anonymous.get("/api/docs/")
    page = response.content.decode()
    # Then: exactly Swagger UI's files, by path on this server; no other origin named
    assert response.status_code == 200
    assert sorted(references(page)) == sorted(ASSETS)
    assert "://" not in page
    assert "cdn" not in page.lower()
    # And Swagger UI asks no online validator about the schema
    assert '"validatorUrl": null' in page
    assert 'url: "/api/schema/"' in page


@pytest.mark.django_db
@pytest.mark.parametrize(("url", "content_type"), sorted(ASSETS.items()))
def test_docs_page_asset__no_key__served_whole(anonymous, url, content_type):
    # When
    response = anonymous.get(url)
    # Then
    assert response.status_code == 200
    assert response["Content-Type"].split(";")[0] == content_type
    assert b"".join(response.streaming_content) == sidecar_file(url)
