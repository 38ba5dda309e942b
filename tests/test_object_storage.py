"""With DOCUMENTS_BUCKET, documents live in a private, encrypted S3 bucket; coordinators
still get them only through the admin's audited download."""

import hashlib
import socket

import boto3
import pytest
from django.test import Client

from cancerfax.environment import env_documents_bucket
from inquiries.models import Document, DocumentDownload, Inquiry

from .conftest import TEST_BUCKET as BUCKET
from .conftest import files_in
from .support import pdf, photo, send

pytestmark = pytest.mark.django_db

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


def stored_objects(s3) -> list[dict]:
    return s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])


def test_documents_go_to_the_bucket_private_and_encrypted(
    s3, client, documents_dir, quarantine_dir, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as deletions:
        send(client, documents=[pdf(), photo()])
    inquiry = Inquiry.objects.get()
    # The originals, in quarantine until checked, and the rebuilt copies: all private and
    # encrypted at rest.
    objects = stored_objects(s3)
    # The previews too, a small picture for each.
    assert sorted(o["Key"].split("/")[0] for o in objects) == ["documents"] * 4 + ["quarantine"] * 2
    assert len([o for o in objects if o["Key"].startswith("documents/previews/")]) == 2
    for stored in objects:
        head = s3.head_object(Bucket=BUCKET, Key=stored["Key"])
        assert head["ServerSideEncryption"] == "AES256"
        grants = s3.get_object_acl(Bucket=BUCKET, Key=stored["Key"])["Grants"]
        assert [g["Permission"] for g in grants] == ["FULL_CONTROL"]  # the owner only
        assert all(g["Grantee"].get("URI") != ALL_USERS for g in grants)
    # Once the checks are committed the originals go; the rebuilt copies stay.
    for deletion in deletions:
        deletion()
    assert sorted(o["Key"] for o in stored_objects(s3)) == sorted(
        f"documents/{f.name}" for d in inquiry.documents.all() for f in (d.file, d.preview)
    )
    first = inquiry.documents.get(original_name="pathology-report.pdf")
    body = s3.get_object(Bucket=BUCKET, Key=f"documents/{first.file.name}")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == first.sha256
    # Nothing was written to the local folders.
    assert files_in(documents_dir) == files_in(quarantine_dir) == []


def test_a_named_kms_key_encrypts_with_it(s3, monkeypatch, settings, client):
    key_id = boto3.client("kms", region_name="eu-west-2").create_key()["KeyMetadata"]["KeyId"]
    monkeypatch.setenv("DOCUMENTS_KMS_KEY_ID", key_id)
    settings.STORAGES = {
        **settings.STORAGES,
        "documents": env_documents_bucket(),
        "quarantine": env_documents_bucket("quarantine"),
    }
    send(client, documents=[pdf()])
    objects = stored_objects(s3)
    # The original, until its deletion is committed, the copy and its preview.
    assert len(objects) == 3
    for stored in objects:
        head = s3.head_object(Bucket=BUCKET, Key=stored["Key"])
        assert head["ServerSideEncryption"] == "aws:kms"
        assert head["SSEKMSKeyId"].endswith(key_id)


def test_coordinators_download_from_the_bucket_through_the_audited_view(s3, coordinator_client):
    send(Client(), documents=[pdf()])
    document = Document.objects.get()
    response = coordinator_client.get(f"/admin/inquiries/inquiry/document/{document.pk}/download/")
    assert response.status_code == 200
    assert hashlib.sha256(b"".join(response.streaming_content)).hexdigest() == document.sha256
    assert "no-store" in response["Cache-Control"]
    assert DocumentDownload.objects.count() == 1
    # The change page links to the admin's view, never to the bucket.
    page = coordinator_client.get(f"/admin/inquiries/inquiry/{document.inquiry.pk}/change/")
    assert "amazonaws" not in page.content.decode() and BUCKET not in page.content.decode()


def store_goes_away(settings, monkeypatch) -> None:
    """The bucket's address now answers nothing: a closed port on this machine."""
    monkeypatch.setenv("DOCUMENTS_S3_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    settings.STORAGES = {
        **settings.STORAGES,
        "documents": env_documents_bucket(),
        "quarantine": env_documents_bucket("quarantine"),
    }


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_store_when_sending_stores_nothing(
    s3, client, uploads_dir, settings, monkeypatch
):
    store_goes_away(settings, monkeypatch)
    response = send(client, documents=[pdf(), photo()])
    assert response.status_code == 503
    assert "nothing was stored" in response.content.decode()
    assert Inquiry.objects.count() == 0 and Document.objects.count() == 0
    assert files_in(uploads_dir) == []


def test_an_unreachable_store_when_downloading_says_try_again(
    s3, coordinator_client, settings, monkeypatch
):
    send(Client(), documents=[pdf()])
    document = Document.objects.get()
    store_goes_away(settings, monkeypatch)
    response = coordinator_client.get(f"/admin/inquiries/inquiry/document/{document.pk}/download/")
    assert response.status_code == 503
    assert "could not be fetched from the document store just now" in response.content.decode()
    assert DocumentDownload.objects.count() == 0


def test_a_document_missing_from_the_bucket_is_reported_not_crashed(s3, coordinator_client):
    send(Client(), documents=[pdf()])
    document = Document.objects.get()
    s3.delete_object(Bucket=BUCKET, Key=f"documents/{document.file.name}")
    response = coordinator_client.get(f"/admin/inquiries/inquiry/document/{document.pk}/download/")
    assert response.status_code == 500
    assert "is missing or no longer matches" in response.content.decode()


def test_erasing_an_inquiry_removes_its_objects(s3, client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        send(client, documents=[pdf(), photo()])
    assert len(stored_objects(s3)) == 4  # two copies and their previews
    with django_capture_on_commit_callbacks(execute=True):
        Inquiry.objects.get().erase()
    assert stored_objects(s3) == []


def test_a_download_broken_off_midway_says_try_again(s3, coordinator_client, monkeypatch):
    from s3transfer.exceptions import RetriesExceededError

    send(Client(), documents=[pdf()])
    document = Document.objects.get()

    def broken_off(self, *args, **kwargs):
        # What s3transfer raises when the store keeps closing the connection mid-body.
        raise RetriesExceededError(ConnectionResetError("connection reset by the store"))

    monkeypatch.setattr("storages.backends.s3.S3File.read", broken_off)
    response = coordinator_client.get(f"/admin/inquiries/inquiry/document/{document.pk}/download/")
    assert response.status_code == 503
    assert DocumentDownload.objects.count() == 0
