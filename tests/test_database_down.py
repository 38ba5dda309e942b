"""When the database cannot be reached, people get a calm page, not an error."""

import pytest
from django.db import OperationalError, connection

from inquiries.models import Inquiry

from .conftest import files_in
from .support import send

pytestmark = pytest.mark.django_db


@pytest.fixture
def database_down(monkeypatch):
    def refused(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(connection, "cursor", refused)
    yield
    monkeypatch.undo()


def test_pages_answer_503_with_retry_after(client, leukemia_guide, database_down):
    response = client.get(leukemia_guide.get_absolute_url())
    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    assert "Please try again in a few minutes" in response.content.decode()


def test_an_inquiry_sent_while_the_database_is_down_says_nothing_was_saved(
    client, documents_dir, uploads_dir, monkeypatch
):
    def refused(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(connection, "cursor", refused)
    response = send(client)
    assert response.status_code == 503
    assert "nothing was saved" in response.content.decode()
    assert files_in(documents_dir) == files_in(uploads_dir) == []
    monkeypatch.undo()
    assert Inquiry.objects.count() == 0


def test_the_site_recovers_by_itself_when_the_database_returns(client, leukemia_guide, monkeypatch):
    def refused(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(connection, "cursor", refused)
    assert client.get(leukemia_guide.get_absolute_url()).status_code == 503
    monkeypatch.undo()
    assert client.get(leukemia_guide.get_absolute_url()).status_code == 200
    assert send(client).status_code == 302
