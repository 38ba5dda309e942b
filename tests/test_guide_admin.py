"""Editors keep guides up to date in the admin."""

from datetime import timedelta

import pytest
from django.utils import timezone

from .support import change_guide


@pytest.fixture
def editor(admin_client):
    return admin_client


def test_an_edit_made_in_the_admin_shows_on_the_page(editor, client, leukemia_guide):
    faq = leukemia_guide.faqs.first()
    position = list(leukemia_guide.faqs.all()).index(faq)
    response = change_guide(
        editor,
        leukemia_guide,
        lead="A calmer opening paragraph, written by the editor.",
        **{f"faqs-{position}-question": "What should I ask my haematologist first?"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    html = client.get(leukemia_guide.get_absolute_url()).content.decode()
    assert "A calmer opening paragraph, written by the editor." in html
    assert "What should I ask my haematologist first?" in html


def test_admin_warns_when_a_citation_matches_no_reference(editor, leukemia_guide):
    response = change_guide(editor, leukemia_guide, lead="An unsourced claim [ref:no-such-study].")
    assert response.status_code == 302
    followed = editor.get(response.url)
    assert "[ref:no-such-study]" in followed.content.decode()
    assert "match no reference" in followed.content.decode()


def test_admin_refuses_a_next_review_before_the_last_review(editor, leukemia_guide):
    response = change_guide(
        editor, leukemia_guide, last_reviewed="2026-04-16", next_review_due="2026-01-01"
    )
    assert response.status_code == 200
    assert "The next review must be due after the last review." in response.content.decode()
    leukemia_guide.refresh_from_db()
    assert str(leukemia_guide.next_review_due) == "2027-04-16"


def test_admin_lists_guides_overdue_for_review(editor, make_guide):
    today = timezone.localdate()
    make_guide(
        slug="overdue",
        title="Overdue guide",
        last_reviewed=today - timedelta(days=400),
        next_review_due=today - timedelta(days=35),
    )
    make_guide(slug="current", title="Current guide")
    html = editor.get("/admin/guides/guide/?review=overdue").content.decode()
    assert "Overdue guide" in html
    assert "Current guide" not in html
    listing = editor.get("/admin/guides/guide/").content.decode()
    assert "(overdue)" in listing


def test_anonymous_visitors_cannot_reach_the_guide_admin(client, leukemia_guide):
    response = client.get(f"/admin/guides/guide/{leukemia_guide.pk}/change/")
    assert response.status_code == 302
    assert response.url.startswith("/admin/login/")


def test_line_breaks_typed_in_a_browser_are_stored_as_plain_newlines(editor, leukemia_guide):
    response = change_guide(editor, leukemia_guide, lead="First paragraph.\r\n\r\nSecond one.")
    assert response.status_code == 302
    leukemia_guide.refresh_from_db()
    assert leukemia_guide.lead == "First paragraph.\n\nSecond one."


def test_citation_warning_says_where_the_broken_citation_is(editor, leukemia_guide):
    faq = leukemia_guide.faqs.first()
    position = list(leukemia_guide.faqs.all()).index(faq)
    response = change_guide(
        editor, leukemia_guide, **{f"faqs-{position}-answer": "See [ref:missing-source]."}
    )
    followed = editor.get(response.url).content.decode()
    assert "[ref:missing-source] in Question “" in followed
