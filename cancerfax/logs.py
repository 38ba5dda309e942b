"""Logs as one JSON object a line on standard error, each with the id of the request it
belongs to, so that a log platform can follow one request across servers.

What is logged is decided where it is logged: references, codes and counts, never a name,
an email address, a file's name or its contents.
"""

import contextvars
import json
import logging
import re
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

# A load balancer's id is kept if it looks like one; anything else is replaced.
_VALID_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")


def request_ids(get_response: Callable[[HttpRequest], HttpResponse]):
    def middleware(request: HttpRequest) -> HttpResponse:
        given = request.headers.get("X-Request-ID", "")
        token = request_id.set(given if _VALID_ID.fullmatch(given) else uuid.uuid4().hex)
        try:
            response = get_response(request)
            response["X-Request-ID"] = request_id.get()
            return response
        finally:
            request_id.reset(token)

    return middleware


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": request_id.get(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)
