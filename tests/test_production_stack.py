"""The site as `make serve` runs it: gunicorn, debug off, static files from whitenoise."""

import http.client
import os
import re
import socket
import subprocess
import sys
import time

import pytest

from .conftest import ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SECRET_KEY": "production-stack-test-key",
        "DJANGO_DEBUG": "0",
        "DATA_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    python = sys.executable
    for command in (["migrate"], ["collectstatic", "--noinput"]):
        subprocess.run([python, "manage.py", *command, "-v0"], cwd=ROOT, env=env, check=True)
    gunicorn = [python, "-m", "gunicorn", "cancerfax.wsgi:application", "-c", "gunicorn.conf.py"]
    server = subprocess.Popen(
        gunicorn, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield port
    finally:
        server.terminate()
        server.wait(10)


def get(port: int, path: str, **headers: str) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path, headers={"Host": "127.0.0.1", **headers})
    response = connection.getresponse()
    response.body = response.read()
    connection.close()
    return response


def test_gunicorn_serves_pages_and_long_cached_compressed_static_files(served):
    page = get(served, "/")
    assert page.status == 200
    stylesheet = re.search(rb'href="(/static/css/site\.[0-9a-f]{12}\.css)"', page.body)
    assert stylesheet, "the page links the hashed stylesheet"
    css = get(served, stylesheet.group(1).decode(), **{"Accept-Encoding": "br, gzip"})
    assert css.status == 200
    assert css.headers["Content-Encoding"] == "br"
    assert "immutable" in css.headers["Cache-Control"]
    assert "max-age=315360000" in css.headers["Cache-Control"]
    assert get(served, "/healthz").status == 200
    assert get(served, "/no-such-page/").status == 404
