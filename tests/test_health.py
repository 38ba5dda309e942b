"""Load balancers ask /healthz whether this server can take traffic."""

import json

import pytest
from django.core.files.storage import FileSystemStorage
from django.db import connection
from storages.backends.s3 import S3Storage

from .conftest import TEST_BUCKET

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


def refuse_to_write(*args, **kwargs):
    raise AssertionError("the health check wrote to the document store")


def test_a_probe_never_makes_the_site_write_to_the_document_store(client, monkeypatch):
    monkeypatch.setattr(FileSystemStorage, "_save", refuse_to_write)
    monkeypatch.setattr(FileSystemStorage, "delete", refuse_to_write)
    response = client.get("/healthz")
    assert response.status_code == 200
    assert json.loads(response.content)["storage"] == "ok"


def test_a_probe_only_reads_the_bucket(client, s3, monkeypatch):
    monkeypatch.setattr(S3Storage, "_save", refuse_to_write)
    monkeypatch.setattr(S3Storage, "delete", refuse_to_write)
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    assert s3.list_objects_v2(Bucket=TEST_BUCKET).get("KeyCount") == 0


def test_a_document_folder_that_cannot_be_made_is_reported_down(client, settings, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the documents folder should be")
    settings.STORAGES = {
        **settings.STORAGES,
        "documents": {
            **settings.STORAGES["documents"],
            "OPTIONS": {**settings.STORAGES["documents"]["OPTIONS"], "location": blocker / "d"},
        },
    }
    response = client.get("/healthz")
    assert response.status_code == 503
    assert json.loads(response.content)["storage"] == "down"
