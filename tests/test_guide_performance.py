"""The guide page stays fast as a guide grows: one query for a reader, a fixed number to
publish, a small first load."""

import gzip
import re

import brotli
import pytest
from django.contrib.staticfiles import finders
from django.db import connection
from django.test.utils import CaptureQueriesContext

from .support import publish

# A reader's page is the current revision's stored bytes: one query, nothing rendered.
READER_QUERIES = 1
# Publishing renders the page once: the guide, its parts and reviewers, the services, the
# history, and the writes.
MAX_PUBLISH_QUERIES = 30
MAX_FIRST_LOAD = 60 * 1024


def queries_for(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


def test_guide_page_runs_the_same_few_queries_with_ten_times_the_content(client, make_guide):
    small = make_guide(slug="small", items=3)
    large = make_guide(slug="large", items=30)
    assert large.faqs.count() == 10 * small.faqs.count()
    assert queries_for(client, small.get_absolute_url()) == READER_QUERIES
    assert queries_for(client, large.get_absolute_url()) == READER_QUERIES
    published = []
    for guide in (small, large):
        with CaptureQueriesContext(connection) as captured:
            publish(guide, kind="correction", summary="Nothing changed.")
        published.append(len(captured))
    assert published[0] == published[1] <= MAX_PUBLISH_QUERIES


def first_load(html: str) -> dict[str, int]:
    """Bytes on the wire for the page and what it links to, as compressed as they are served."""
    sizes = {"html (gzip)": len(gzip.compress(html.encode(), compresslevel=6))}
    assets = re.findall(r'<link rel="stylesheet" href="/static/([^"]+)"', html)
    assets += re.findall(r'<script[^>]+src="/static/([^"]+)"', html)
    for name in assets:
        with open(finders.find(name), "rb") as asset:
            # whitenoise serves the Brotli copy made by collectstatic to browsers that accept it.
            sizes[f"{name} (br)"] = len(brotli.compress(asset.read()))
    return sizes


@pytest.mark.django_db
def test_first_load_of_the_real_guide_is_at_most_60_kb(client, leukemia_guide):
    html = client.get(leukemia_guide.get_absolute_url()).content.decode()
    sizes = first_load(html)
    total = sum(sizes.values())
    print(f"first load of the guide: {total / 1024:.1f} KB", sizes)
    assert len(sizes) >= 3, "the page, Bootstrap and the site stylesheet"
    assert total <= MAX_FIRST_LOAD


def test_a_second_reader_costs_no_query_and_a_publication_reaches_the_next(
    client, make_guide, django_capture_on_commit_callbacks
):
    guide = make_guide(items=3)
    url = guide.get_absolute_url()
    assert queries_for(client, url) == READER_QUERIES
    assert queries_for(client, url) == 0  # from the shared cache
    with django_capture_on_commit_callbacks(execute=True):
        guide.lead = "A corrected opening."
        guide.save()
        publish(guide, kind="correction", summary="The opening corrected.")
        # A reader between the publication and its commit keeps what they read in the cache
        # (this one shares the test's connection; one on another would read the old rows).
        client.get(url)
    assert "A corrected opening." in client.get(url).content.decode()
