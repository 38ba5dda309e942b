"""Coordinators work the inquiry queue in the admin: triage, notes, documents, audit."""

import io
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from inquiries.models import Document, DocumentDownload, Inquiry, Note, Notification

from .conftest import files_in, sign_in_with_second_factor
from .forms import form_data as admin_form_data
from .support import photo, send

pytestmark = pytest.mark.django_db

LIST_URL = "/admin/inquiries/inquiry/"
ALL_CASES = f"{LIST_URL}?cases=all"


@pytest.fixture
def inquiry(db) -> Inquiry:
    send(Client(), documents=[photo()])
    return Inquiry.objects.get()


def change_url(inquiry: Inquiry) -> str:
    return f"{LIST_URL}{inquiry.pk}/change/"


def test_coordinators_group_has_exactly_the_triage_permissions():
    codenames = set(
        Group.objects.get(name="Coordinators").permissions.values_list("codename", flat=True)
    )
    assert codenames == {
        "view_inquiry",
        "change_inquiry",
        "download_document",
        "view_historicalinquiry",
        "view_document",
        "view_note",
        "add_note",
        "view_documentdownload",
        "view_notification",
        "view_series",
        "view_message",
        "add_message",
        "view_recordrequest",
        "add_recordrequest",
        "change_recordrequest",
        "view_recordkind",
        "add_recordkind",
        "change_recordkind",
        "view_caseevent",
    }


def test_coordinator_cannot_edit_guides(coordinator_client):
    assert coordinator_client.get("/admin/guides/guide/").status_code == 403


def test_inquiry_list_shows_the_columns_coordinators_need(coordinator_client, inquiry):
    inquiry.follow_up_on = timezone.localdate() - timedelta(days=2)
    inquiry.save()
    html = coordinator_client.get(ALL_CASES).content.decode()
    for text in [
        inquiry.reference,
        "Ada Example",
        "B-cell acute lymphoblastic",
        "United Kingdom",
        "New",
        "(overdue)",
    ]:
        assert text in html
    assert '<td class="field-documents">1</td>' in html


def test_inquiry_list_runs_no_query_per_row(coordinator_client, settings):
    settings.INQUIRY_RATE_LIMIT = "100/h"
    client = Client()
    for _ in range(2):
        send(client)
    with CaptureQueriesContext(connection) as few:
        coordinator_client.get(ALL_CASES)
    for _ in range(8):
        send(client)
    with CaptureQueriesContext(connection) as many:
        coordinator_client.get(ALL_CASES)
    assert Inquiry.objects.count() == 10
    assert len(many) == len(few)


def test_filters_and_search(coordinator_client, coordinator):
    client = Client()
    send(client)
    send(client, patient_name="Bo Testperson", diagnosis="cll", email="bo@example.org")
    mine = Inquiry.objects.get(patient_name="Bo Testperson")
    mine.assign(to=coordinator)
    assert "Bo Testperson" in coordinator_client.get(f"{LIST_URL}?assigned=me").content.decode()
    assert "Ada Example" not in coordinator_client.get(f"{LIST_URL}?assigned=me").content.decode()
    assert "Ada Example" in coordinator_client.get(f"{LIST_URL}?assigned=nobody").content.decode()
    assert (
        "Ada Example"
        not in coordinator_client.get(f"{LIST_URL}?diagnosis__exact=cll").content.decode()
    )
    found = coordinator_client.get(f"{LIST_URL}?q={mine.reference}").content.decode()
    assert "Bo Testperson" in found and "Ada Example" not in found


def test_assign_to_me_action_records_who_and_when(coordinator_client, coordinator, inquiry):
    response = coordinator_client.post(
        LIST_URL, {"action": "assign_to_me", "_selected_action": [inquiry.pk]}
    )
    assert response.status_code == 302
    inquiry.refresh_from_db()
    assert inquiry.assigned_to == coordinator
    last = inquiry.history.latest("history_date")
    assert last.history_user == coordinator
    assert last.history_change_reason == "Assigned to casey"
    page = coordinator_client.get(change_url(inquiry)).content.decode()
    assert "Assigned to casey" in page


@pytest.fixture
def viewer_client(client, db):
    """A staff member who may only look at inquiries, as an auditor or a trainee might."""
    viewer = User.objects.create_user("vic", password="another-fictional-pass", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_inquiry"))
    sign_in_with_second_factor(client, viewer)
    return client


def handling(inquiry: Inquiry) -> tuple:
    inquiry.refresh_from_db()
    return (inquiry.status, inquiry.closed_reason, inquiry.assigned_to_id, inquiry.follow_up_on)


@pytest.mark.parametrize(
    "action",
    ["assign_to_me", "mark_in_review", "mark_awaiting_records", "mark_referred", "retry_emails"],
)
def test_a_view_only_user_cannot_change_inquiries_through_bulk_actions(
    viewer_client, inquiry, action
):
    Notification.objects.update(sent_at=None, attempts=1)
    before = handling(inquiry)
    page = viewer_client.get(ALL_CASES).content.decode()
    assert page.count('name="action"') == 0 or f'value="{action}"' not in page
    viewer_client.post(LIST_URL, {"action": action, "_selected_action": [inquiry.pk]})
    assert handling(inquiry) == before
    assert inquiry.history.count() == 1
    assert list(Notification.objects.values_list("attempts", flat=True)) == [1, 1]


@pytest.mark.parametrize("who", ["viewer", "coordinator"])
def test_the_history_page_cannot_revert_an_inquiry(
    request, who, viewer_client, coordinator, inquiry
):
    if who == "coordinator":
        browser = Client()
        sign_in_with_second_factor(browser, coordinator)
    else:
        browser = viewer_client
    inquiry.set_status(Inquiry.Status.IN_REVIEW)
    first = inquiry.history.earliest("history_date")
    url = f"{change_url(inquiry).removesuffix('change/')}history/{first.history_id}/"
    assert browser.get(url).status_code == 200
    before = handling(inquiry)
    response = browser.post(
        url, {"status": "closed", "closed_reason": "duplicate", "follow_up_on": "2027-01-01"}
    )
    assert response.status_code == 403
    assert handling(inquiry) == before


def test_status_change_in_the_form_is_recorded_and_closing_needs_a_reason(
    coordinator_client, coordinator, inquiry
):
    url = change_url(inquiry)
    data = admin_form_data(coordinator_client.get(url).content.decode(), "inquiry_form")
    data.update({"status": "closed", "closed_reason": ""})
    refused = coordinator_client.post(url, data)
    assert refused.status_code == 200
    assert "Choose why the inquiry is closed." in refused.content.decode()

    data.update({"status": "closed", "closed_reason": "no_reply"})
    assert coordinator_client.post(url, data).status_code == 302
    inquiry.refresh_from_db()
    assert inquiry.status == "closed" and inquiry.closed_at is not None
    reason = inquiry.history.latest("history_date").history_change_reason
    assert reason == "Status: Closed (No reply from the family)"


def test_what_the_family_sent_is_read_only(coordinator_client, inquiry):
    url = change_url(inquiry)
    data = admin_form_data(coordinator_client.get(url).content.decode(), "inquiry_form")
    data.update({"patient_name": "Someone Else", "email": "else@example.org"})
    assert "patient_name" not in admin_form_data(
        coordinator_client.get(url).content.decode(), "inquiry_form"
    )
    coordinator_client.post(url, data)
    inquiry.refresh_from_db()
    assert inquiry.patient_name == "Ada Example"


def test_notes_are_added_with_author_and_never_edited(coordinator_client, coordinator, inquiry):
    url = change_url(inquiry)
    data = admin_form_data(coordinator_client.get(url).content.decode(), "inquiry_form")
    data["notes-0-text"] = "Called the family; they will send the bone marrow report."
    assert coordinator_client.post(url, data).status_code == 302
    note = Note.objects.get()
    assert note.author == coordinator
    html = coordinator_client.get(url).content.decode()
    assert "Called the family" in html
    assert 'name="notes-0-text"' not in html.split("Called the family")[0][-500:]
    assert 'name="notes-0-DELETE"' not in html


def test_document_download_is_private_checked_and_recorded(
    coordinator_client, coordinator, inquiry, documents_dir
):
    document = inquiry.documents.get()
    url = f"/admin/inquiries/inquiry/document/{document.pk}/download/"
    response = coordinator_client.get(url)
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith('attachment; filename="blood-count.jpg"')
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "no-store" in response["Cache-Control"].split(", ")
    assert b"".join(response.streaming_content) == (documents_dir / document.file.name).read_bytes()
    record = DocumentDownload.objects.get()
    assert (record.user, record.document) == (coordinator, document)
    assert "blood-count.jpg" in coordinator_client.get(change_url(inquiry)).content.decode()


def test_anyone_else_gets_the_login_page_or_403_never_the_bytes(client, inquiry, coordinator):
    document = inquiry.documents.get()
    url = f"/admin/inquiries/inquiry/document/{document.pk}/download/"
    anonymous = client.get(url)
    assert anonymous.status_code == 302 and anonymous.url.startswith("/admin/login/")
    public = User.objects.create_user("pat", password="another-fictional-pass")
    client.force_login(public)
    assert client.get(url).status_code == 302
    # A coordinator's password alone is not enough: the code from the app comes first.
    client.force_login(coordinator)
    assert client.get(url).status_code == 302
    staff = User.objects.create_user("sky", password="another-fictional-pass", is_staff=True)
    sign_in_with_second_factor(client, staff)
    assert client.get(url).status_code == 403
    assert DocumentDownload.objects.count() == 0


def test_a_damaged_file_is_not_sent(coordinator_client, inquiry, documents_dir):
    document = inquiry.documents.get()
    (documents_dir / document.file.name).write_bytes(b"changed on disk")
    response = coordinator_client.get(f"/admin/inquiries/inquiry/document/{document.pk}/download/")
    assert response.status_code == 500
    assert "could not be verified" in response.content.decode()
    assert DocumentDownload.objects.count() == 0


def test_a_file_missing_from_storage_gets_a_clear_page_not_a_crash(
    coordinator_client, inquiry, documents_dir
):
    document = inquiry.documents.get()
    (documents_dir / document.file.name).unlink()
    response = coordinator_client.get(f"/admin/inquiries/inquiry/document/{document.pk}/download/")
    assert response.status_code == 500
    assert "could not be verified" in response.content.decode()
    assert DocumentDownload.objects.count() == 0


def test_a_heic_photo_downloads_under_a_jpeg_name(coordinator_client, client, documents_dir):
    from .sample_files import heic_bytes

    send(Client(), documents=[SimpleUploadedFile("IMG_0001.HEIC", heic_bytes())])
    document = Document.objects.get()
    response = coordinator_client.get(f"/admin/inquiries/inquiry/document/{document.pk}/download/")
    assert response["Content-Type"] == "image/jpeg"
    assert 'filename="IMG_0001.jpg"' in response["Content-Disposition"]


def test_inquiries_are_never_deleted_from_the_admin_even_by_a_superuser(admin_client, inquiry):
    assert admin_client.get(f"{LIST_URL}{inquiry.pk}/delete/").status_code == 403
    response = admin_client.post(
        LIST_URL, {"action": "delete_selected", "_selected_action": [inquiry.pk]}
    )
    assert Inquiry.objects.filter(pk=inquiry.pk).exists()
    assert response.status_code in (200, 302)


def test_history_keeps_no_health_details(inquiry, coordinator):
    inquiry.assign(to=coordinator)
    fields = {field.name for field in Inquiry.history.model._meta.get_fields()}
    assert "status" in fields and "assigned_to" in fields
    for detail in ("diagnosis", "patient_name", "email", "question", "treatment_so_far"):
        assert detail not in fields


def test_documents_of_long_closed_inquiries_are_erased(
    inquiry, documents_dir, settings, django_capture_on_commit_callbacks
):
    settings.DOCUMENT_RETENTION_DAYS = 30
    inquiry.set_status(Inquiry.Status.CLOSED, reason="no_reply")
    Inquiry.objects.filter(pk=inquiry.pk).update(closed_at=timezone.now() - timedelta(days=31))
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("erase_closed_documents", stdout=out)
    assert "Erased 1 documents" in out.getvalue()
    assert Document.objects.count() == 0
    assert files_in(documents_dir) == []
    assert Inquiry.objects.filter(pk=inquiry.pk).exists()


def test_recently_closed_and_open_inquiries_keep_their_documents(inquiry, documents_dir):
    call_command("erase_closed_documents", stdout=io.StringIO())
    assert Document.objects.count() == 1
    assert len(files_in(documents_dir)) == 1


def test_an_inquiry_is_erased_completely_on_request(
    inquiry, coordinator, documents_dir, django_capture_on_commit_callbacks
):
    inquiry.assign(to=coordinator)
    Note.objects.create(inquiry=inquiry, author=coordinator, text="A fictional note.")
    with django_capture_on_commit_callbacks(execute=True):
        call_command("erase_inquiry", inquiry.reference, "--yes", stdout=io.StringIO())
    assert Inquiry.objects.count() == 0
    assert Inquiry.history.count() == 0
    assert Document.objects.count() == Note.objects.count() == 0
    assert files_in(documents_dir) == []


def test_demo_data_gives_a_newcomer_cases_to_work_on(settings, client):
    # As `make run` has it: debug on, so the demo account signs in with its password alone.
    settings.DEBUG = True
    settings.STAFF_TWO_FACTOR = False
    out = io.StringIO()
    call_command("load_demo", stdout=out)
    call_command("load_demo", stdout=io.StringIO())
    assert Inquiry.objects.count() == 3
    assert Document.objects.count() == 6
    assert "password “demo-coordinator-2026”" in out.getvalue()
    client.post("/admin/login/", {"username": "coordinator", "password": "demo-coordinator-2026"})
    assert "Ada Example" in client.get(ALL_CASES).content.decode()
    # One case where the coordinator has asked for records, with the family's link printed.
    mine = client.get(client.get(LIST_URL).url).content.decode()
    assert "Ada Example" in mine and "Awaiting records" in mine
    link = re.search(r"http://\S+(/inquiries/case/open/\?key=\S+)", out.getvalue()).group(1)
    family = Client()
    family.post("/inquiries/case/open/", {"key": link.split("key=")[1]})
    page = family.get("/inquiries/case/").content.decode()
    assert "Flow cytometry report, with CD19" in page and "bone marrow report" in page


def test_demo_data_is_refused_in_production(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="development only"):
        call_command("load_demo", stdout=io.StringIO())
    assert not User.objects.filter(username="coordinator").exists()
