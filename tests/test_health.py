"""Load balancers ask /healthz whether this server can take traffic."""

import json

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db


def test_health_is_ok_when_database_cache_and_storage_work(client, documents_dir):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert json.loads(response.content) == {
        "status": "ok",
        "database": "ok",
        "cache": "ok",
        "storage": "ok",
    }
    assert response["Cache-Control"] == "no-store"
    assert [path for path in documents_dir.rglob("*") if path.is_file()] == []


def test_health_answers_a_probe_by_ip_address_over_plain_http(client, settings):
    settings.ALLOWED_HOSTS = ["guides.example"]
    response = client.get("/healthz", HTTP_HOST="10.0.0.7")
    assert response.status_code == 200
    assert client.get("/", HTTP_HOST="10.0.0.7").status_code == 400


def test_health_names_what_is_down(client, monkeypatch):
    def broken_cursor(*args, **kwargs):
        raise OSError("connection refused")

    monkeypatch.setattr(connection, "cursor", broken_cursor)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert json.loads(response.content) == {
        "status": "down",
        "database": "down",
        "cache": "ok",
        "storage": "ok",
    }


def test_health_says_nothing_else(client):
    body = client.get("/healthz").content.decode()
    for secret in ("sqlite", "postgres", "/var", "Django", "6.1"):
        assert secret not in body
