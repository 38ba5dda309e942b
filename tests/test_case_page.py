"""The case after the first form: what a coordinator writes and asks for, the email the
family gets (a notice and a link, nothing of the case), the case page the link opens, what
the family sends from it, and what coordinators see of it."""

import re
import uuid
from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from inquiries.documents.pipeline import recover
from inquiries.models import (
    CaseEvent,
    CaseLink,
    Document,
    Inquiry,
    Message,
    Notification,
    RecordKind,
    RecordRequest,
)

from .forms import form_data as admin_form_data
from .support import pdf, photo, send

CASE_URL = "/inquiries/case/"
LINK = re.compile(r"http://[^\s]+/inquiries/case/open/\?key=([\w-]+)")


# Emails are queued once the transaction that stored their reason commits, as in production.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def inquiry(db) -> Inquiry:
    send(Client(), documents=[photo()])
    mail.outbox.clear()
    return Inquiry.objects.get()


def change_url(inquiry: Inquiry) -> str:
    return f"/admin/inquiries/inquiry/{inquiry.pk}/change/"


def write_from_the_case(client, inquiry, text="", kinds=(), other=""):
    """The coordinator's case page, sent with a message and records asked for."""
    url = change_url(inquiry)
    data = admin_form_data(client.get(url).content.decode(), "inquiry_form")
    data["messages-0-text"] = text
    for number, kind in enumerate(kinds):
        data[f"record_requests-{number}-kind"] = str(kind.pk)
        data[f"record_requests-{number}-description"] = other if kind.needs_description else ""
    return client.post(url, data)


def last_link(to: str = "sam.example@example.org") -> str:
    message = [m for m in mail.outbox if m.to == [to]][-1]
    return LINK.search(message.body).group(0)


def open_case(client, url: str):
    """What the family does with the link: opens it, then confirms with the button."""
    token = LINK.match(url).group(1)
    page = client.get(f"/inquiries/case/open/?key={token}")
    assert page.status_code == 200
    return client.post("/inquiries/case/open/", {"key": token})


def kinds(*names: str) -> list[RecordKind]:
    return [RecordKind.objects.get(name=name) for name in names]


def test_a_coordinator_asks_for_two_records_and_writes_the_family_gets_only_a_notice(
    coordinator_client, coordinator, inquiry
):
    asked = kinds("Pathology report", "Flow cytometry report, with CD19")
    text = "Could you send the bone marrow report from March? Thank you."
    assert write_from_the_case(coordinator_client, inquiry, text, asked).status_code == 302

    inquiry.refresh_from_db()
    assert inquiry.status == Inquiry.Status.AWAITING_RECORDS
    message = Message.objects.get()
    assert (message.sender, message.author, message.text) == ("coordinator", coordinator, text)
    requests = RecordRequest.objects.order_by("id")
    assert [(r.kind.name, r.state, r.requested_by) for r in requests] == [
        ("Pathology report", "requested", coordinator),
        ("Flow cytometry report, with CD19", "requested", coordinator),
    ]
    assert "Status: Awaiting records (2 requested)" in [
        h.history_change_reason for h in inquiry.history.all()
    ]
    # One email for the message and both requests, and nothing of either in it.
    [notice] = mail.outbox
    assert notice.to == ["sam.example@example.org"]
    assert notice.subject == f"There is a new message about {inquiry.reference}"
    assert notice.reply_to == ["coordinators@localhost"]
    for private in ["bone marrow", "Pathology", "Flow cytometry", "Ada Example", "CD19"]:
        assert private not in notice.body and private not in notice.subject
    assert "call +44 20 7946 0999" in notice.body
    token = LINK.search(notice.body).group(1)
    assert len(token) >= 43
    # Only a hash of the token is stored.
    link = CaseLink.objects.get(inquiry=inquiry, purpose="notice")
    assert token not in link.token_hash and link.used_at is None


def test_the_link_opens_only_with_the_button_then_shows_the_case(
    coordinator_client, inquiry, client
):
    asked = kinds("Pathology report", "Transplant summary")
    write_from_the_case(coordinator_client, inquiry, "Please send these two.", asked)
    url = last_link()
    token = LINK.match(url).group(1)
    # A mail scanner's visit spends nothing and opens nothing.
    scanner = Client()
    opened = scanner.get(f"/inquiries/case/open/?key={token}")
    assert opened.status_code == 200 and opened["Referrer-Policy"] == "strict-origin"
    assert scanner.get(CASE_URL).status_code == 403
    assert CaseLink.objects.get(purpose="notice").used_at is None

    response = open_case(client, url)
    assert response.status_code == 302 and response.url == CASE_URL
    page = client.get(CASE_URL).content.decode()
    assert f"Your case {inquiry.reference}" in page
    assert "Where your case stands: Waiting for records" in page
    assert "Pathology report" in page and "Transplant summary" in page
    assert "Please send these two." in page
    assert "blood-count.jpg" in page and "Received safely" in page
    assert ["opened", "viewed"] == [e.kind for e in CaseEvent.objects.order_by("at", "id")]
    # The session lasts 30 minutes without a request, then the family needs a new link.
    assert client.session.get_expiry_age() == 30 * 60


@pytest.mark.parametrize("spoil", ["used", "expired", "altered", "erased", "made up"])
def test_a_spoilt_link_gets_the_same_calm_page(coordinator_client, inquiry, client, spoil):
    write_from_the_case(coordinator_client, inquiry, "Hello from the coordinators.")
    token = LINK.match(last_link()).group(1)
    if spoil == "used":
        open_case(Client(), last_link())
    elif spoil == "expired":
        CaseLink.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    elif spoil == "altered":
        token = token[:-1] + ("A" if token[-1] != "A" else "B")
    elif spoil == "erased":
        inquiry.erase()
    else:
        token = "x" * 43
    for response in [
        client.get(f"/inquiries/case/open/?key={token}"),
        client.post("/inquiries/case/open/", {"key": token}),
    ]:
        assert response.status_code == 410
        html = response.content.decode()
        assert "This link no longer works" in html and "Send me a new link" in html
        assert inquiry.reference not in html
    assert client.get(CASE_URL).status_code == 403


def test_a_case_session_reaches_its_own_case_only(coordinator_client, inquiry, client):
    other = Client()
    send(other, documents=[pdf()], email="other.family@example.org", patient_name="Bo Other")
    theirs = Inquiry.objects.exclude(pk=inquiry.pk).get()
    write_from_the_case(coordinator_client, inquiry, "Hello.")
    open_case(client, last_link())

    page = client.get(CASE_URL, {"inquiry": theirs.pk, "reference": theirs.reference})
    assert inquiry.reference in page.content.decode()
    assert theirs.reference not in page.content.decode()
    document = theirs.documents.get()
    for address in [
        "/admin/",
        f"/admin/inquiries/inquiry/{theirs.pk}/change/",
        f"/admin/inquiries/inquiry/document/{document.pk}/download/",
        f"/admin/inquiries/inquiry/document/{inquiry.documents.get().pk}/preview/",
    ]:
        response = client.get(address)
        assert response.status_code == 302 and response.url.startswith("/admin/login/")
    # Signing out ends it.
    assert client.post("/inquiries/case/sign-out/").status_code == 200
    ended = client.get(CASE_URL)
    assert ended.status_code == 403 and "Please open your case page again" in ended.content.decode()


def test_opening_a_case_link_signs_a_coordinator_out_of_that_browser(coordinator_client, inquiry):
    write_from_the_case(coordinator_client, inquiry, "Hello.")
    open_case(coordinator_client, last_link())
    assert coordinator_client.get(change_url(inquiry)).status_code == 302


def test_the_family_sends_a_pdf_a_photo_and_a_reply_to_its_case(
    coordinator_client, inquiry, client, documents_dir
):
    asked = kinds("Pathology report", "Flow cytometry report, with CD19")
    write_from_the_case(coordinator_client, inquiry, "Please send these.", asked)
    open_case(client, last_link())
    mail.outbox.clear()
    requests = list(RecordRequest.objects.order_by("id"))
    response = client.post(
        CASE_URL,
        {
            "text": "Here is the pathology report. The flow report follows next week.",
            "documents": [pdf("pathology.pdf"), photo("flow-page-1.jpg")],
            "covers": [requests[0].pk],
            "submission_id": str(uuid.uuid4()),
        },
    )
    assert response.status_code == 302 and response.url == "/inquiries/case/sent/"
    thanks = client.get(response.url).content.decode()
    assert "Your message and 2 files are with the coordinators" in thanks

    later = Document.objects.filter(inquiry=inquiry, sent_later=True).order_by("id")
    assert [(d.original_name, d.state) for d in later] == [
        ("pathology.pdf", "accepted"),
        ("flow-page-1.jpg", "accepted"),
    ]
    assert Inquiry.objects.count() == 1
    assert [r.state for r in RecordRequest.objects.order_by("id")] == ["received", "requested"]
    reply = Message.objects.get(sender="family")
    assert reply.text.startswith("Here is the pathology report")
    assert reply.link.purpose == "notice"
    inquiry.refresh_from_db()
    assert inquiry.news_from_family_at is not None
    # The coordinators get one alert, with nothing of the case in it.
    [alert] = mail.outbox
    assert alert.to == ["coordinators@localhost"]
    assert alert.subject == f"News from the family on {inquiry.reference}"
    assert "pathology" not in alert.body.lower() and "Ada" not in alert.body
    kinds_seen = list(CaseEvent.objects.values_list("kind", "detail"))
    assert ("documents", "2 files, 1 requested record(s) ticked") in kinds_seen
    assert ("message", "") in kinds_seen

    # More within the hour: marked, not emailed again.
    mail.outbox.clear()
    client.post(CASE_URL, {"text": "One more thing.", "submission_id": str(uuid.uuid4())})
    assert mail.outbox == []
    assert Message.objects.filter(sender="family").count() == 2


def test_what_the_family_sends_later_gets_the_first_forms_checks(
    coordinator_client, inquiry, client, quarantine_dir
):
    write_from_the_case(coordinator_client, inquiry, "Hello.")
    open_case(client, last_link())
    nothing = client.post(CASE_URL, {"text": "  ", "submission_id": str(uuid.uuid4())})
    assert nothing.status_code == 400
    assert "Please write a message or choose at least one file to send." in (
        nothing.content.decode()
    )
    program = client.post(
        CASE_URL,
        {
            "text": "The report is attached.",
            "documents": [pdf(), photo().__class__("setup.exe", b"MZ" + bytes(200))],
            "submission_id": str(uuid.uuid4()),
        },
    )
    html = program.content.decode()
    assert program.status_code == 400
    assert "“setup.exe” is a program" in html or "setup.exe" in html
    assert "The report is attached." in html  # what they typed is kept
    assert "We kept this file from your last try" in html  # and the PDF that passed
    assert not Message.objects.filter(sender="family").exists()
    assert not Document.objects.filter(sent_later=True).exists()
    too_long = client.post(CASE_URL, {"text": "x" * 5001, "submission_id": str(uuid.uuid4())})
    assert "Please shorten your message to 5000 characters" in too_long.content.decode()


def test_a_closed_case_shows_where_it_stands_and_takes_nothing(coordinator_client, inquiry, client):
    write_from_the_case(coordinator_client, inquiry, "We have what we need.")
    open_case(client, last_link())
    inquiry.set_status(Inquiry.Status.CLOSED, Inquiry.ClosedReason.TREATMENT_ARRANGED)
    page = client.get(CASE_URL).content.decode()
    assert "Where your case stands: Closed" in page
    assert "Send to the coordinators" not in page
    refused = client.post(CASE_URL, {"text": "Hello?", "submission_id": str(uuid.uuid4())})
    assert refused.status_code == 409
    assert not Message.objects.filter(sender="family").exists()


def test_a_new_link_answer_never_says_whether_the_reference_exists(inquiry, client, settings):
    settings.CASE_LINK_RATE_LIMIT = "3/h"
    pages = []
    for reference, email in [
        (inquiry.reference.lower().replace("-", " "), "SAM.example@example.org"),
        (inquiry.reference, "someone.else@example.org"),
        ("CF-2222-3333", "sam.example@example.org"),
    ]:
        response = client.post(
            "/inquiries/case/new-link/", {"reference": reference, "email": email}
        )
        assert response.status_code == 200
        pages.append(
            re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", response.content.decode())
        )
    assert pages[0] == pages[1] == pages[2]
    # Only the one that matched was sent a link.
    [sent] = mail.outbox
    assert sent.to == ["sam.example@example.org"]
    assert sent.subject == f"Your link to the case page for {inquiry.reference}"
    assert open_case(Client(), LINK.search(sent.body).group(0)).url == CASE_URL
    limited = client.post(
        "/inquiries/case/new-link/", {"reference": inquiry.reference, "email": "a@example.org"}
    )
    assert limited.status_code == 429
    assert "Please wait a little before asking again" in limited.content.decode()


def test_the_receipt_carries_the_first_link_and_a_person_to_reach(db, client):
    send(client, documents=[pdf()])
    inquiry = Inquiry.objects.get()
    receipt = next(m for m in mail.outbox if m.to == ["sam.example@example.org"])
    assert receipt.reply_to == ["coordinators@localhost"]
    assert "please reply and tell us" not in receipt.body
    assert "Open your case page" in receipt.body and LINK.search(receipt.body)
    assert "Monday to Friday" in receipt.body
    assert CaseLink.objects.get(inquiry=inquiry).purpose == "receipt"
    thanks = client.get("/inquiries/thank-you/").content.decode()
    assert "+44 20 7946 0999" in thanks and "case page" in thanks


def test_the_mail_server_down_while_a_coordinator_writes_loses_nothing(
    coordinator_client, inquiry, settings
):
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": 9, "timeout": 2},
        }
    }
    response = write_from_the_case(coordinator_client, inquiry, "Are you still there?")
    assert response.status_code == 302
    assert Message.objects.get().text == "Are you still there?"
    notice = Notification.objects.get(kind="notice")
    assert notice.sent_at is None and notice.attempts == 1
    assert "ConnectionRefusedError" in notice.last_error
    # The link made for the email that did not go is not left usable.
    assert not CaseLink.objects.filter(purpose="notice").exists()
    settings.MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
    Notification.objects.filter(pk=notice.pk).update(
        last_attempt_at=timezone.now() - timedelta(hours=1)
    )
    assert recover() >= 1
    notice.refresh_from_db()
    assert notice.sent_at is not None
    assert mail.outbox[-1].subject == f"There is a new message about {inquiry.reference}"


def test_withdrawal_is_asked_for_from_the_case_page(coordinator_client, inquiry, client):
    write_from_the_case(coordinator_client, inquiry, "Hello.")
    open_case(client, last_link())
    page = client.get("/inquiries/case/withdraw/").content.decode()
    assert "within one month at most" in page
    response = client.post("/inquiries/case/withdraw/")
    assert response.status_code == 302
    inquiry.refresh_from_db()
    assert inquiry.withdrawal_asked_at is not None
    assert Message.objects.filter(sender="family", text__startswith="I withdraw").count() == 1
    case = coordinator_client.get(change_url(inquiry)).content.decode()
    assert "Asked for on" in case and f"erase_inquiry {inquiry.reference}" in case


def test_erasing_the_case_takes_its_messages_requests_links_and_records(
    coordinator_client, inquiry, client, documents_dir
):
    asked = kinds("Other")
    write_from_the_case(coordinator_client, inquiry, "Hello.", asked, other="The MRI report")
    open_case(client, last_link())
    client.post(
        CASE_URL,
        {"text": "Sent.", "documents": [pdf()], "submission_id": str(uuid.uuid4())},
    )
    assert Document.objects.filter(sent_later=True, state="accepted").exists()
    assert RecordRequest.objects.get().label == "Other: The MRI report"
    inquiry.erase()
    for model in (Message, RecordRequest, CaseLink, CaseEvent, Document, Notification):
        assert not model.objects.exists(), model
    assert not list(documents_dir.rglob("*.*"))
    assert client.get(CASE_URL).status_code == 403


def test_what_the_family_writes_is_shown_as_text_everywhere(coordinator_client, inquiry, client):
    write_from_the_case(coordinator_client, inquiry, "Hello.")
    open_case(client, last_link())
    words = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    client.post(CASE_URL, {"text": words, "submission_id": str(uuid.uuid4())})
    for page in [
        client.get(CASE_URL).content.decode(),
        coordinator_client.get(change_url(inquiry)).content.decode(),
    ]:
        assert words not in page
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
