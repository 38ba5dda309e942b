"""The case after the first form, in Chromium: a coordinator asks for two named records and
writes; the family opens the emailed link on a phone, sends a PDF, a photo and a reply;
the coordinator sees the news, the documents on the same case and the records received."""

import re

import pytest
from django.core import mail
from django.test import Client
from playwright.sync_api import expect

from inquiries.models import Document, Inquiry, RecordRequest

from ..conftest import sign_in_with_second_factor
from ..sample_files import jpeg_bytes, pdf_bytes
from ..support import axe_violations, photo, send, watch_csp

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 375, "height": 812}
DESK = {"width": 1280, "height": 800}


@pytest.fixture
def reports(tmp_path):
    pathology = tmp_path / "bone-marrow-pathology.pdf"
    pathology.write_bytes(pdf_bytes(pages=2))
    flow = tmp_path / "flow-cytometry-page-1.jpg"
    flow.write_bytes(jpeg_bytes(1200, 900, exif_gps=True))
    return [pathology, flow]


def signed_in_desk(new_context, live_server, coordinator):
    """The coordinator's browser, signed in (the sign-in itself has tests of its own)."""
    client = Client()
    sign_in_with_second_factor(client, coordinator)
    desk = new_context(viewport=DESK)
    cookie = client.cookies["sessionid"]
    desk.add_cookies([{"name": "sessionid", "value": cookie.value, "url": live_server.url}])
    return desk.new_page()


def check_page(page, name: str, artifacts) -> None:
    assert axe_violations(page) == [], name
    page.screenshot(path=artifacts / f"{name}.png", full_page=True)


def test_records_asked_for_reach_the_case_from_the_family_phone(
    new_context, live_server, coordinator, reports, artifacts
):
    send(Client(), documents=[photo()])
    inquiry = Inquiry.objects.get()
    mail.outbox.clear()

    admin = signed_in_desk(new_context, live_server, coordinator)
    admin_csp = watch_csp(admin)
    admin.goto(f"{live_server.url}/admin/inquiries/inquiry/{inquiry.pk}/change/")
    admin.locator("textarea[name='messages-0-text']").fill(
        "Thank you. Could you send the bone marrow report and the flow cytometry report?"
    )
    admin.locator("select[name='record_requests-0-kind']").select_option(label="Pathology report")
    admin.locator("select[name='record_requests-1-kind']").select_option(
        label="Flow cytometry report, with CD19"
    )
    admin.get_by_role("button", name="Save and continue editing").first.click()
    expect(admin.get_by_text("was changed successfully")).to_be_visible()
    expect(admin.locator("select[name='status']")).to_have_value("awaiting_records")

    # The family's email: a notice and a link, nothing of the case.
    [notice] = mail.outbox
    assert notice.subject == f"There is a new message about {inquiry.reference}"
    for private in ["bone marrow", "Flow cytometry", "Pathology", "Ada"]:
        assert private not in notice.body
    link = re.search(r"http://\S+/inquiries/case/open/\?key=\S+", notice.body).group(0)
    link = link.replace("http://127.0.0.1:8000", live_server.url)

    phone = new_context(viewport=PHONE).new_page()
    csp = watch_csp(phone)
    phone.goto(link)
    expect(phone.get_by_role("heading", name="Open your case page")).to_be_visible()
    check_page(phone, "case-open-phone", artifacts)
    phone.get_by_role("button", name="Open my case page").click()
    expect(phone.get_by_role("heading", name=f"Your case {inquiry.reference}")).to_be_visible()
    expect(phone.get_by_text("Where your case stands: Waiting for records")).to_be_visible()
    waiting = phone.locator(".requested li")
    expect(waiting).to_have_text(["Pathology report", "Flow cytometry report, with CD19"])
    check_page(phone, "case-page-phone", artifacts)

    phone.get_by_label("Your message").fill(
        "Here is the bone marrow report, and a photo of the flow cytometry page."
    )
    phone.get_by_label("Add files").set_input_files(reports)
    phone.get_by_label("Pathology report").check()
    phone.get_by_label("Flow cytometry report, with CD19").check()
    phone.get_by_role("button", name="Send to the coordinators").click()
    expect(phone.get_by_role("heading", name="Thank you, we have it")).to_be_visible()
    expect(phone.get_by_text("Your message and 2 files are with the coordinators")).to_be_visible()
    check_page(phone, "case-sent-phone", artifacts)
    phone.get_by_role("link", name="Back to your case page").click()
    expect(phone.locator(".sent-file-accepted")).to_have_count(3)
    expect(phone.locator(".requested li")).to_have_count(0)
    check_page(phone, "case-page-after-phone", artifacts)

    # The same page at a desk's width, and the pages a spoilt or lost link leads to.
    wide = new_context(viewport=DESK).new_page()
    wide.goto(link)
    expect(wide.get_by_role("heading", name="This link no longer works")).to_be_visible()
    check_page(wide, "case-link-refused-desk", artifacts)
    wide.goto(live_server.url + "/inquiries/case/new-link/")
    check_page(wide, "case-new-link-desk", artifacts)
    wide.get_by_label("Your reference").fill(inquiry.reference)
    wide.get_by_label("The email address you gave us").fill("sam.example@example.org")
    wide.get_by_role("button", name="Send me a new link").click()
    expect(wide.get_by_role("heading", name="Check your email")).to_be_visible()
    check_page(wide, "case-link-sent-desk", artifacts)
    phone.get_by_role("link", name="withdraw your consent").click()
    expect(phone.get_by_role("heading", name="Withdraw your consent")).to_be_visible()
    check_page(phone, "case-withdraw-phone", artifacts)
    phone.get_by_role("link", name="Back to your case page").click()
    phone.set_viewport_size(DESK)
    phone.reload()
    check_page(phone, "case-page-desk", artifacts)
    phone.get_by_role("button", name="Sign out of the case page").click()
    expect(phone.get_by_role("heading", name="You have signed out")).to_be_visible()
    check_page(phone, "case-signed-out-desk", artifacts)
    phone.goto(live_server.url + "/inquiries/case/")
    expect(phone.get_by_role("heading", name="Please open your case page again")).to_be_visible()
    check_page(phone, "case-ended-desk", artifacts)
    phone.set_viewport_size(PHONE)
    check_page(phone, "case-ended-phone", artifacts)

    # The coordinator sees the news, the documents on the same case, the records received.
    admin.goto(f"{live_server.url}/admin/inquiries/inquiry/?cases=all")
    row = admin.locator("#result_list tbody tr", has_text=inquiry.reference)
    expect(row.get_by_text("New from the family")).to_be_visible()
    row.get_by_role("link", name=inquiry.reference).click()
    expect(admin.get_by_text("Here is the bone marrow report")).to_be_visible()
    expect(admin.get_by_text("bone-marrow-pathology.pdf (sent from the case page")).to_be_visible()
    admin.locator("details.preview summary").first.click()
    expect(admin.locator("details.preview[open] img")).to_be_visible()
    admin.screenshot(path=artifacts / "admin-case-with-family-news.png", full_page=True)

    assert Inquiry.objects.count() == 1
    later = Document.objects.filter(inquiry=inquiry, sent_later=True)
    assert sorted(later.values_list("original_name", "state")) == [
        ("bone-marrow-pathology.pdf", "accepted"),
        ("flow-cytometry-page-1.jpg", "accepted"),
    ]
    assert list(RecordRequest.objects.values_list("state", flat=True)) == ["received"] * 2
    assert csp == admin_csp == []
