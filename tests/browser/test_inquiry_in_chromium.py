"""A family sends reports from a phone; a coordinator picks the case up in the admin."""

import io
import re

import pytest
from django.core import mail
from playwright.sync_api import expect
from pypdf import PdfReader

from inquiries.models import DocumentDownload, Inquiry, Note

from ..conftest import code_from_typed_key
from ..sample_files import jpeg_bytes, pdf_bytes
from ..support import axe_violations, fill_in, watch_csp

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def reports(tmp_path):
    pdf = tmp_path / "flow-cytometry.pdf"
    pdf.write_bytes(pdf_bytes(pages=2))
    photo = tmp_path / "discharge-letter.jpg"
    photo.write_bytes(jpeg_bytes(1200, 900, exif_gps=True))
    return [pdf, photo]


def test_family_sends_reports_and_coordinator_handles_them(
    new_context, live_server, reports, artifacts, coordinator
):
    phone = new_context(viewport={"width": 375, "height": 812})
    page = phone.new_page()
    csp = watch_csp(page)
    page.goto(live_server.url + "/inquiries/new/")
    assert axe_violations(page) == []
    page.screenshot(path=artifacts / "inquiry-form-phone.png", full_page=True)

    # Sending with nothing filled in shows every problem, accessibly.
    page.get_by_role("button", name="Send my inquiry").click()
    expect(page.get_by_role("heading", name="There is a problem")).to_be_visible()
    assert page.locator(".invalid-feedback").count() >= 8
    assert axe_violations(page) == []
    page.screenshot(path=artifacts / "inquiry-form-errors-phone.png", full_page=True)

    fill_in(page)
    page.get_by_label("Choose the files").set_input_files(reports)
    page.get_by_label("I agree that CancerFax may store").check()
    page.get_by_role("button", name="Send my inquiry").click()

    expect(page.get_by_role("heading", name="We have received your inquiry")).to_be_visible()
    reference = page.locator(".reference").inner_text()
    # Checked in the sandbox before this page (tasks run at once in these tests).
    expect(page.get_by_text("Every file has been checked and received safely.")).to_be_visible()
    assert page.locator(".sent-file-accepted").count() == 2
    assert re.fullmatch(r"CF-\w{4}-\w{4}", reference)
    assert axe_violations(page) == []
    page.screenshot(path=artifacts / "inquiry-thank-you-phone.png", full_page=True)

    inquiry = Inquiry.objects.get(reference=reference)
    assert inquiry.documents.count() == 2

    desk = new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    admin = desk.new_page()
    admin_csp = watch_csp(admin)
    admin.goto(live_server.url + "/admin/")
    admin.get_by_label("Username").fill("casey")
    admin.get_by_label("Password").fill("a-long-fictional-pass")
    admin.get_by_role("button", name="Log in").click()
    # The first sign-in sets up the authenticator app, through a link sent to the
    # coordinator's inbox; the test is the phone, typing the key.
    expect(admin.get_by_role("heading", name="Set up your authenticator app")).to_be_visible()
    assert axe_violations(admin) == []
    admin.get_by_role("button", name="Email me a set-up link").click()
    expect(admin.get_by_text("We have sent a set-up link")).to_be_visible()
    link = re.search(r"/admin/two-factor/set-up/\?token=\S+", mail.outbox[-1].body).group(0)
    admin.goto(live_server.url + link)
    expect(admin.locator(".two-factor-key")).to_be_visible()
    assert axe_violations(admin) == []
    admin.screenshot(path=artifacts / "admin-two-factor-setup.png", full_page=True)
    typed_key = admin.locator(".two-factor-key").inner_text()
    admin.get_by_label("Six-digit code").fill(code_from_typed_key(typed_key))
    admin.get_by_role("button", name="Confirm and sign in").click()
    expect(admin.get_by_role("heading", name="Administration")).to_be_visible()

    admin.goto(live_server.url + "/admin/inquiries/inquiry/?cases=all")
    admin.get_by_role("link", name="Unassigned").click()
    row = admin.locator("#result_list tbody tr", has_text=reference)
    row.locator("input[type=checkbox]").check()
    admin.locator("select[name=action]").select_option("assign_to_me")
    admin.get_by_role("button", name="Run").click()
    expect(admin.get_by_text(f"Assigned to you. {reference}: was unassigned.")).to_be_visible()
    admin.screenshot(path=artifacts / "admin-inquiry-list.png", full_page=True)

    admin.get_by_role("link", name="Assigned to me").click()
    admin.get_by_role("link", name=reference).click()
    admin.locator("textarea[name='notes-0-text']").fill("Asked the family for the marrow report.")
    admin.get_by_role("button", name="Save and continue editing").last.click()
    expect(admin.get_by_text("Asked the family for the marrow report.")).to_be_visible()

    with admin.expect_download() as download_info:
        admin.get_by_role("link", name="Download").first.click()
    download = download_info.value
    assert download.suggested_filename == "flow-cytometry.pdf"
    # The coordinator gets the rebuilt copy, never the original: as many pages, no more.
    with open(download.path(), "rb") as downloaded:
        rebuilt = downloaded.read()
    assert rebuilt != reports[0].read_bytes()
    assert len(PdfReader(io.BytesIO(rebuilt)).pages) == len(PdfReader(reports[0]).pages)
    admin.reload()
    admin.screenshot(path=artifacts / "admin-inquiry-change.png", full_page=True)

    assert csp == admin_csp == []
    inquiry.refresh_from_db()
    assert inquiry.assigned_to == coordinator
    assert Note.objects.get().author == coordinator
    assert DocumentDownload.objects.get().user == coordinator
