"""Logs are JSON lines that carry the request's id and no personal details."""

import json
import logging

import pytest

from cancerfax.logs import JsonFormatter, request_id

from .servers import PATIENT
from .support import send

pytestmark = pytest.mark.django_db


def test_each_response_names_its_request_id(client):
    first = client.get("/")["X-Request-ID"]
    assert len(first) == 32
    assert client.get("/")["X-Request-ID"] != first
    given = "lb-7f3a9c2e-0001"
    assert client.get("/", HTTP_X_REQUEST_ID=given)["X-Request-ID"] == given
    assert client.get("/", HTTP_X_REQUEST_ID="bad id\r\nX: y")["X-Request-ID"] != "bad id"


def test_a_log_line_is_one_json_object_with_the_request_id():
    token = request_id.set("req-12345678")
    try:
        record = logging.LogRecord(
            "inquiries", logging.INFO, __file__, 1, "Inquiry %s received", ("CF-AAAA-BBBB",), None
        )
        line = JsonFormatter().format(record)
    finally:
        request_id.reset(token)
    entry = json.loads(line)
    assert "\n" not in line
    assert entry["message"] == "Inquiry CF-AAAA-BBBB received"
    assert entry["request_id"] == "req-12345678"
    assert entry["level"] == "INFO" and entry["logger"] == "inquiries"


def test_what_an_inquiry_logs_names_no_one(client, caplog):
    caplog.set_level(logging.DEBUG)
    send(client)
    text = caplog.text
    for detail in (PATIENT, "Ada", "sam.example@example.org", "pathology-report", "b-all"):
        assert detail not in text
