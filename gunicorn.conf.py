"""gunicorn settings for `make serve` and production. Each value can be changed through the
environment variable named beside it."""

import os

# `make serve` puts nginx in front and gunicorn on a socket (GUNICORN_BIND=unix:…).
bind = (
    os.environ.get("GUNICORN_BIND")
    or f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
)
# Two workers a core is gunicorn's own advice for a site that mostly waits on its database.
workers = int(os.environ.get("WEB_CONCURRENCY", 2 * (os.cpu_count() or 1)))
worker_class = "sync"
# nginx hands over each request whole, so even a 100 MB upload reaches a worker in moments;
# a request that still takes longer than this has gone wrong.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 60))
graceful_timeout = 30
# Recycle workers now and then, so that a slow leak never grows without bound.
# Often enough to bound a leak, rarely enough that a busy server does not spend its time
# starting workers (at 1,000 requests a second, 2,000 meant a restart every few seconds).
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", 50_000))
max_requests_jitter = max_requests // 10
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
accesslog = "-"
errorlog = "-"
# One JSON object a line, like the application's logs, with the same request id. Never the
# query string: an admin search could carry a patient's name.
access_log_format = (
    '{"time": "%(t)s", "logger": "access", "method": "%(m)s", "path": "%(U)s", '
    '"status": %(s)s, "bytes": "%(B)s", "ms": %(M)s, "request_id": "%({x-request-id}o)s"}'
)
