"""The shared cache only speeds the site up: while it cannot be reached, readers still get the
guide and families can still send their reports (cancerfax/caches.py)."""

import hashlib

import pytest

from inquiries.models import Document, Inquiry

from .conftest import files_in
from .servers import free_port
from .test_guide_admin import change_guide
from .test_inquiry_form import pdf, send

pytestmark = pytest.mark.django_db


@pytest.fixture
def cache_down(settings):
    """Redis as production configures it, on a port where nothing listens."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }


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
    assert "Guide page rendered without the cache: ConnectionError" in caplog.text


def test_the_guide_is_cached_again_once_the_cache_is_back(
    client, leukemia_guide, cache_down, settings
):
    assert "ETag" not in client.get(leukemia_guide.get_absolute_url())
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    etag = client.get(leukemia_guide.get_absolute_url())["ETag"]
    again = client.get(leukemia_guide.get_absolute_url(), HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304


def test_a_family_can_send_reports_while_the_cache_is_down(
    client, cache_down, documents_dir, uploads_dir, caplog
):
    report = pdf()
    sent = hashlib.sha256(report.read()).hexdigest()
    report.seek(0)
    response = send(client, documents=[report])
    assert response.status_code == 302
    assert response["Location"] == "/inquiries/thank-you/"
    inquiry = Inquiry.objects.get()
    assert [document.sha256 for document in inquiry.documents.all()] == [sent]
    assert len(files_in(documents_dir)) == 1
    assert files_in(uploads_dir) == []
    # Let through without its limits, and the log says so.
    assert "Rate limit inquiries.attempts not applied: ConnectionError" in caplog.text
    assert "Rate limit inquiries.stored not applied: ConnectionError" in caplog.text


def test_the_limits_hold_again_once_the_cache_is_back(client, cache_down, settings):
    settings.INQUIRY_RATE_LIMIT = "1/h"
    assert send(client).status_code == 302
    assert send(client).status_code == 302
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
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
