"""The health check load balancers probe: /healthz answers 200 when the database, the cache
and the document storage all work, and 503 naming what does not. It says nothing else."""

import json
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path

from django.core.cache import cache
from django.core.files.storage import FileSystemStorage
from django.db import connection
from django.http import HttpRequest, HttpResponse

from inquiries.models import documents_storage, quarantine_storage

logger = logging.getLogger(__name__)


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _cache() -> None:
    key = f"healthz:{uuid.uuid4().hex}"
    cache.set(key, "ok", 10)
    if cache.get(key) != "ok":
        raise RuntimeError("the cache did not keep a value")
    cache.delete(key)


def _storage() -> None:
    # Read only: an anonymous probe must never make the site write. A local folder must be
    # there to write into (or its parent, before the first file); a bucket must answer.
    # Both stores: families' files arrive in quarantine, coordinators read the documents.
    for storage in (quarantine_storage, documents_storage):
        if isinstance(storage, FileSystemStorage):
            folder = Path(storage.location)
            while not folder.exists():
                folder = folder.parent
            if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
                raise PermissionError("a storage folder cannot be written to")
        else:
            storage.exists("healthz")


CHECKS: dict[str, Callable[[], None]] = {
    "database": _database,
    "cache": _cache,
    "storage": _storage,
}


def health(request: HttpRequest) -> HttpResponse:
    state = {}
    for name, check in CHECKS.items():
        try:
            check()
            state[name] = "ok"
        except Exception as error:  # any failure means "down"; the log keeps the reason
            logger.error("Health check: %s is down (%s)", name, type(error).__name__)
            state[name] = "down"
    healthy = all(value == "ok" for value in state.values())
    response = HttpResponse(
        json.dumps({"status": "ok" if healthy else "down", **state}),
        content_type="application/json",
        status=200 if healthy else 503,
    )
    response["Cache-Control"] = "no-store"
    return response


def health_check_first(get_response: Callable[[HttpRequest], HttpResponse]):
    """Answers /healthz before any other middleware: load balancers probe it by IP address
    (not one of ALLOWED_HOSTS) and over plain HTTP, and it must not depend on sessions."""

    def middleware(request: HttpRequest) -> HttpResponse:
        if request.path == "/healthz" and request.method in ("GET", "HEAD"):
            return health(request)
        return get_response(request)

    return middleware
