"""`make bench` only: the limit of this server. A WSGI application that does nothing but
answer the guide page's own compressed bytes, with the same headers, on the same gunicorn
with the same workers: what any page served by Python on this machine cannot beat.

BENCH_PAGE names a JSON file holding the body (hex) and the headers the site sent."""

import json
import os
from pathlib import Path

_page = json.loads(Path(os.environ["BENCH_PAGE"]).read_text())
BODY = bytes.fromhex(_page["body"])
HEADERS = [(name, value) for name, value in _page["headers"].items()]


def application(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]
