"""The admin's case page as coordinators use it all day: their own open cases first, news
from families marked, documents previewed in place (and each preview recorded), bulk
actions that never reopen a closed case, duplicates closed in one step, and a history that
reads as words."""

import io
import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from PIL import Image

from inquiries.models import DocumentDownload, Inquiry

from .forms import form_data as admin_form_data
from .support import pdf, photo, send

LIST_URL = "/admin/inquiries/inquiry/"


@pytest.fixture
def inquiry(db) -> Inquiry:
    send(Client(), documents=[photo(), pdf()])
    return Inquiry.objects.get()


def change_url(inquiry: Inquiry) -> str:
    return f"{LIST_URL}{inquiry.pk}/change/"


def second_inquiry(**changes) -> Inquiry:
    send(Client(), documents=[pdf()], **changes)
    return Inquiry.objects.order_by("-id").first()


def test_the_list_opens_on_my_open_cases(coordinator_client, coordinator, inquiry):
    mine = second_inquiry(patient_name="Bo Testperson", language="es")
    mine.assign(coordinator)
    closed = second_inquiry(patient_name="Cy Closedcase")
    closed.assign(coordinator)
    closed.set_status(Inquiry.Status.CLOSED, Inquiry.ClosedReason.NOT_SUITABLE)
    response = coordinator_client.get(LIST_URL)
    assert response.status_code == 302 and response.url == f"{LIST_URL}?cases=mine"
    page = coordinator_client.get(response.url).content.decode()
    assert "Bo Testperson" in page
    assert "Ada Example" not in page and "Cy Closedcase" not in page
    assert "Spanish" in page  # the family's language, in the list
    everything = coordinator_client.get(f"{LIST_URL}?cases=all").content.decode()
    assert "Ada Example" in everything and "Cy Closedcase" in everything


def test_news_from_the_family_is_marked_until_a_coordinator_opens_the_case(
    coordinator_client, inquiry
):
    Inquiry.objects.filter(pk=inquiry.pk).update(news_from_family_at=timezone.now())
    second_inquiry(patient_name="Bo Quiet")
    news = coordinator_client.get(f"{LIST_URL}?cases=all&news=yes").content.decode()
    assert "New from the family" in news and "Bo Quiet" not in news
    assert coordinator_client.get(change_url(inquiry)).status_code == 200
    inquiry.refresh_from_db()
    assert inquiry.news_from_family_at is None
    assert (
        "New from the family</strong>"
        not in coordinator_client.get(f"{LIST_URL}?cases=all").content.decode()
    )


def test_the_case_page_has_a_save_button_at_the_top(coordinator_client, inquiry):
    html = coordinator_client.get(change_url(inquiry)).content.decode()
    assert html.count('name="_save"') == 2


def test_previews_open_in_place_and_each_opening_is_recorded(
    coordinator_client, coordinator, inquiry
):
    html = coordinator_client.get(change_url(inquiry)).content.decode()
    previews = re.findall(r'<img src="([^"]+/preview/)" alt="Preview of the ([^"]+)"', html)
    assert sorted(what for _, what in previews) == [
        "first page of pathology-report.pdf",
        "photo of blood-count.jpg",
    ]
    assert '<details class="preview">' in html and 'loading="lazy"' in html
    # Showing the case opened none of them.
    assert not DocumentDownload.objects.exists()
    for url, _ in previews:
        response = coordinator_client.get(url)
        assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
        assert "no-store" in response["Cache-Control"]
        picture = Image.open(io.BytesIO(response.content))
        assert picture.format == "JPEG" and max(picture.size) <= 480
    recorded = DocumentDownload.objects.order_by("document_name")
    assert [(d.document_name, d.kind, d.user) for d in recorded] == [
        ("blood-count.jpg", "preview", coordinator),
        ("pathology-report.pdf", "preview", coordinator),
    ]
    assert "Previewed" in coordinator_client.get(change_url(inquiry)).content.decode()


def test_previews_need_the_download_permission(inquiry):
    viewer = User.objects.create_user("viewer", password="a-long-fictional-pass", is_staff=True)
    viewer.user_permissions.add(
        *viewer.user_permissions.model.objects.filter(codename="view_inquiry")
    )
    from .conftest import sign_in_with_second_factor

    client = Client()
    sign_in_with_second_factor(client, viewer)
    document = inquiry.documents.get(original_name="blood-count.jpg")
    assert client.get(f"{LIST_URL}document/{document.pk}/preview/").status_code == 403
    assert not DocumentDownload.objects.exists()


def test_bulk_status_actions_never_reopen_a_closed_case(coordinator_client, inquiry):
    closed = second_inquiry(patient_name="Cy Closedcase")
    closed.set_status(Inquiry.Status.CLOSED, Inquiry.ClosedReason.DECLINED)
    response = coordinator_client.post(
        f"{LIST_URL}?cases=all",
        {"action": "mark_in_review", "_selected_action": [inquiry.pk, closed.pk]},
        follow=True,
    )
    page = response.content.decode()
    assert "1 inquiry marked “In review”." in page
    assert f"left as they were because they are closed: {closed.reference}" in page
    closed.refresh_from_db()
    inquiry.refresh_from_db()
    assert (closed.status, closed.closed_reason) == ("closed", "declined")
    assert inquiry.status == "in_review"


def test_assign_to_me_says_whose_case_it_was(coordinator_client, coordinator, inquiry):
    colleague = User.objects.create_user("robin", password="a-long-fictional-pass", is_staff=True)
    theirs = second_inquiry(patient_name="Bo Testperson")
    theirs.assign(colleague)
    response = coordinator_client.post(
        f"{LIST_URL}?cases=all",
        {"action": "assign_to_me", "_selected_action": [inquiry.pk, theirs.pk]},
        follow=True,
    )
    page = response.content.decode()
    assert f"{theirs.reference}: was robin" in page
    assert f"{inquiry.reference}: was unassigned" in page
    assert Inquiry.objects.filter(assigned_to=coordinator).count() == 2


def test_a_duplicate_is_linked_and_closed_in_one_step(coordinator_client, inquiry):
    later = second_inquiry()
    url = change_url(later)
    data = admin_form_data(coordinator_client.get(url).content.decode(), "inquiry_form")
    data["same_patient_as"] = str(inquiry.pk)
    data["_close_duplicate"] = "Save and close as a duplicate"
    assert coordinator_client.post(url, data).status_code == 302
    later.refresh_from_db()
    assert (later.status, later.closed_reason) == ("closed", "duplicate")
    assert later.same_patient_as == inquiry and later.closed_at is not None
    earlier = coordinator_client.get(change_url(inquiry)).content.decode()
    assert f">{later.reference}</a> (Closed)" in earlier
    # Without the earlier inquiry chosen, nothing is closed and the form says why.
    third = second_inquiry()
    url = change_url(third)
    data = admin_form_data(coordinator_client.get(url).content.decode(), "inquiry_form")
    data["_close_duplicate"] = "Save and close as a duplicate"
    response = coordinator_client.post(url, data)
    assert response.status_code == 200
    assert "Choose the earlier inquiry this one duplicates." in response.content.decode()
    third.refresh_from_db()
    assert third.status == "new"


def test_the_history_page_reads_as_words_with_no_dead_links(
    coordinator_client, coordinator, inquiry
):
    colleague = User.objects.create_user("robin", password="a-long-fictional-pass", is_staff=True)
    leaver = User.objects.create_user("left-us", password="a-long-fictional-pass", is_staff=True)
    inquiry.assign(leaver)
    leaver.delete()
    inquiry.refresh_from_db()
    inquiry.assign(colleague)
    url = change_url(inquiry)
    data = admin_form_data(coordinator_client.get(url).content.decode(), "inquiry_form")
    data["status"] = "in_review"
    data["assigned_to"] = str(coordinator.pk)
    coordinator_client.post(url, data)
    history = coordinator_client.get(f"{LIST_URL}{inquiry.pk}/history/")
    assert history.status_code == 200
    page = history.content.decode()
    assert "Status:</strong> New → In review" in page
    assert "Assigned to:</strong> robin → casey" in page
    assert "the family (form)" in page and "Inquiry received" in page
    assert "Assigned to:</strong> a removed account → robin" in page
    assert "Deleted user" not in page and "pk=None" not in page and ">None<" not in page
    # Every link on the page opens for this coordinator.
    main = page.split('id="content-main"')[1]
    for link in set(re.findall(r'href="(/admin/[^"]*)"', main)):
        assert coordinator_client.get(link).status_code in (200, 302), link
