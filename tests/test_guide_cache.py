"""Guide pages are served from the cache, and an editor's change shows at once."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils.http import http_date

from .support import change_guide

pytestmark = pytest.mark.django_db


def test_a_second_reader_is_served_without_touching_the_database(client, leukemia_guide):
    url = leukemia_guide.get_absolute_url()
    first = client.get(url)
    with CaptureQueriesContext(connection) as queries:
        second = client.get(url)
    assert second.status_code == 200
    assert second.content == first.content
    assert len(queries) == 0


def test_an_edit_in_the_admin_shows_at_once(admin_client, client, leukemia_guide):
    url = leukemia_guide.get_absolute_url()
    client.get(url)
    faq = leukemia_guide.faqs.first()
    position = list(leukemia_guide.faqs.all()).index(faq)
    change_guide(
        admin_client, leukemia_guide, **{f"faqs-{position}-answer": "A newly checked answer."}
    )
    assert "A newly checked answer." in client.get(url).content.decode()


def test_a_change_to_any_part_outside_the_admin_shows_at_once(client, leukemia_guide):
    url = leukemia_guide.get_absolute_url()
    client.get(url)
    product = leukemia_guide.products.get(brand_name="Kymriah")
    product.indication = "Changed from the shell."
    product.save()
    assert "Changed from the shell." in client.get(url).content.decode()
    leukemia_guide.faqs.first().delete()
    assert client.get(url).content.decode().count('<details class="faq">') == 11


def test_responses_carry_an_etag_and_answer_304_until_any_part_changes(client, leukemia_guide):
    url = leukemia_guide.get_absolute_url()
    response = client.get(url)
    assert client.get(url, HTTP_IF_NONE_MATCH=response["ETag"]).status_code == 304
    faq = leukemia_guide.faqs.first()
    faq.answer = "A newly checked answer."
    faq.save()  # within the same second: an HTTP date could not tell the two pages apart
    assert client.get(url, HTTP_IF_NONE_MATCH=response["ETag"]).status_code == 200


def test_no_last_modified_date_that_could_hide_a_correction(client, leukemia_guide):
    url = leukemia_guide.get_absolute_url()
    response = client.get(url)
    assert "Last-Modified" not in response
    faq = leukemia_guide.faqs.first()
    faq.answer = "A newly checked answer."
    faq.save()
    asked = client.get(url, HTTP_IF_MODIFIED_SINCE=http_date())  # "changed since now?"
    assert asked.status_code == 200
    assert "A newly checked answer." in asked.content.decode()


def test_an_unpublished_guide_is_not_served_from_the_cache(client, leukemia_guide):
    url = leukemia_guide.get_absolute_url()
    client.get(url)
    leukemia_guide.published = False
    leukemia_guide.save()
    assert client.get(url).status_code == 404


def test_with_no_cache_time_every_reader_gets_a_fresh_render(client, leukemia_guide, settings):
    settings.GUIDE_CACHE_SECONDS = 0
    url = leukemia_guide.get_absolute_url()
    client.get(url)
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    # Rendered once for the request, though its ETag, date and body each ask for the page.
    assert 0 < len(queries) <= 8


def test_a_cached_page_carries_the_same_headers_and_sets_no_cookie(client, leukemia_guide):
    url = leukemia_guide.get_absolute_url()
    first = client.get(url)
    second = client.get(url)  # answered from the cache, before the session layers
    assert second.content == first.content
    for header in (
        "Content-Security-Policy",
        "X-Frame-Options",
        "Referrer-Policy",
        "Permissions-Policy",
        "Cross-Origin-Opener-Policy",
        "X-Content-Type-Options",
        "ETag",
        "Cache-Control",
        "X-Request-ID",
    ):
        assert second.headers.get(header), header
        if header != "X-Request-ID":
            assert second.headers[header] == first.headers[header], header
    assert "Set-Cookie" not in second.headers and "Cookie" not in second.get("Vary", "")


def test_a_cached_page_still_checks_the_host(client, leukemia_guide):
    url = leukemia_guide.get_absolute_url()
    client.get(url)
    assert client.get(url, HTTP_HOST="attacker.example").status_code == 400
    assert client.head(url).status_code == 200


def test_compressed_once_and_served_as_is_to_browsers_that_take_gzip(client, leukemia_guide):
    import gzip

    url = leukemia_guide.get_absolute_url()
    plain = client.get(url)
    for _ in range(2):  # rendered, then from the cache
        packed = client.get(url, HTTP_ACCEPT_ENCODING="gzip, deflate, br")
        assert packed["Content-Encoding"] == "gzip"
        assert gzip.decompress(packed.content) == plain.content
        assert packed["ETag"] == f"W/{plain['ETag']}"
        assert "Accept-Encoding" in packed["Vary"]
        assert int(packed["Content-Length"]) == len(packed.content)
    again = client.get(url, HTTP_ACCEPT_ENCODING="gzip", HTTP_IF_NONE_MATCH=packed["ETag"])
    assert again.status_code == 304
