"""A family sends an inquiry with medical reports: what they see, what is stored, what is sent."""

import hashlib
import io
import re
import stat
import uuid
import zipfile
from datetime import timedelta

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import DatabaseError
from django.test import Client
from django.utils import timezone

from inquiries.models import CONSENT_TEXT, CONSENT_VERSION, Document, Inquiry, Notification

from .conftest import files_in
from .sample_files import (
    PYDICOM_FILES,
    dicom_bytes,
    dicomdir_bytes,
    heic_bytes,
    jpeg_bytes,
    large_pdf,
    pdf_bytes,
    png_bytes,
    tiff_bytes,
)
from .servers import PATIENT, form_data
from .support import FORM_URL, pdf, photo, send

pytestmark = pytest.mark.django_db


def assert_refused(response, message: str, documents_dir, uploads_dir) -> str:
    """The form comes back with the message, nothing stored, nothing left on disk."""
    html = response.content.decode()
    assert response.status_code == 400
    assert "There is a problem" in html
    assert message in html, re.findall(r'class="invalid-feedback".*?</div>', html, re.S)
    assert Inquiry.objects.count() == 0
    assert Document.objects.count() == 0
    assert files_in(documents_dir) == []
    assert files_in(uploads_dir) == []
    return html


# What a family sees and what is stored after a good submission


def test_form_page_says_the_limits_and_types(client):
    html = client.get(FORM_URL).content.decode()
    assert "scans (TIFF, or DICOM from a scan disc), or a ZIP file of a scan disc" in html
    assert "Up to 20 MB each and 100 MB in all; a ZIP file up to 1.0\xa0GB" in html
    # Nothing hides the files of a scan disc, which have no extension; a folder can be chosen.
    assert "accept=" not in html
    assert re.search(r'<input[^>]+name="folder"[^>]+webkitdirectory', html)
    assert 'type="checkbox" name="consent"' in html
    assert "checked" not in re.search(r'<input[^>]+name="consent"[^>]*>', html).group(0)
    assert 'href="/inquiries/privacy/"' in html


def test_good_inquiry_is_stored_with_its_documents_and_consent(client, documents_dir):
    response = send(client, documents=[pdf(), photo()])
    assert response.status_code == 302
    assert response.url == "/inquiries/thank-you/"
    inquiry = Inquiry.objects.get()
    assert inquiry.patient_name == PATIENT
    assert inquiry.phone == "+442079460000"
    assert inquiry.treatment_so_far == "Chemotherapy in 2025.\nRelapse in 2026."
    assert inquiry.consent_version == CONSENT_VERSION
    assert inquiry.consent_text == CONSENT_TEXT
    assert inquiry.consent_given_at is not None
    assert re.fullmatch(r"CF-[2-9A-HJKMNP-TV-Z]{4}-[2-9A-HJKMNP-TV-Z]{4}", inquiry.reference)
    assert inquiry.documents.count() == 2


def test_stored_files_are_private_and_named_by_us(client, documents_dir):
    send(client, documents=[pdf("../../Ada Example report.pdf")])
    document = Document.objects.get()
    path = documents_dir / document.file.name
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "Ada" not in path.name and "report" not in path.name
    assert re.fullmatch(r"[0-9a-f]{32}\.pdf", path.name)
    assert document.original_name == "Ada Example report.pdf"
    assert document.detected_type == "pdf"
    assert document.pages == 1
    assert document.size == path.stat().st_size
    assert document.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_photo_is_stored_without_its_location_data(client, documents_dir):
    from PIL import Image

    send(client, documents=[photo()])
    document = Document.objects.get()
    with Image.open(documents_dir / document.file.name) as image:
        assert image.getexif().get_ifd(0x8825) == {}
        assert len(image.getexif()) == 0


def test_thank_you_page_shows_the_reference_and_what_happens_next(client):
    response = send(client)
    inquiry = Inquiry.objects.get()
    page = client.get(response.url)
    html = page.content.decode()
    assert inquiry.reference in html
    assert "What happens next" in html
    assert PATIENT not in html
    assert page["Cache-Control"].startswith("max-age=0")


def test_no_health_data_in_any_address(client):
    response = send(client)
    assert PATIENT.split()[0] not in response.url
    assert "b-all" not in response.url


def test_thank_you_page_without_an_inquiry_goes_back_to_the_form(client):
    response = client.get("/inquiries/thank-you/")
    assert response.status_code == 302
    assert response.url == FORM_URL


def test_sender_and_coordinators_get_one_email_each_without_health_details(client, settings):
    settings.COORDINATORS_EMAIL = "coordinators@example.org"
    send(client)
    inquiry = Inquiry.objects.get()
    assert sorted(message.to[0] for message in mail.outbox) == [
        "coordinators@example.org",
        "sam.example@example.org",
    ]
    for message in mail.outbox:
        assert inquiry.reference in message.subject
        for detail in (PATIENT, "Ada", "leukemia", "B-ALL", "CAR-T", "2009", "Chemotherapy"):
            assert detail not in message.subject + message.body
    alert = next(m for m in mail.outbox if m.to == ["coordinators@example.org"])
    assert f"http://127.0.0.1:8000/admin/inquiries/inquiry/{inquiry.pk}/change/" in alert.body
    assert Notification.objects.filter(sent_at__isnull=False).count() == 2


# Bad input: a polite message, what was typed kept, nothing stored, nothing left on disk


def test_missing_files(client, documents_dir, uploads_dir):
    response = send(client, documents=[])
    html = assert_refused(
        response, "Please choose at least one medical report to send.", documents_dir, uploads_dir
    )
    assert 'value="Ada Example"' in html
    assert "Please choose your documents again." in html


def test_empty_file(client, documents_dir, uploads_dir):
    response = send(client, documents=[SimpleUploadedFile("scan.pdf", b"")])
    assert_refused(
        response,
        "“scan.pdf” is empty. Please choose it again, or another copy of it.",
        documents_dir,
        uploads_dir,
    )


def test_file_over_its_limit(client, settings, documents_dir, uploads_dir):
    settings.DOCUMENT_MAX_BYTES = 1024 * 1024
    big = SimpleUploadedFile("scan.pdf", pdf_bytes(pages=1) + b"%" + b"x" * 1_200_000)
    response = send(client, documents=[big])
    assert_refused(response, "“scan.pdf” is larger than 1 MB", documents_dir, uploads_dir)


def test_files_over_the_total(client, settings, documents_dir, uploads_dir):
    settings.DOCUMENTS_MAX_TOTAL_BYTES = 3 * len(pdf_bytes())
    files = [pdf(f"report-{n}.pdf") for n in range(4)]
    response = send(client, documents=files)
    assert_refused(response, "Together your files are larger than", documents_dir, uploads_dir)


def test_more_than_ten_files(client, documents_dir, uploads_dir):
    files = [pdf(f"report-{n}.pdf") for n in range(11)]
    response = send(client, documents=files)
    assert_refused(response, "Please choose at most 10 files.", documents_dir, uploads_dir)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("setup.exe", b"MZ" + b"\0" * 200, "“setup.exe” looks like a program"),
        ("report.pdf", b"MZ\x90\x00" + b"\0" * 400, "“report.pdf” looks like a program"),
        ("report.pdf", b"<!doctype html><html><body>hi</body></html>", "looks like a web page"),
        ("chart.svg", b'<svg xmlns="http://www.w3.org/2000/svg"></svg>', "a kind of picture"),
        ("notes.txt", b"Blood count normal.\n", "is not a type of file we can accept"),
        ("letter.doc", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600), "save it as a PDF"),
        ("DICOMDIR", dicomdir_bytes(), "the index of a scan disc (DICOMDIR), not a scan"),
    ],
)
def test_files_that_are_not_what_they_say_are_refused(
    client, documents_dir, uploads_dir, name, content, message
):
    response = send(client, documents=[SimpleUploadedFile(name, content)])
    assert_refused(response, message, documents_dir, uploads_dir)


def test_a_file_refused_by_the_checks_never_takes_the_others_with_it(
    client, documents_dir, quarantine_dir, uploads_dir, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = send(client, documents=[photo(), pdf("plan.pdf", encrypted=True)])
    assert response.status_code == 302
    inquiry = Inquiry.objects.get()
    states = dict(inquiry.documents.values_list("original_name", "state"))
    assert states == {"blood-count.jpg": "accepted", "plan.pdf": "refused"}
    html = client.get(response.url).content.decode()
    assert "We could not accept 1 of your 2 files" in html
    assert "“plan.pdf” asks for a password before it opens." in html
    assert "Received safely" in html and 'http-equiv="refresh"' not in html
    receipt = next(m for m in mail.outbox if m.to == ["sam.example@example.org"])
    assert "1 was received safely and 1 could not be accepted" in receipt.body
    assert "plan.pdf" not in receipt.body and "blood-count" not in receipt.body
    # The refused file's original is gone, as is every accepted one's; only the rebuilt copy
    # of the photo is kept.
    assert files_in(quarantine_dir) == []
    assert len(files_in(documents_dir)) == 1
    assert files_in(uploads_dir) == []


@pytest.mark.parametrize(
    ("names", "sentence"),
    [
        (["plan.pdf"], "We could not accept your file."),
        (["plan.pdf", "letter.pdf"], "We could not accept any of your files."),
    ],
)
def test_the_family_is_told_when_none_of_their_files_was_accepted(
    client, documents_dir, quarantine_dir, django_capture_on_commit_callbacks, names, sentence
):
    with django_capture_on_commit_callbacks(execute=True):
        response = send(client, documents=[pdf(name, encrypted=True) for name in names])
    html = client.get(response.url).content.decode()
    assert sentence in html
    assert "Your inquiry itself has arrived." in html
    assert "the others are with the coordinators" not in html


def test_a_large_damaged_file_is_refused_after_sending_and_leaves_no_file(
    client, tmp_path, documents_dir, quarantine_dir, uploads_dir, django_capture_on_commit_callbacks
):
    whole = large_pdf(tmp_path / "whole.pdf", size_mb=3).read_bytes()
    cut = tmp_path / "scan.pdf"
    cut.write_bytes(whole[: len(whole) // 2])
    with cut.open("rb") as upload, django_capture_on_commit_callbacks(execute=True):
        response = client.post(FORM_URL, {**form_data(), "documents": [upload]})
    assert response.status_code == 302
    assert Document.objects.get().refusal == "damaged"
    html = client.get(response.url).content.decode()
    assert "“scan.pdf” seems to be damaged or incomplete." in html
    assert files_in(documents_dir) == files_in(quarantine_dir) == files_in(uploads_dir) == []


def test_a_flood_of_files_gets_a_friendly_page_not_an_error(client, settings):
    files = [pdf(f"report-{n}.pdf") for n in range(settings.DATA_UPLOAD_MAX_NUMBER_FILES + 1)]
    response = send(client, documents=files)
    assert response.status_code == 400
    assert "We could not read what your browser sent" in response.content.decode()
    assert Inquiry.objects.count() == 0


def test_missing_consent(client, documents_dir, uploads_dir):
    response = send(client, consent=None)
    assert_refused(response, "Please tick the box.", documents_dir, uploads_dir)


def test_family_member_must_confirm_they_may_act_for_the_patient(
    client, documents_dir, uploads_dir
):
    response = send(client, acting_for_patient_confirmed=None)
    assert_refused(
        response,
        "Please confirm that you may contact us for the patient.",
        documents_dir,
        uploads_dir,
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("email", "sam.example@", "Please enter an email address like name@example.com."),
        ("phone", "12345", "Please enter the phone number with its country code"),
        ("patient_name", "Ada\r\nBcc: victim@example.org", "Please write this on one line."),
        ("email", "sam@example.org\nBcc: x@example.org", "Please write this on one line."),
        ("question", "x" * 3001, "Please shorten this to 3000 characters or fewer"),
        ("patient_name", "A" * 121, "Please shorten this to 120 characters or fewer"),
        ("birth_year", "1700", "Select a valid choice"),
    ],
)
def test_bad_text_gets_a_polite_message_next_to_its_field(
    client, documents_dir, uploads_dir, field, value, message
):
    response = send(client, **{field: value})
    html = assert_refused(response, message, documents_dir, uploads_dir)
    # Everything else the person typed is still there.
    assert 'value="Sam Example"' in html
    assert "Chemotherapy in 2025." in html
    assert 'value="sam.example@example.org"' in html or field == "email"
    assert f'aria-describedby="id_{field}_' in html or field == "birth_year"


@pytest.mark.parametrize(
    "address",
    [
        '"sam,eve"@example.org',
        '"sam@example.org, eve@example.net"@example.org',
        '"sam example"@example.org',
        "sam@[127.0.0.1]",
        "sam@[IPv6:::1]",
        "sam@localhost",
        "sam\x07@example.org",
        '"sam\x07"@example.org',
        '"sam\teve"@example.org',
        '"sam@example.org\\,eve"@example.org',
        "sam@exam\x00ple.org",
        "sam@example.org,eve@example.net",
        "sam@example.org\u200b",
        "sam@exam\u00adple.org",
    ],
)
def test_a_receipt_goes_to_exactly_one_ordinary_mailbox(client, address):
    response = send(client, email=address)
    assert response.status_code == 400
    assert Inquiry.objects.count() == 0
    assert mail.outbox == []
    summary = re.findall(r'<li><a href="#id_email">(.*?)</a>', response.content.decode())
    assert summary and "like name@example.com" in summary[0]


@pytest.mark.parametrize(
    "address", ["sam.o'brien+cancerfax@example.co.uk", "x@sub.example-mail.org", "a@bü.example"]
)
def test_ordinary_addresses_are_accepted(client, address):
    assert send(client, email=address).status_code == 302
    assert Inquiry.objects.get().email == address


def test_error_summary_links_to_each_field(client):
    html = send(client, email="nope", consent=None).content.decode()
    summary = html[
        html.index("There is a problem") : html.index("</ul>", html.index("There is a problem"))
    ]
    assert 'href="#id_email"' in summary
    assert 'href="#id_consent"' in summary
    assert "<title>Error: Send your medical reports – CancerFax</title>" in html


def test_missing_csrf_token_gets_a_friendly_page(documents_dir):
    client = Client(enforce_csrf_checks=True)
    response = send(client)
    assert response.status_code == 403
    html = response.content.decode()
    assert "Please send the form again" in html
    assert "CSRF" not in html
    assert Inquiry.objects.count() == 0


def test_the_same_form_sent_twice_makes_one_inquiry(client, documents_dir):
    submission_id = str(uuid.uuid4())
    first = send(client, submission_id=submission_id)
    second = send(client, submission_id=submission_id)
    assert first.status_code == second.status_code == 302
    inquiry = Inquiry.objects.get()
    assert inquiry.reference in client.get(second.url).content.decode()
    assert len(files_in(documents_dir)) == 1
    assert len(mail.outbox) == 2


def test_form_says_when_this_browser_has_already_sent_an_inquiry(client):
    assert "You have already sent" not in client.get(FORM_URL).content.decode()
    send(client)
    reference = Inquiry.objects.get().reference
    again = client.get(FORM_URL).content.decode()
    assert f"You have already sent inquiry {reference}" in again


def test_error_summary_follows_the_order_of_the_form(client):
    html = send(
        client, acting_for_patient_confirmed=None, email="nope", country=""
    ).content.decode()
    summary = html[
        html.index("There is a problem") : html.index("</ul>", html.index("There is a problem"))
    ]
    anchors = re.findall(r'href="#(id_\w+)"', summary)
    assert anchors == ["id_acting_for_patient_confirmed", "id_email", "id_country"]


def test_bot_that_fills_the_hidden_field_stores_nothing(client, documents_dir, uploads_dir):
    response = send(client, website="http://spam.example")
    assert_refused(response, "Please leave this field empty.", documents_dir, uploads_dir)


def test_a_family_correcting_mistakes_is_not_locked_out(client, settings):
    settings.INQUIRY_RATE_LIMIT = "2/h"
    for _ in range(3):
        assert send(client, email="not-an-address").status_code == 400
    assert send(client).status_code == 302
    assert Inquiry.objects.count() == 1


def test_a_client_posting_junk_again_and_again_is_stopped(client, settings):
    settings.INQUIRY_RATE_LIMIT = "2/h"
    for _ in range(8):
        assert send(client, email="not-an-address").status_code == 400
    assert send(client).status_code == 429


def test_too_many_inquiries_from_one_client_get_a_friendly_429(client, settings):
    settings.INQUIRY_RATE_LIMIT = "2/h"
    assert send(client).status_code == 302
    assert send(client).status_code == 302
    response = send(client, question="Is there a trial for her in Spain?")
    assert response.status_code == 429
    html = response.content.decode()
    assert "Please wait a little before sending again" in html
    assert "please send this form again in an hour at most" in html
    # Nothing the family typed is lost, nor their file (kept with the sending for an hour).
    assert "Is there a trial for her in Spain?" in html and PATIENT in html
    assert "We kept this file from your last try" in html
    assert Inquiry.objects.count() == 2
    assert client.get(FORM_URL).status_code == 200


# Failures midway leave nothing behind


def test_database_failure_midway_stores_nothing(client, monkeypatch, documents_dir, uploads_dir):
    def broken(*args, **kwargs):
        raise DatabaseError("the database went away")

    monkeypatch.setattr(Notification.objects, "bulk_create", broken)
    response = send(client, documents=[pdf(), photo()])
    assert response.status_code == 503
    assert "nothing was stored" in response.content.decode()
    assert Inquiry.objects.count() == Document.objects.count() == 0
    assert files_in(documents_dir) == []
    assert files_in(uploads_dir) == []


def test_disk_failure_midway_stores_nothing(client, monkeypatch, quarantine_dir, uploads_dir):
    from inquiries.models import quarantine_storage

    real_save = quarantine_storage._save
    calls = []

    def fails_second_time(name, content):
        calls.append(name)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_save(name, content)

    quarantine_storage._setup()
    monkeypatch.setattr(quarantine_storage._wrapped, "_save", fails_second_time)
    response = send(client, documents=[pdf(), photo()])
    assert response.status_code == 503
    assert "nothing was stored" in response.content.decode()
    assert Inquiry.objects.count() == Document.objects.count() == 0
    assert files_in(quarantine_dir) == files_in(uploads_dir) == []


def test_mail_server_down_never_loses_the_inquiry(client, settings):
    from inquiries.documents.pipeline import recover

    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": 9, "timeout": 2},
        }
    }
    response = send(client)
    assert response.status_code == 302
    inquiry = Inquiry.objects.get()
    failed = inquiry.notifications.all()
    assert [n.attempts for n in failed] == [1, 1]
    assert all(n.sent_at is None and n.last_error for n in failed)

    # The mail server is back, and the next try is due: a worker's recovery sends both.
    settings.MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
    Notification.objects.update(last_attempt_at=timezone.now() - timedelta(minutes=2))
    assert recover() == 2
    assert len(mail.outbox) == 2
    assert Notification.objects.undelivered().count() == 0
    assert recover() == 0


def test_privacy_notice_explains_retention_and_erasure(client, settings):
    settings.DOCUMENT_RETENTION_DAYS = 180
    html = client.get("/inquiries/privacy/").content.decode()
    assert "after 180 days" in html
    assert "delete" in html


def test_behind_the_load_balancer_each_visitor_has_their_own_limit(client, settings):
    settings.RATELIMIT_IP_META_KEY = "cancerfax.middleware.client_address"
    settings.TRUSTED_PROXIES = ["10.0.0.0/24"]
    settings.INQUIRY_RATE_LIMIT = "1/h"

    def send_from(address: str, claimed: str = "", via: str = "10.0.0.2"):
        forwarded = f"{claimed}, {address}" if claimed else address
        data = {**form_data(), "documents": [pdf()]}
        return client.post(FORM_URL, data, REMOTE_ADDR=via, HTTP_X_FORWARDED_FOR=forwarded)

    assert send_from("198.51.100.1").status_code == 302
    assert send_from("198.51.100.2").status_code == 302
    assert send_from("198.51.100.1").status_code == 429
    # What a client claims before the load balancer's entry does not give a new allowance.
    assert send_from("198.51.100.2", claimed="192.0.2.77").status_code == 429
    # Nor does a header sent straight to an app server, past the load balancer: that
    # request counts by its own address, which has had its one inquiry.
    assert send_from("203.0.113.50", via="192.0.2.200").status_code == 302
    assert send_from("203.0.113.51", via="192.0.2.200").status_code == 429


def test_a_family_needs_no_session_and_the_reference_cookie_is_private(client):
    from django.contrib.sessions.models import Session

    response = send(client)
    assert Session.objects.count() == 0
    cookie = response.cookies["inquiry_sent"]
    assert cookie["httponly"] is True and cookie["samesite"] == "Lax"
    assert cookie["max-age"] == 1800
    # A forged cookie is ignored: the thank-you page sends the visitor back to the form.
    forged = Client()
    forged.cookies["inquiry_sent"] = "CF-AAAA-BBBB"
    assert forged.get("/inquiries/thank-you/").url == FORM_URL


def test_a_database_failure_after_storing_still_thanks_the_family(client, monkeypatch):
    from django.db import OperationalError

    def connection_lost(inquiry):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr("inquiries.views.queue_checks", connection_lost)
    response = send(client)
    assert response.status_code == 302
    reference = Inquiry.objects.get().reference
    html = client.get(response.url).content.decode()
    assert reference in html and "Being checked" in html
    # The document waits in quarantine, its emails as rows: a worker finds both.
    assert Document.objects.get().state == "received"
    assert Notification.objects.undelivered().count() == 2


def test_through_nginx_on_its_socket_each_visitor_still_has_their_own_limit(client, settings):
    # gunicorn gives no address for its socket; nginx added the address it saw.
    settings.INQUIRY_RATE_LIMIT = "1/h"

    def send_via_nginx(forwarded: str):
        data = {**form_data(), "documents": [pdf()]}
        return client.post(FORM_URL, data, REMOTE_ADDR="", HTTP_X_FORWARDED_FOR=forwarded)

    assert send_via_nginx("198.51.100.1").status_code == 302
    assert send_via_nginx("198.51.100.2").status_code == 302
    assert send_via_nginx("192.0.2.9, 198.51.100.1").status_code == 429


def test_addresses_with_a_port_from_the_load_balancer_still_count_per_visitor(client, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/24"]
    settings.INQUIRY_RATE_LIMIT = "1/h"

    def send_as(forwarded: str):
        data = {**form_data(), "documents": [pdf()]}
        return client.post(FORM_URL, data, REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=forwarded)

    assert send_as("198.51.100.1:50123").status_code == 302
    assert send_as("[2001:db8::7]:443").status_code == 302
    assert send_as("198.51.100.1:61000").status_code == 429


# When the form must refuse, the files that passed are kept for the same sending


def _held_page_sends_again(client, response, **changes):
    """The family's second try: the same sending (its submission id), no file chosen."""
    html = response.content.decode()
    submission = re.search(r'name="submission_id" value="([^"]+)"', html).group(1)
    return send(client, documents=[], submission_id=submission, **changes)


def test_files_that_passed_are_kept_when_the_form_comes_back_and_sent_with_it(
    client, documents_dir, quarantine_dir, uploads_dir, django_capture_on_commit_callbacks
):
    from inquiries.models import HeldFile

    first = send(client, documents=[pdf("pathology-report.pdf"), photo()], consent=None)
    assert first.status_code == 400
    html = first.content.decode()
    assert "Please tick the box." in html
    assert "We kept these files from your last try" in html
    assert "pathology-report.pdf" in html and "blood-count.jpg" in html
    assert "browsers forget chosen files" not in html
    # What the family typed is kept too; nothing is an inquiry yet.
    assert PATIENT in html and Inquiry.objects.count() == 0
    held = list(HeldFile.objects.order_by("original_name"))
    assert [h.original_name for h in held] == ["blood-count.jpg", "pathology-report.pdf"]
    assert len(files_in(quarantine_dir)) == 2 and files_in(uploads_dir) == []

    with django_capture_on_commit_callbacks(execute=True):
        second = _held_page_sends_again(client, first)
    assert second.status_code == 302
    inquiry = Inquiry.objects.get()
    states = dict(inquiry.documents.values_list("original_name", "state"))
    assert states == {"pathology-report.pdf": "accepted", "blood-count.jpg": "accepted"}
    assert not HeldFile.objects.exists()
    assert files_in(quarantine_dir) == [] and len(files_in(documents_dir)) == 2


def test_a_kept_file_the_family_removes_is_not_sent_and_is_deleted(
    client, documents_dir, quarantine_dir, django_capture_on_commit_callbacks
):
    from inquiries.models import HeldFile

    first = send(client, documents=[pdf("old-scan.pdf"), photo()], email="not-an-address")
    old = HeldFile.objects.get(original_name="old-scan.pdf")
    assert f'value="{old.pk}"' in first.content.decode()
    assert "Remove “old-scan.pdf”" in first.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        second = _held_page_sends_again(client, first, drop_held=[str(old.pk)])
    assert second.status_code == 302
    names = list(Inquiry.objects.get().documents.values_list("original_name", flat=True))
    assert names == ["blood-count.jpg"]
    assert not HeldFile.objects.exists()
    assert files_in(quarantine_dir) == [] and len(files_in(documents_dir)) == 1


def test_a_file_of_no_accepted_type_is_refused_at_once_and_the_good_one_kept(client):
    from inquiries.models import HeldFile

    document = io.BytesIO()
    with zipfile.ZipFile(document, "w", zipfile.ZIP_DEFLATED) as word:
        # The members a Word document starts with.
        word.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        word.writestr("_rels/.rels", '<?xml version="1.0"?><Relationships/>')
        word.writestr("word/document.xml", "<w:document/>")
    notes = SimpleUploadedFile("notes.docx", document.getvalue())
    response = send(client, documents=[notes, photo()])
    assert response.status_code == 400
    html = response.content.decode()
    assert "“notes.docx” looks like a Word or text document" in html
    assert list(HeldFile.objects.values_list("original_name", flat=True)) == ["blood-count.jpg"]
    # Only the refused one needs to be chosen again (or replaced by its PDF).
    assert _held_page_sends_again(client, response).status_code == 302


def test_kept_files_are_swept_after_their_hour(
    client, quarantine_dir, django_capture_on_commit_callbacks
):
    from inquiries.documents.pipeline import recover
    from inquiries.models import HeldFile

    send(client, consent=None)
    assert HeldFile.objects.count() == 1 and len(files_in(quarantine_dir)) == 1
    recover()
    assert HeldFile.objects.count() == 1
    HeldFile.objects.update(held_at=timezone.now() - timedelta(seconds=3601))
    with django_capture_on_commit_callbacks(execute=True):
        recover()
    assert not HeldFile.objects.exists() and files_in(quarantine_dir) == []


def test_an_other_sendings_kept_files_cannot_be_taken(client, documents_dir):
    from inquiries.models import HeldFile

    send(client, documents=[pdf("theirs.pdf")], consent=None)
    theirs = HeldFile.objects.get()
    # Another sending names that file's id: it is not this sending's, so nothing comes of it.
    response = send(client, documents=[photo()], drop_held=[str(theirs.pk)])
    assert response.status_code == 302
    names = list(Inquiry.objects.get().documents.values_list("original_name", flat=True))
    assert names == ["blood-count.jpg"]
    assert HeldFile.objects.get() == theirs


# The bytes decide a file's type; the name is only a hint


@pytest.mark.parametrize(
    ("name", "make", "kind"),
    [
        ("photo.jfif", lambda: jpeg_bytes(320, 240), "jpeg"),
        ("photo.jpe", lambda: jpeg_bytes(320, 240), "jpeg"),
        ("photo.hif", lambda: heic_bytes(), "heic"),
        ("photo.heif", lambda: heic_bytes(), "heic"),
        ("chart.jpg", lambda: png_bytes(), "png"),  # a PNG named as a JPEG is a PNG
        ("IM000001", lambda: dicom_bytes(), "dicom"),  # a disc's scan, with no extension
        ("report", lambda: pdf_bytes(), "pdf"),
        ("scan.dcm", lambda: (PYDICOM_FILES / "rtstruct.dcm").read_bytes(), "dicom"),
        ("fax.tif", lambda: tiff_bytes(pages=3), "tiff"),
    ],
)
def test_a_file_is_taken_for_what_its_bytes_are(
    client, documents_dir, django_capture_on_commit_callbacks, name, make, kind
):
    with django_capture_on_commit_callbacks(execute=True):
        response = send(client, documents=[SimpleUploadedFile(name, make())])
    assert response.status_code == 302
    document = Document.objects.get()
    assert (document.detected_type, document.state) == (kind, "accepted")
    if kind == "tiff":
        assert (document.content_type, document.pages) == ("application/pdf", 3)


def test_a_zip_file_over_its_limit_is_refused_while_it_arrives(client, settings, uploads_dir):
    settings.DOCUMENT_ARCHIVE_MAX_BYTES = 64 * 1024
    disc = io.BytesIO()
    with zipfile.ZipFile(disc, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("IM000001", b"\x01" * 100 * 1024)
    response = send(client, documents=[SimpleUploadedFile("disc.zip", disc.getvalue())])
    assert response.status_code == 400
    assert "“disc.zip” is larger than 0.0625 MB, more than a scan disc holds" in (
        response.content.decode()
    )
    assert Inquiry.objects.count() == 0 and files_in(uploads_dir) == []


def test_a_folder_with_more_files_than_a_disc_may_hold_is_refused_at_once(client, settings):
    settings.DOCUMENT_ARCHIVE_MAX_MEMBERS = 3
    folder = [SimpleUploadedFile(f"DISC/IM00000{n}", dicom_bytes()) for n in range(4)]
    response = send(client, documents=[], folder=folder)
    assert response.status_code == 400
    assert "holds more than 3 files" in response.content.decode()
    assert Inquiry.objects.count() == 0


def test_a_bots_files_are_never_held(client, quarantine_dir):
    from inquiries.models import HeldFile

    response = send(client, website="https://spam.example", consent=None)
    assert response.status_code == 400
    assert not HeldFile.objects.exists() and files_in(quarantine_dir) == []


def test_tries_that_keep_coming_back_do_not_pile_up_held_files(client):
    from inquiries.models import HeldFile

    first = send(client, documents=[pdf("a.pdf")], consent=None)
    submission = re.search(r'name="submission_id" value="([^"]+)"', first.content.decode())[1]
    folder = [SimpleUploadedFile("DISC/IM000001", dicom_bytes())]
    for _ in range(4):
        again = send(client, documents=[], folder=folder, consent=None, submission_id=submission)
        assert again.status_code == 400
    # The file and the folder, chosen again each time: held once, not once a try.
    kinds = sorted(HeldFile.objects.values_list("detected_type", flat=True))
    assert kinds == ["pdf", "zip"]


def test_one_sender_cannot_take_everybodys_room_for_held_files(client, settings):
    from inquiries.models import HeldFile

    settings.HELD_FILES_PER_CLIENT_BYTES = len(pdf_bytes()) * 3
    # One address, sending after sending, each coming back: three sendings' files held, then
    # no more for it; a family at another address still has theirs held.
    for _ in range(4):
        send(client, documents=[pdf("a.pdf")], consent=None)
    assert HeldFile.objects.count() == 3
    family = Client(REMOTE_ADDR="198.51.100.7")
    assert send(family, documents=[pdf("ours.pdf")], consent=None).status_code == 400
    assert HeldFile.objects.filter(original_name="ours.pdf").count() == 1
    # Addresses are never stored, only a keyed hash of them.
    assert not HeldFile.objects.filter(client__contains="127.0.0.1").exists()
    assert HeldFile.objects.values("client").distinct().count() == 2
