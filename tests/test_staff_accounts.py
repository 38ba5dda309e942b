"""Coordinators' accounts guard health data: strong hashing, sessions that end when idle."""

import pytest
from django.contrib.auth.models import User

pytestmark = pytest.mark.django_db


def test_passwords_are_hashed_with_argon2():
    user = User.objects.create_user("casey", password="a-long-fictional-pass")
    assert user.password.startswith("argon2$")


def test_a_staff_session_expires_after_thirty_idle_minutes(client):
    User.objects.create_user("casey", password="a-long-fictional-pass", is_staff=True)
    client.post("/admin/login/", {"username": "casey", "password": "a-long-fictional-pass"})
    response = client.get("/admin/")
    assert response.status_code == 200
    cookie = response.cookies["sessionid"]
    # Renewed on every request, so it is idle time that counts.
    assert cookie["max-age"] == 1800
    assert client.session.get_expiry_age() == 1800


def sign_in(client, password: str):
    return client.post(
        "/admin/login/?next=/admin/",
        {"username": "casey", "password": password},
        REMOTE_ADDR="203.0.113.9",
    )


def test_repeated_wrong_passwords_lock_the_account_out_for_a_while(client, settings):
    User.objects.create_user("casey", password="a-long-fictional-pass", is_staff=True)
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert sign_in(client, "wrong-guess").status_code == 200
    locked = sign_in(client, "wrong-guess")
    assert locked.status_code == 429
    assert "Sign-in paused for this account" in locked.content.decode()
    # Even the right password is refused until the pause ends.
    assert sign_in(client, "a-long-fictional-pass").status_code == 429
    assert client.get("/admin/").status_code == 302


def test_a_right_password_after_a_few_mistakes_signs_in(client):
    User.objects.create_user("casey", password="a-long-fictional-pass", is_staff=True)
    sign_in(client, "wrong-guess")
    assert sign_in(client, "a-long-fictional-pass").status_code == 302
    assert client.get("/admin/").status_code == 200
