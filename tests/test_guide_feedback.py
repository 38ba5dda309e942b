"""“Was this page useful?” at the foot of every guide, and the page on how guides are written."""

import pytest
from bs4 import BeautifulSoup
from django.test import Client
from django.urls import reverse

from guides.models import Feedback

from .conftest import sign_in_with_second_factor
from .support import guide_staff

pytestmark = pytest.mark.django_db


@pytest.fixture
def reader() -> Client:
    # As a browser posting the stored page's form would: CSRF is checked as in production.
    return Client(enforce_csrf_checks=True)


def feedback_form(client, guide):
    page = BeautifulSoup(client.get(guide.get_absolute_url()).content, "html.parser")
    return page.select_one("section.feedback form")


def test_the_guide_asks_whether_it_was_useful_with_a_form_that_needs_no_token(
    reader, leukemia_guide
):
    form = feedback_form(reader, leukemia_guide)
    assert form["action"] == reverse("guides:feedback", args=[leukemia_guide.slug])
    assert form.find("input", attrs={"name": "csrfmiddlewaretoken"}) is None
    assert [button["value"] for button in form.find_all("button")] == ["yes", "no"]
    warning = form.find(id="feedback-comment-help").get_text()
    assert "do not write names, contact details or health details" in warning
    response = reader.post(
        form["action"], {"useful": "no", "comment": "The table is hard to read on my phone."}
    )
    assert response.status_code == 302
    assert response.url == reverse("guides:feedback_thanks", args=[leukemia_guide.slug])
    assert "Thank you" in reader.get(response.url).content.decode()
    stored = Feedback.objects.get()
    assert (stored.guide, stored.useful, stored.comment) == (
        leukemia_guide,
        False,
        "The table is hard to read on my phone.",
    )
    assert stored.revision_number == leukemia_guide.current_revision().number


def test_a_comment_without_an_answer_is_kept_and_the_reader_asked_politely(reader, leukemia_guide):
    url = reverse("guides:feedback", args=[leukemia_guide.slug])
    response = reader.post(url, {"comment": "Clear, thank you."})
    assert response.status_code == 200
    page = BeautifulSoup(response.content, "html.parser")
    assert page.select_one("[role=alert]").li.get_text() == "Please choose Yes or No."
    assert page.find("textarea", attrs={"name": "comment"}).get_text() == "Clear, thank you."
    assert not Feedback.objects.exists()


def test_a_comment_too_long_is_kept_and_nothing_stored(reader, leukemia_guide):
    url = reverse("guides:feedback", args=[leukemia_guide.slug])
    response = reader.post(url, {"useful": "yes", "comment": "a" * 1001})
    assert response.status_code == 200
    assert "Please keep your comment under 1000 characters (it has 1001)." in (
        response.content.decode()
    )
    assert not Feedback.objects.exists()


def test_answers_are_rate_limited_and_the_comment_kept(reader, leukemia_guide, settings):
    settings.GUIDE_FEEDBACK_RATE_LIMIT = "2/h"
    url = reverse("guides:feedback", args=[leukemia_guide.slug])
    for _ in range(2):
        assert reader.post(url, {"useful": "yes"}).status_code == 302
    response = reader.post(url, {"useful": "no", "comment": "One more thing."})
    assert response.status_code == 429
    assert "Please try again in an hour" in response.content.decode()
    assert "One more thing." in response.content.decode()
    assert Feedback.objects.count() == 2


def test_no_feedback_for_a_guide_readers_cannot_see(reader, make_guide):
    guide = make_guide(published=False)
    url = reverse("guides:feedback", args=[guide.slug])
    assert reader.post(url, {"useful": "yes"}).status_code == 404
    assert not Feedback.objects.exists()


def test_editors_see_the_answers_beside_the_guide(reader, leukemia_guide):
    url = reverse("guides:feedback", args=[leukemia_guide.slug])
    reader.post(url, {"useful": "yes"})
    reader.post(url, {"useful": "no", "comment": "Say more about costs."})
    editor = Client()
    sign_in_with_second_factor(editor, guide_staff("casey-editor", "Guide editors"))
    listing = BeautifulSoup(editor.get("/admin/guides/guide/").content, "html.parser")
    assert listing.select_one("td.field-readers_said").get_text() == "1 / 1"
    answers = editor.get("/admin/guides/feedback/").content.decode()
    assert "Say more about costs." in answers


def test_how_we_write_our_guides_is_linked_from_every_guide(client, leukemia_guide):
    page = BeautifulSoup(client.get(leukemia_guide.get_absolute_url()).content, "html.parser")
    link = page.find("a", string="How we write our guides")
    assert link["href"] == reverse("guides:how_we_write")
    about = BeautifulSoup(client.get(link["href"]).content, "html.parser")
    headings = [h2.get_text() for h2 in about.main.find_all("h2")]
    assert headings == [
        "Where the facts come from",
        "Who checks them",
        "How often",
        "If you find a mistake",
        "Independence and funding",
    ]
    assert "at least every 12 months" in about.main.get_text()
