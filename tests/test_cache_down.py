"""The shared cache only speeds the site up: while it cannot be reached, readers still get the
guide and families can still send their reports (cancerfax/cache_outage.py)."""

import contextlib
import hashlib
import socket

import pytest
from redis.exceptions import ResponseError

import cancerfax.cache_outage
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


def working_cache(name: str) -> dict:
    """A cache that answers, of its own (a memory cache outlives the test that made it)."""
    return {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": name}
    }


@pytest.fixture
def cache_down(settings):
    settings.CACHES = redis_nowhere()


def test_readers_get_the_guide_while_the_cache_is_down(client, leukemia_guide, cache_down):
    url = leukemia_guide.get_absolute_url()
    response = client.get(url)
    assert response.status_code == 200
    assert "What this means for patients" in response.content.decode()
    # The published revision needs no cache: browsers may still keep their copy.
    assert client.get(url, HTTP_IF_NONE_MATCH=response["ETag"]).status_code == 304


def test_a_worker_leaves_a_failed_cache_alone_for_ten_seconds(
    client, cache_down, settings, monkeypatch, caplog
):
    settings.INQUIRY_RATE_LIMIT = "1/h"
    assert send(client).status_code == 302
    assert "Inquiries taken without the cache for 10 s: ConnectionError" in caplog.text
    settings.CACHES = working_cache("back-0")
    # Still resting: the limit is not counted, so a second sending goes through.
    assert send(client).status_code == 302
    monkeypatch.setattr(cancerfax.cache_outage, "_resting_until", 0.0)  # ten seconds later
    assert send(client).status_code == 302
    assert send(client).status_code == 429


def test_a_hung_cache_is_waited_for_once_not_on_every_request(client, settings):
    with socket.create_server(("127.0.0.1", 0)) as silent:  # takes connections, never answers
        settings.CACHES = redis_nowhere(silent.getsockname()[1])
        for _ in range(3):
            assert send(client).status_code == 302
        silent.setblocking(False)
        waited_for = 0
        with contextlib.suppress(BlockingIOError):
            while True:
                silent.accept()[0].close()
                waited_for += 1
    assert waited_for == 1


def test_a_cache_refusing_one_command_is_tried_again_at_once(client, settings, monkeypatch):
    settings.INQUIRY_RATE_LIMIT = "1/h"

    def out_of_memory(*args, **kwargs):
        raise ResponseError("OOM command not allowed when used memory > 'maxmemory'.")

    with monkeypatch.context() as refusing:
        refusing.setattr(cancerfax.cache_outage, "is_ratelimited", out_of_memory)
        assert send(client).status_code == 302
    assert send(client).status_code == 302
    assert send(client).status_code == 429


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
    settings.CACHES = working_cache("back-1")
    monkeypatch.setattr(cancerfax.cache_outage, "_resting_until", 0.0)  # ten seconds later
    assert send(client).status_code == 302
    assert send(client).status_code == 429
    assert Document.objects.count() == Inquiry.objects.count() == 3


def test_an_editors_change_is_saved_while_the_cache_is_down(
    admin_client, client, leukemia_guide, cache_down
):
    # A draft needs no cache; readers keep getting the published revision.
    response = change_guide(admin_client, leukemia_guide, lead="A corrected opening paragraph.")
    assert response.status_code == 302
    leukemia_guide.refresh_from_db()
    assert leukemia_guide.lead == "A corrected opening paragraph."
    page = client.get(leukemia_guide.get_absolute_url()).content.decode()
    assert "A corrected opening paragraph." not in page
