"""What several test files do alike: send the family's form, change a guide in the admin,
fill the form in a browser and audit a page there."""

from axe_playwright_python.sync_playwright import Axe
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from guides.models import Guide, Revision

from .forms import form_data as admin_form_data
from .sample_files import jpeg_bytes, pdf_bytes
from .servers import form_data

FORM_URL = "/inquiries/new/"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21aa", "wcag22aa"]


def pdf(name: str = "pathology-report.pdf", **options) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, pdf_bytes(**options), content_type="application/pdf")


def photo(name: str = "blood-count.jpg") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, jpeg_bytes(640, 480, exif_gps=True), content_type="image/jpeg")


def send(client: Client, documents=None, **changes):
    """The family's form, sent with `documents` (a PDF by default) and `changes`."""
    data = form_data(**changes)
    data["documents"] = [pdf()] if documents is None else documents
    return client.post(FORM_URL, data)


def change_guide(client, guide, **changes: str):
    url = f"/admin/guides/guide/{guide.pk}/change/"
    data = admin_form_data(client.get(url).content.decode(), "guide_form")
    assert data, "the change form was found"
    data.update(changes)
    return client.post(url, data)


def fill_in(page) -> None:
    """The family's form filled in by hand in the browser, files and consent aside."""
    page.get_by_label("I am a family member or carer writing for the patient").check()
    page.get_by_label("Your name").fill("Sam Example")
    page.get_by_label("I confirm that the patient has agreed").check()
    page.get_by_label("Your email address").fill("sam.example@example.org")
    page.get_by_label("Patient’s full name").fill("Ada Example")
    page.get_by_label("Patient’s year of birth").select_option("2009")
    page.get_by_label("Patient’s country of residence").select_option("GB")
    page.get_by_label("Diagnosis").select_option("b-all")
    page.get_by_label("Treatment so far").fill("Chemotherapy in 2025, relapse in 2026.")
    page.get_by_label("Your question").fill("Could CAR-T be an option?")


def watch_csp(page) -> list[str]:
    """Collects the Content-Security-Policy violations Chromium reports for this page."""
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    return violations


def axe_violations(page) -> list[str]:
    results = Axe().run(page, options={"runOnly": {"type": "tag", "values": AXE_TAGS}})
    return [
        f"{v['id']} ({v['impact']}): {[node['target'] for node in v['nodes']]}"
        for v in results.response["violations"]
    ]


def guide_staff(username: str, group: str):
    """A staff member of "Guide editors" or "Clinical approvers", as the migration makes
    them (made again if a transactional test before this one flushed them)."""
    import importlib

    from django.apps import apps
    from django.contrib.auth.models import Group, User

    if not Group.objects.filter(name=group).exists():
        importlib.import_module("guides.migrations.0003_editor_groups").create_groups(apps, None)
    user, created = User.objects.get_or_create(
        username=username, defaults={"is_staff": True, "email": f"{username}@example.org"}
    )
    if created:
        user.groups.add(Group.objects.get(name=group))
    return user


def clinical_approver(username: str = "approver-for-tests"):
    """A member of the "Clinical approvers" group, who may publish guides."""
    return guide_staff(username, "Clinical approvers")


def publish(
    guide: Guide, kind: str = "review", summary: str = "Checked for the tests."
) -> Revision:
    """The draft of `guide` published by an approver who did not edit it."""
    return guide.publish(clinical_approver(), kind=kind, summary=summary)
