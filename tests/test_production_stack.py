"""The site as `make serve` runs it: gunicorn, debug off, static files from whitenoise."""

import http.client
import json
import os
import re
import time
from contextlib import ExitStack

import pytest

from .servers import prepare, start_gunicorn


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    # One server for the module: migrating and collecting static files take seconds.
    tmp_path = tmp_path_factory.mktemp("production-stack")
    env = {
        **os.environ,
        "DJANGO_SECRET_KEY": "production-stack-test-key",
        "DJANGO_DEBUG": "0",
        "DATA_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "WEB_CONCURRENCY": "1",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    prepare(env, ["migrate", "-v0"], ["collectstatic", "--noinput", "-v0"])
    log = tmp_path / "server.log"
    with ExitStack() as stack:
        url, _ = start_gunicorn(stack, env, log)
        yield int(url.rsplit(":", 1)[1]), log


def get(port: int, path: str, **headers: str) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path, headers={"Host": "127.0.0.1", **headers})
    response = connection.getresponse()
    response.body = response.read()
    connection.close()
    return response


def test_gunicorn_serves_pages_and_long_cached_compressed_static_files(served):
    port, _ = served
    page = get(port, "/")
    assert page.status == 200
    stylesheet = re.search(rb'href="(/static/css/site\.[0-9a-f]{12}\.css)"', page.body)
    assert stylesheet, "the page links the hashed stylesheet"
    css = get(port, stylesheet.group(1).decode(), **{"Accept-Encoding": "br, gzip"})
    assert css.status == 200
    assert css.headers["Content-Encoding"] == "br"
    assert "immutable" in css.headers["Cache-Control"]
    assert "max-age=315360000" in css.headers["Cache-Control"]
    assert get(port, "/healthz").status == 200
    assert get(port, "/no-such-page/?q=Ada+Example").status == 404


def test_access_log_is_json_without_query_strings(served):
    port, log = served
    get(port, "/guides/?q=Ada+Example")
    time.sleep(0.5)
    lines = [
        json.loads(line) for line in log.read_text().splitlines() if '"logger": "access"' in line
    ]
    entry = next(line for line in lines if line["path"] == "/guides/")
    assert entry["status"] == 200
    assert len(entry["request_id"]) == 32
    assert "Ada" not in log.read_text()
