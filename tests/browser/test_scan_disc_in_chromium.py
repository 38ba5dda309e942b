"""A family sends a hospital's scan disc from a browser, as a ZIP file on a slow line (with
the page's progress) and as a folder with JavaScript off; a coordinator finds it as series
and downloads one."""

import io
import zipfile

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import expect

from inquiries.models import DocumentDownload, Inquiry, Series

from ..conftest import sign_in_with_second_factor
from ..sample_files import PYDICOM_FILES, WINDOWS_EXE
from ..support import axe_violations, fill_in, watch_csp

pytestmark = [pytest.mark.browser, pytest.mark.once, pytest.mark.django_db(transaction=True)]

DISC = PYDICOM_FILES / "dicomdirtests"


@pytest.fixture
def disc_zip(tmp_path):
    path = tmp_path / "hospital-disc.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for member in sorted(DISC.rglob("*")):
            if member.is_file():
                archive.write(member, f"DISC/{member.relative_to(DISC)}")
        archive.writestr("DISC/VIEWER/viewer.exe", WINDOWS_EXE)
    return path


def _scans() -> int:
    return sum(
        1
        for path in DISC.rglob("*")
        if path.is_file() and "DICOMDIR" not in path.name and "README" not in path.name
    )


def test_a_scan_disc_as_a_zip_file_on_a_slow_line_shows_its_progress(
    new_context, live_server, disc_zip, artifacts, coordinator
):
    phone = new_context(viewport={"width": 375, "height": 812}, accept_downloads=True)
    page = phone.new_page()
    csp = watch_csp(page)
    page.goto(live_server.url + "/inquiries/new/")
    fill_in(page)
    page.get_by_label("Choose the files").set_input_files(disc_zip)
    page.get_by_label("I agree that CancerFax may store").check()
    # A phone line: about 100 KB a second up.
    network = phone.new_cdp_session(page)
    network.send("Network.enable")
    network.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 50, "downloadThroughput": -1, "uploadThroughput": 100_000},
    )
    page.get_by_role("button", name="Send my inquiry").click()
    status = page.get_by_role("status")
    expect(status).to_contain_text("Sending file 1 of 1: hospital-disc.zip")
    expect(status).to_contain_text(" of ")
    assert page.locator("progress.sending-bar").count() == 1
    page.screenshot(path=artifacts / "inquiry-disc-sending-phone.png", full_page=True)
    expect(page.get_by_role("button", name="Send my inquiry")).to_be_disabled()

    expect(page.get_by_role("heading", name="We have received your inquiry")).to_be_visible(
        timeout=60_000
    )
    network.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )
    page.reload()
    series = Series.objects.count()
    expect(
        page.get_by_text(f"{_scans()} images in {series} series taken out of it")
    ).to_be_visible()
    expect(page.get_by_text("1 program file (the disc’s viewer, say)")).to_be_visible()
    assert axe_violations(page) == []
    page.screenshot(path=artifacts / "inquiry-disc-thank-you-phone.png", full_page=True)
    assert csp == []

    # The coordinator's desk: the disc as series, one downloaded whole.
    inquiry = Inquiry.objects.get()
    signed_in = Client()
    sign_in_with_second_factor(signed_in, coordinator)
    desk = new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    desk.add_cookies(
        [
            {
                "name": settings.SESSION_COOKIE_NAME,
                "value": signed_in.cookies[settings.SESSION_COOKIE_NAME].value,
                "url": live_server.url,
            }
        ]
    )
    admin = desk.new_page()
    admin_csp = watch_csp(admin)
    admin.goto(live_server.url + inquiry.get_admin_url())
    expect(admin.get_by_role("heading", name="Scans, by series")).to_be_visible()
    biggest = max(Series.objects.all(), key=lambda s: s.images.count())
    label = biggest.label(biggest.images.count())
    row = admin.locator("tr", has_text=label)
    expect(row).to_be_visible()
    admin.screenshot(path=artifacts / "admin-inquiry-disc-series.png", full_page=True)
    with admin.expect_download() as download_info:
        row.get_by_role("link", name="Download the series (ZIP)").click()
    download = download_info.value
    assert download.suggested_filename.startswith(inquiry.reference)
    with zipfile.ZipFile(io.BytesIO(open(download.path(), "rb").read())) as archive:
        assert len(archive.namelist()) == biggest.images.count()
    assert DocumentDownload.objects.filter(series=biggest, user=coordinator).exists()
    assert admin_csp == []


def test_a_scan_disc_folder_chosen_with_javascript_off(new_context, live_server, artifacts):
    desk = new_context(java_script_enabled=False, viewport={"width": 1280, "height": 900})
    page = desk.new_page()
    page.goto(live_server.url + "/inquiries/new/")
    fill_in(page)
    page.get_by_label("Or choose the folder of a scan disc").set_input_files(DISC)
    page.get_by_label("I agree that CancerFax may store").check()
    page.get_by_role("button", name="Send my inquiry").click()
    expect(page.get_by_role("heading", name="We have received your inquiry")).to_be_visible()
    page.screenshot(path=artifacts / "inquiry-disc-folder-thank-you.png", full_page=True)
    archive = Inquiry.objects.get().documents.get(parent=None)
    assert archive.detected_type == "zip" and archive.original_name.startswith("Folder of ")
    assert archive.members.filter(state="accepted").count() == _scans()


def test_a_sending_broken_off_is_sent_again_with_the_same_button_and_stored_once(
    new_context, live_server, disc_zip, artifacts
):
    # (A sending that arrived but whose answer was lost is the same inquiry when sent again:
    # the form's sending id, tested in test_inquiry_form.)
    page = new_context(viewport={"width": 375, "height": 812}).new_page()
    page.goto(live_server.url + "/inquiries/new/")
    fill_in(page)
    page.get_by_label("Choose the files").set_input_files(disc_zip)
    page.get_by_label("I agree that CancerFax may store").check()
    broken = []

    def break_off_the_first(route):
        # A phone leaving the Wi-Fi while the disc is on its way.
        if route.request.method == "POST" and not broken:
            broken.append(True)
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/inquiries/new/", break_off_the_first)
    page.get_by_role("button", name="Send my inquiry").click()
    expect(page.get_by_role("status")).to_contain_text("The connection was broken off")
    expect(page.get_by_role("button", name="Send my inquiry")).to_be_enabled()
    page.screenshot(path=artifacts / "inquiry-broken-off-phone.png", full_page=True)
    assert Inquiry.objects.count() == 0

    # Everything the family typed and chose is still on the page: the same button sends it.
    page.get_by_role("button", name="Send my inquiry").click()
    expect(page.get_by_role("heading", name="We have received your inquiry")).to_be_visible()
    inquiry = Inquiry.objects.get()
    assert page.locator(".reference").inner_text() == inquiry.reference
    assert inquiry.documents.filter(parent=None).count() == 1
