"""The shared cache only speeds the site up: while it cannot be reached, readers still get the
guide and families can still send their reports (cancerfax/caches.py)."""

import contextlib
import hashlib
import socket

import pytest
from redis.exceptions import ResponseError

import cancerfax.caches
import guides.views
from guides.models import Service
from inquiries.models import Document, Inquiry

from .conftest import files_in
from .servers import free_port
from .support import change_guide, pdf, send

pytestmark = pytest.mark.django_db


def redis_nowhere(port: int | None = None) -> dict:
    """Redis as production configures it, on a port where nothing listens (by default)."""
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port or free_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }


@pytest.fixture
def cache_down(settings):
    settings.CACHES = redis_nowhere()


def test_readers_get_the_guide_while_the_cache_is_down(client, leukemia_guide, cache_down):
    for _ in range(2):
        response = client.get(leukemia_guide.get_absolute_url())
        assert response.status_code == 200
        assert "What this means for patients" in response.content.decode()
        # Without the content version, a browser's copy is never said to be still good.
        assert "ETag" not in response
        assert "Last-Modified" not in response


def test_the_missed_cache_is_logged_for_the_team(client, leukemia_guide, cache_down, caplog):
    client.get(leukemia_guide.get_absolute_url())
    assert "Guide pages rendered without the cache for 10 s: ConnectionError" in caplog.text


def test_a_worker_leaves_a_failed_cache_alone_for_ten_seconds(
    client, leukemia_guide, cache_down, settings, monkeypatch
):
    # A Redis that hangs costs its one-second timeout once, not on every request.
    assert "ETag" not in client.get(leukemia_guide.get_absolute_url())
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert "ETag" not in client.get(leukemia_guide.get_absolute_url())
    monkeypatch.setattr(cancerfax.caches, "_resting_until", 0.0)  # ten seconds later
    etag = client.get(leukemia_guide.get_absolute_url())["ETag"]
    again = client.get(leukemia_guide.get_absolute_url(), HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304


def test_a_hung_cache_is_waited_for_once_not_on_every_request(client, leukemia_guide, settings):
    with socket.create_server(("127.0.0.1", 0)) as silent:  # takes connections, never answers
        settings.CACHES = redis_nowhere(silent.getsockname()[1])
        for _ in range(3):
            assert client.get(leukemia_guide.get_absolute_url()).status_code == 200
        silent.setblocking(False)
        waited_for = 0
        with contextlib.suppress(BlockingIOError):
            while True:
                silent.accept()[0].close()
                waited_for += 1
    assert waited_for == 1


def test_a_cache_refusing_one_command_is_tried_again_at_once(client, leukemia_guide, monkeypatch):
    def out_of_memory():
        raise ResponseError("OOM command not allowed when used memory > 'maxmemory'.")

    with monkeypatch.context() as refusing:
        refusing.setattr(guides.views, "content_version", out_of_memory)
        assert "ETag" not in client.get(leukemia_guide.get_absolute_url())
    assert "ETag" in client.get(leukemia_guide.get_absolute_url())


def test_a_family_can_send_reports_while_the_cache_is_down(
    client, cache_down, documents_dir, uploads_dir, caplog
):
    response = send(client, documents=[pdf()])
    assert response.status_code == 302
    assert response["Location"] == "/inquiries/thank-you/"
    document = Inquiry.objects.get().documents.get()
    assert (document.state, document.pages) == ("accepted", 1)
    stored = files_in(documents_dir)
    assert [hashlib.sha256(path.read_bytes()).hexdigest() for path in stored] == [document.sha256]
    assert files_in(uploads_dir) == []
    # Let through without its limits, and the log says so.
    assert "Inquiries taken without the cache for 10 s: ConnectionError" in caplog.text


def test_the_limits_hold_again_once_the_cache_is_back(client, cache_down, settings, monkeypatch):
    settings.INQUIRY_RATE_LIMIT = "1/h"
    assert send(client).status_code == 302
    assert send(client).status_code == 302
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    monkeypatch.setattr(cancerfax.caches, "_resting_until", 0.0)  # ten seconds later
    assert send(client).status_code == 302
    assert send(client).status_code == 429
    assert Document.objects.count() == Inquiry.objects.count() == 3


def test_an_editors_change_is_refused_whole_while_the_cache_is_down(
    admin_client, leukemia_guide, cache_down
):
    # Saved without telling the servers, a correction would go unseen while the old page
    # stays cached; nothing half-saved either.
    question = leukemia_guide.faqs.first().question
    response = change_guide(
        admin_client,
        leukemia_guide,
        lead="A corrected opening paragraph.",
        **{"faqs-0-question": "A corrected question?"},
    )
    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    assert "nothing was saved" in response.content.decode()
    leukemia_guide.refresh_from_db()
    assert leukemia_guide.lead != "A corrected opening paragraph."
    assert leukemia_guide.faqs.first().question == question


def test_removing_a_service_is_refused_while_the_cache_is_down(admin_client, settings):
    service = Service.objects.create(title="Second opinions", description="From specialists.")
    settings.CACHES = redis_nowhere()
    response = admin_client.post(f"/admin/guides/service/{service.pk}/delete/", {"post": "yes"})
    assert response.status_code == 503
    assert "nothing was saved" in response.content.decode()
    assert Service.objects.filter(pk=service.pk).exists()


def test_a_page_cached_while_an_edit_is_being_saved_is_not_served_after(
    client, leukemia_guide, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        leukemia_guide.lead = "A corrected opening paragraph."
        leukemia_guide.save()
        # A reader between the save and the commit caches the page under the version set
        # inside the transaction. (This one shares the test's connection and reads the new
        # rows; a reader on another connection would read the old ones.)
        during = client.get(leukemia_guide.get_absolute_url())["ETag"]
    after = client.get(leukemia_guide.get_absolute_url())
    assert after["ETag"] != during
    assert (
        client.get(leukemia_guide.get_absolute_url(), HTTP_IF_NONE_MATCH=during).status_code == 200
    )
