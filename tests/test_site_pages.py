"""The pages around the guides: sitemap, robots.txt, favicon and error pages."""

import pytest
from django.urls import path

GUIDE_URL = "http://127.0.0.1:8000/guides/gene-therapy-for-leukemia/"


def test_sitemap_lists_published_guides_only(client, leukemia_guide, make_guide):
    make_guide(slug="draft-guide", published=False)
    response = client.get("/sitemap.xml")
    assert response.status_code == 200
    xml = response.content.decode()
    assert f"<loc>{GUIDE_URL}</loc>" in xml
    assert "<loc>http://127.0.0.1:8000/guides/</loc>" in xml
    assert "draft-guide" not in xml
    assert "<lastmod>" in xml


def test_robots_txt_points_to_the_sitemap_and_keeps_robots_out_of_the_admin(client):
    response = client.get("/robots.txt")
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    text = response.content.decode()
    assert "Disallow: /admin/" in text
    assert "Sitemap: http://127.0.0.1:8000/sitemap.xml" in text


def test_favicon_is_served(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert response.url == "/static/img/favicon.ico"


def test_unknown_page_gets_the_branded_not_found_page(client, db):
    response = client.get("/guides/no-such-guide/")
    assert response.status_code == 404
    html = response.content.decode()
    assert "<title>Page not found – CancerFax</title>" in html
    assert "treatment guides" in html


def broken_view(request):
    raise RuntimeError("a fault for the test")


urlpatterns = [path("broken/", broken_view)]


@pytest.mark.urls(__name__)
def test_server_error_gets_the_branded_error_page(client):
    client.raise_request_exception = False
    response = client.get("/broken/")
    assert response.status_code == 500
    html = response.content.decode()
    assert "Sorry, something went wrong on our side" in html
    assert "a fault for the test" not in html
