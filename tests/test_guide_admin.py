"""Editors keep guides up to date in the admin; what they change is a draft until a second
person, a clinical approver, publishes it as a revision."""

from datetime import timedelta

import pytest
from bs4 import BeautifulSoup
from django.core.management import call_command
from django.db import models
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from guides.models import PublishRefused, Revision, Service, add_months

from .conftest import sign_in_with_second_factor
from .support import change_guide, clinical_approver, guide_staff, publish


@pytest.fixture
def editor(db):
    """Casey edits guides; the "Guide editors" group may not publish."""
    browser = Client()
    sign_in_with_second_factor(browser, guide_staff("casey-editor", "Guide editors"))
    return browser


@pytest.fixture
def approver(db):
    """Robin approves guides: a member of "Clinical approvers", in a browser of their own."""
    browser = Client()
    sign_in_with_second_factor(browser, clinical_approver("robin-approver"))
    return browser


def set_review_dates(guide, **dates) -> None:
    # A revision is never changed (its queryset refuses): the test moves the clock instead,
    # through the plain queryset's own update.
    models.QuerySet.update(Revision.objects.filter(guide=guide), **dates)


def publish_url(guide) -> str:
    return reverse("admin:guides_guide_publish", args=[guide.pk])


def send_publish(client, guide, **data):
    """The publish form sent as a browser sends it: with the fingerprint of the draft the
    page showed."""
    page = BeautifulSoup(client.get(publish_url(guide)).content, "html.parser")
    field = page.find("input", attrs={"name": "fingerprint"})
    fingerprint = field["value"] if field else guide.fingerprint()
    return client.post(publish_url(guide), {"fingerprint": fingerprint, **data})


def main_text(html: str) -> str:
    text = " ".join(BeautifulSoup(html, "html.parser").main.get_text(" ").split())
    # Dates are elements of their own (<time>): no space before the punctuation after them.
    return text.replace(" :", ":").replace(" .", ".")


def test_an_editors_change_is_a_draft_until_an_approver_publishes_it(
    editor, approver, client, leukemia_guide
):
    url = leukemia_guide.get_absolute_url()
    before = client.get(url)
    faq = leukemia_guide.faqs.first()
    position = list(leukemia_guide.faqs.all()).index(faq)
    response = change_guide(
        editor,
        leukemia_guide,
        lead="A calmer opening paragraph, written by the editor.",
        **{f"faqs-{position}-question": "What should I ask my haematologist first?"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    # Readers still get the published page, byte for byte.
    assert client.get(url).content == before.content

    preview = editor.get(reverse("guides:preview", args=[leukemia_guide.slug]))
    assert preview["X-Robots-Tag"] == "noindex, nofollow"
    soup = BeautifulSoup(preview.content, "html.parser")
    assert soup.find("meta", attrs={"name": "robots"})["content"] == "noindex, nofollow"
    assert "Draft preview." in soup.get_text()
    assert "A calmer opening paragraph, written by the editor." in soup.get_text()

    page = approver.get(publish_url(leukemia_guide)).content.decode()
    differences = BeautifulSoup(page, "html.parser").find("table", class_="differences")
    rows = [" ".join(row.get_text(" ").split()) for row in differences.tbody.find_all("tr")]
    assert any(row.startswith("Guide: lead changed") and "calmer" in row for row in rows)
    assert any(row.startswith("Text: Lead changed") for row in rows)  # as readers meet it
    renamed = [row for row in rows if "What should I ask my haematologist first?" in row]
    assert renamed, rows

    response = send_publish(
        approver,
        leukemia_guide,
        **{"kind": "correction", "summary": "Made the opening gentler; clearer first question."},
    )
    assert response.status_code == 302
    after = client.get(url)
    assert after["ETag"] != before["ETag"]
    text = main_text(after.content.decode())
    assert "A calmer opening paragraph, written by the editor." in text
    assert "What should I ask my haematologist first?" in text
    today = f"{timezone.localdate():%-d %B %Y}"
    assert f"{today}: Correction. Made the opening gentler; clearer first question." in text
    assert leukemia_guide.revisions.count() == 2


def test_whoever_changed_the_draft_last_may_not_publish_it(approver, client, leukemia_guide):
    response = change_guide(approver, leukemia_guide, lead="A change by the approver.")
    assert response.status_code == 302
    page = approver.get(publish_url(leukemia_guide)).content.decode()
    assert "You made a change to this draft, so someone else must approve" in page
    response = send_publish(
        approver, leukemia_guide, **{"kind": "correction", "summary": "My own change."}
    )
    assert response.status_code == 200
    assert "someone else must approve and publish it (four eyes)" in response.content.decode()
    assert leukemia_guide.revisions.count() == 1
    assert (
        "A change by the approver."
        not in client.get(leukemia_guide.get_absolute_url()).content.decode()
    )
    # The server refuses it too, whatever the screen shows.
    leukemia_guide.refresh_from_db()
    with pytest.raises(PublishRefused, match="four eyes"):
        leukemia_guide.publish(
            clinical_approver("robin-approver"), kind="correction", summary="Again."
        )
    # Somebody else may.
    publish(leukemia_guide, kind="correction", summary="The approver’s change, checked.")
    assert (
        "A change by the approver."
        in client.get(leukemia_guide.get_absolute_url()).content.decode()
    )


def test_a_change_to_a_service_or_a_reviewer_counts_as_a_change_to_the_draft(
    approver, leukemia_guide
):
    # Both are on the guide's page: whoever changed them may not publish it either.
    service = Service.objects.first()
    response = approver.post(
        f"/admin/guides/service/{service.pk}/change/",
        {"title": "Second opinions, changed", "description": service.description, "position": 0},
    )
    assert response.status_code == 302
    response = send_publish(
        approver, leukemia_guide, **{"kind": "correction", "summary": "My service change."}
    )
    assert "(four eyes)" in response.content.decode()
    publish(leukemia_guide, kind="correction", summary="Checked by somebody else.")
    reviewer = leukemia_guide.reviewers.first()
    response = approver.post(
        f"/admin/guides/reviewer/{reviewer.pk}/change/",
        {
            "name": reviewer.name,
            "role": "Consultant",
            "qualifications": reviewer.qualifications,
            "fictional": "on",
        },
    )
    assert response.status_code == 302
    response = send_publish(
        approver, leukemia_guide, **{"kind": "correction", "summary": "My reviewer change."}
    )
    assert "(four eyes)" in response.content.decode()
    assert leukemia_guide.revisions.count() == 2


def test_an_editor_without_the_permission_cannot_publish(editor, client, leukemia_guide):
    leukemia_guide.lead = "A change made by somebody else."
    leukemia_guide.save()
    page = BeautifulSoup(editor.get(publish_url(leukemia_guide)).content, "html.parser")
    assert "You do not have permission to publish guides." in page.select_one(".errornote").text
    assert page.find("input", value="Approve and publish") is None  # not offered
    # Sent all the same, it is refused by the server.
    response = send_publish(editor, leukemia_guide, **{"kind": "review", "summary": "Mine."})
    alert = BeautifulSoup(response.content, "html.parser").select_one("[role=alert]")
    assert alert.get_text(strip=True) == "You do not have permission to publish guides."
    assert leukemia_guide.revisions.count() == 1
    assert (
        "A change made by somebody else."
        not in client.get(leukemia_guide.get_absolute_url()).content.decode()
    )


def test_publishing_without_a_summary_is_refused_politely(approver, leukemia_guide):
    response = send_publish(approver, leukemia_guide, **{"kind": "review", "summary": "  "})
    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    assert leukemia_guide.revisions.count() == 1


def test_only_a_full_review_moves_the_review_dates(client, leukemia_guide, settings):
    first = leukemia_guide.current_revision()
    url = leukemia_guide.get_absolute_url()
    correction = publish(leukemia_guide, kind="correction", summary="A typing error fixed.")
    assert (correction.reviewed_on, correction.next_review_due) == (
        first.reviewed_on,
        first.next_review_due,
    )
    text = main_text(client.get(url).content.decode())
    assert f"Updated: {correction.approved_at:%-d %B %Y}" in text
    leukemia_guide.review_cycle_months = 6
    leukemia_guide.save()
    review = publish(leukemia_guide, kind="review", summary="Reviewed in full.")
    assert review.reviewed_on == timezone.localdate(review.approved_at)
    assert review.next_review_due == add_months(review.reviewed_on, 6)
    text = main_text(client.get(url).content.decode())
    assert f"Next review due: {review.next_review_due:%-d %B %Y}" in text
    assert "Updated:" not in text


def test_a_past_revision_is_served_to_staff_exactly_as_readers_had_it(
    approver, client, leukemia_guide
):
    url = leukemia_guide.get_absolute_url()
    served = client.get(url).content
    leukemia_guide.lead = "A later opening."
    leukemia_guide.save()
    publish(leukemia_guide, kind="correction", summary="A later opening.")
    assert client.get(url).content != served
    old = approver.get(reverse("guides:revision", args=[leukemia_guide.slug, 1]))
    assert old.content == served
    assert old["X-Robots-Tag"] == "noindex, nofollow"
    # Not to the public.
    anonymous = client.get(reverse("guides:revision", args=[leukemia_guide.slug, 1]))
    assert anonymous.status_code == 302
    assert anonymous.url.startswith("/admin/login/")
    assert client.get(reverse("guides:preview", args=[leukemia_guide.slug])).status_code == 302


def test_a_published_revision_can_be_neither_changed_nor_deleted(approver, leukemia_guide):
    revision = leukemia_guide.current_revision()
    change = f"/admin/guides/revision/{revision.pk}/change/"
    assert "Open revision 1" in approver.get(change).content.decode()
    assert approver.post(change, {"summary": "Rewritten history."}).status_code == 403
    delete = f"/admin/guides/revision/{revision.pk}/delete/"
    assert approver.post(delete, {"post": "yes"}).status_code == 403
    revision.summary = "Rewritten history."
    with pytest.raises(ValueError, match="never changed"):
        revision.save()
    assert Revision.objects.get(pk=revision.pk).summary == "First published."


def test_the_first_revision_of_a_guide_must_be_a_full_review(make_guide):
    guide = make_guide(published=False)
    with pytest.raises(PublishRefused, match="first revision must be a full clinical review"):
        publish(guide, kind="correction")
    assert publish(guide, kind="review").number == 1


def test_admin_warns_when_a_citation_matches_no_reference(editor, leukemia_guide):
    response = change_guide(editor, leukemia_guide, lead="An unsourced claim [ref:no-such-study].")
    assert response.status_code == 302
    followed = editor.get(response.url)
    assert "[ref:no-such-study]" in followed.content.decode()
    assert "match no reference" in followed.content.decode()


def test_admin_lists_guides_overdue_for_review(editor, make_guide):
    today = timezone.localdate()
    overdue = make_guide(slug="overdue", title="Overdue guide")
    # A revision is never changed; the test moves the clock's effect instead.
    set_review_dates(
        overdue, reviewed_on=today - timedelta(days=400), next_review_due=today - timedelta(days=35)
    )
    make_guide(slug="current", title="Current guide")
    html = editor.get("/admin/guides/guide/?review=overdue").content.decode()
    assert "Overdue guide" in html
    assert "Current guide" not in html
    listing = editor.get("/admin/guides/guide/").content.decode()
    assert "(overdue)" in listing


def test_review_reminders_email_the_editors_about_due_and_overdue_guides(
    make_guide, mailoutbox, db
):
    today = timezone.localdate()
    guide_staff("casey-editor", "Guide editors")
    clinical_approver("robin-approver")
    overdue = make_guide(slug="overdue", title="Overdue guide")
    set_review_dates(
        overdue, reviewed_on=today - timedelta(days=368), next_review_due=today - timedelta(days=3)
    )
    soon = make_guide(slug="soon", title="Soon guide")
    set_review_dates(soon, next_review_due=today + timedelta(days=20))
    make_guide(slug="later", title="Later guide")
    call_command("review_reminders", verbosity=0)
    recipients = sorted(address for message in mailoutbox for address in message.to)
    assert recipients == [
        "approver-for-tests@example.org",
        "casey-editor@example.org",
        "robin-approver@example.org",
    ]
    body = mailoutbox[0].body
    assert "Overdue:\n- Overdue guide: the review was due on" in body
    assert "Due in the next 30 days:\n- Soon guide: due on" in body
    assert "Later guide" not in body
    assert mailoutbox[0].subject == "Guides due for clinical review: 2"


def test_no_reminder_when_no_guide_is_due(make_guide, mailoutbox):
    make_guide()
    call_command("review_reminders", verbosity=0)
    assert mailoutbox == []


def test_the_demo_reviewers_say_in_the_admin_that_they_are_fictional(approver, leukemia_guide):
    html = approver.get("/admin/guides/reviewer/").content.decode()
    rows = BeautifulSoup(html, "html.parser").select("#result_list tbody tr")
    assert len(rows) == 2
    for row in rows:
        assert row.select_one("td.field-is_fictional img")["alt"] == "True"


def test_anonymous_visitors_cannot_reach_the_guide_admin(client, leukemia_guide):
    for url in (f"/admin/guides/guide/{leukemia_guide.pk}/change/", publish_url(leukemia_guide)):
        response = client.get(url)
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


def test_no_one_who_changed_the_draft_may_publish_it_whoever_changed_it_after(
    approver, editor, leukemia_guide
):
    change_guide(approver, leukemia_guide, lead="A change by the approver.")
    # Somebody else changes something after: the approver's own change is still in the draft.
    service = Service.objects.first()
    editor.post(
        f"/admin/guides/service/{service.pk}/change/",
        {"title": service.title, "description": service.description, "position": 5},
    )
    response = send_publish(approver, leukemia_guide, kind="correction", summary="Mine.")
    assert "(four eyes)" in response.content.decode()
    assert leukemia_guide.revisions.count() == 1
    revision = publish(leukemia_guide, kind="correction", summary="Checked by a third person.")
    assert revision.content["editors"] == ["casey-editor", "robin-approver"]


def test_the_comparison_shows_every_change_not_only_the_text(approver, editor, leukemia_guide):
    reference = leukemia_guide.references.get(key="maude-2018")
    position = list(leukemia_guide.references.all()).index(reference)
    change_guide(
        editor,
        leukemia_guide,
        review_cycle_months="36",
        **{f"references-{position}-url": "https://example.org/elsewhere"},
    )
    page = BeautifulSoup(approver.get(publish_url(leukemia_guide)).content, "html.parser")
    rows = [" ".join(r.get_text(" ").split()) for r in page.select("table.differences tbody tr")]
    assert any(r.startswith("Reference “maude-2018”: url changed") for r in rows), rows
    assert any(r.startswith("Guide: review_cycle_months changed") for r in rows), rows


def test_the_approver_publishes_what_they_read_not_a_later_change(
    approver, editor, client, leukemia_guide
):
    change_guide(editor, leukemia_guide, lead="A benign change.")
    page = BeautifulSoup(approver.get(publish_url(leukemia_guide)).content, "html.parser")
    read = page.find("input", attrs={"name": "fingerprint"})["value"]
    change_guide(editor, leukemia_guide, lead="A change made while the approver was reading.")
    response = approver.post(
        publish_url(leukemia_guide),
        {"fingerprint": read, "kind": "correction", "summary": "The benign change."},
    )
    assert "The draft changed while you were reading it." in response.content.decode()
    assert leukemia_guide.revisions.count() == 1


def test_a_published_guides_address_and_listed_words_never_change_without_publishing(
    editor, client, leukemia_guide
):
    page = editor.get(f"/admin/guides/guide/{leukemia_guide.pk}/change/").content.decode()
    assert 'name="slug"' not in page  # shown, not editable, once published
    change_guide(editor, leukemia_guide, title="An unpublished title", summary="Unpublished.")
    for url in (reverse("home"), reverse("guides:list")):
        listing = client.get(url).content.decode()
        assert "An unpublished title" not in listing
        assert "Gene therapy for leukemia" in listing


def test_only_staff_with_the_guides_see_drafts_and_past_revisions(
    coordinator_client, leukemia_guide
):
    for url in (
        reverse("guides:preview", args=[leukemia_guide.slug]),
        reverse("guides:revision", args=[leukemia_guide.slug, 1]),
    ):
        assert coordinator_client.get(url).status_code == 403


def test_revisions_can_be_neither_updated_nor_deleted_in_bulk(leukemia_guide):
    with pytest.raises(ValueError, match="never changed"):
        Revision.objects.filter(guide=leukemia_guide).update(summary="Rewritten.")
    with pytest.raises(ValueError, match="never deleted"):
        Revision.objects.filter(guide=leukemia_guide).delete()
    assert Revision.objects.get().summary == "First published."


def test_make_run_publishes_only_guides_nobody_has_changed_in_the_admin(editor, make_guide):
    guide = make_guide(published=False)
    guide.mark_edited(guide_staff("casey-editor", "Guide editors"))
    call_command("publish_first_revisions", approver=clinical_approver().username, verbosity=0)
    assert not guide.revisions.exists()


def test_a_signed_in_reader_is_never_answered_for_a_shared_cache(editor, client, leukemia_guide):
    assert editor.get(leukemia_guide.get_absolute_url())["Cache-Control"] == "private, max-age=0"
    public = client.get(leukemia_guide.get_absolute_url())["Cache-Control"]
    assert public.startswith("public") and "s-maxage=300" in public
