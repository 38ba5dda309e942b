"""Every response carries the headers that keep a medical site safe in a browser."""

import re

import pytest

pytestmark = pytest.mark.django_db

PAGES = ["/", "/guides/", "/inquiries/new/", "/inquiries/privacy/", "/admin/login/"]


@pytest.mark.parametrize("url", PAGES)
def test_pages_carry_a_strict_content_security_policy(client, url):
    policy = client.get(url)["Content-Security-Policy"]
    directives = dict(
        (part.split()[0], part.split()[1:]) for part in policy.split("; ") if part.strip()
    )
    assert directives["default-src"] == ["'self'"]
    assert directives["script-src"][0] == "'self'"
    assert all(source.startswith("'nonce-") for source in directives["script-src"][1:])
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["form-action"] == ["'self'"]


def test_the_admin_uses_a_fresh_nonce_for_each_response(client):
    nonces = []
    for _ in range(2):
        page = client.get("/admin/login/")
        policy = page["Content-Security-Policy"].split("; ")
        script_src = next(part for part in policy if part.startswith("script-src"))
        assert "'unsafe-inline'" not in script_src and "'unsafe-eval'" not in script_src
        nonce = re.search(r"'nonce-([^']+)'", script_src).group(1)
        assert f'nonce="{nonce}"' in page.content.decode()
        nonces.append(nonce)
    assert nonces[0] != nonces[1]


def test_guide_pages_need_no_nonce_and_run_no_inline_script(client, leukemia_guide):
    page = client.get(leukemia_guide.get_absolute_url())
    script_src = next(
        part
        for part in page["Content-Security-Policy"].split("; ")
        if part.startswith("script-src")
    )
    assert script_src == "script-src 'self'"
    scripts = re.findall(r"<script([^>]*)>", page.content.decode())
    assert scripts and all('type="application/ld+json"' in attributes for attributes in scripts)


@pytest.mark.parametrize("url", PAGES)
def test_pages_carry_the_other_security_headers(client, url):
    response = client.get(url)
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    policy = response["Permissions-Policy"]
    for feature in ("camera=()", "microphone=()", "geolocation=()"):
        assert feature in policy


def test_cookies_are_http_only_and_same_site(client):
    client.get("/inquiries/new/")
    csrf = client.cookies["csrftoken"]
    assert csrf["httponly"] is True
    assert csrf["samesite"] == "Lax"
