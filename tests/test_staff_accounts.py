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
