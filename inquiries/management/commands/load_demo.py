"""Fictional inquiries and a demo coordinator, so that a newcomer can try the admin.

Every person here is invented. The command refuses to run with debug off, so that demo
accounts never reach a production database.
"""

import io
import uuid

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.utils.datastructures import MultiValueDict
from PIL import Image, ImageDraw

from inquiries.documents.pipeline import queue_checks
from inquiries.forms import InquiryForm
from inquiries.models import CaseLink, Inquiry, Message, RecordKind, RecordRequest

DEMO_USERNAME = "coordinator"
DEMO_PASSWORD = "demo-coordinator-2026"  # noqa: S105 - printed for newcomers, debug only
# Two more, to try the four-eyes rule: the editor changes a guide, the approver publishes.
DEMO_EDITOR, DEMO_APPROVER = "editor", "approver"
DEMO_GUIDE_ACCOUNTS = {DEMO_EDITOR: "Guide editors", DEMO_APPROVER: "Clinical approvers"}
DEMO_GUIDE_PASSWORD = "demo-guides-2026"  # noqa: S105 - printed for newcomers, debug only

DEMO_INQUIRIES = [
    {
        "submission_id": "00000000-0000-4000-8000-000000000001",
        "writer": "family",
        "writer_name": "Sam Example",
        "acting_for_patient_confirmed": "on",
        "patient_name": "Ada Example",
        "birth_year": "2009",
        "country": "GB",
        "email": "sam.example@example.org",
        "phone": "+44 20 7946 0000",
        "diagnosis": "b-all",
        "treatment_so_far": "Induction chemotherapy in 2025, relapse in 2026.",
        "question": "Could CAR-T be an option for my daughter?",
        "language": "en",
    },
    {
        "submission_id": "00000000-0000-4000-8000-000000000002",
        "writer": "patient",
        "patient_name": "Bo Testperson",
        "birth_year": "1958",
        "country": "DE",
        "email": "bo.testperson@example.org",
        "diagnosis": "cll",
        "treatment_so_far": "Ibrutinib, then venetoclax.",
        "question": "Am I eligible for a CAR-T trial?",
        "language": "en",
    },
    {
        "submission_id": "00000000-0000-4000-8000-000000000003",
        "writer": "family",
        "writer_name": "Chris Sample",
        "acting_for_patient_confirmed": "on",
        "patient_name": "Dana Sample",
        "birth_year": "1971",
        "country": "AE",
        "email": "chris.sample@example.org",
        "diagnosis": "aml",
        "treatment_so_far": "Two courses of chemotherapy.",
        "question": "Are there trials for AML we could join?",
        "language": "ar",
    },
]


def demo_pdf(title: str) -> bytes:
    """A one-page PDF with a line of text, written by hand to keep the demo self-contained."""
    text = title.replace("\\", "").replace("(", "").replace(")", "")
    stream = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(
        b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    )
    return out.getvalue()


def demo_png(title: str) -> bytes:
    image = Image.new("RGB", (800, 500), "white")
    ImageDraw.Draw(image).text((40, 40), title, fill="black")
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


DEMO_MESSAGE = (
    "Thank you for the reports. To see whether CAR-T could be an option, we need the latest "
    "bone marrow report and the flow cytometry report that shows CD19. Could you send them "
    "here?"
)


class Command(BaseCommand):
    help = (
        "Creates demo staff accounts and three fictional inquiries, and publishes the guides "
        "that have no revision yet (debug only)."
    )

    def handle(self, *args, **options) -> None:
        if not settings.DEBUG:
            raise CommandError("Demo data is for development only: set DJANGO_DEBUG=1.")
        user, _ = User.objects.get_or_create(
            username=DEMO_USERNAME, defaults={"is_staff": True, "email": "demo@example.org"}
        )
        user.is_staff = True
        user.set_password(DEMO_PASSWORD)
        user.save()
        user.groups.add(Group.objects.get(name="Coordinators"))
        for username, group in DEMO_GUIDE_ACCOUNTS.items():
            account, _ = User.objects.get_or_create(
                username=username,
                defaults={"is_staff": True, "email": f"{username}@example.org"},
            )
            account.set_password(DEMO_GUIDE_PASSWORD)
            account.save()
            account.groups.add(Group.objects.get(name=group))
        # The guides from fixtures/guides.json, as their first revision if they have none.
        call_command("publish_first_revisions", approver=DEMO_APPROVER, stdout=self.stdout)

        created = 0
        for data in DEMO_INQUIRIES:
            if Inquiry.objects.filter(submission_id=uuid.UUID(data["submission_id"])).exists():
                continue
            name = data["patient_name"]
            files = [
                SimpleUploadedFile(
                    "pathology-report.pdf", demo_pdf(f"Fictional pathology report: {name}")
                ),
                SimpleUploadedFile("blood-count.png", demo_png(f"Fictional blood count: {name}")),
            ]
            form = InquiryForm({**data, "consent": "on"}, MultiValueDict({"documents": files}))
            if not form.is_valid():
                raise CommandError(f"Demo inquiry for {name} is invalid: {form.errors.as_text()}")
            # The worker checks the documents and sends the emails, as for a family's.
            inquiry = form.save()
            queue_checks(inquiry)
            created += 1
            if data is DEMO_INQUIRIES[0]:
                self.ask_for_records(inquiry, user)
        self.stdout.write(f"Demo data: {created} new fictional inquiries.")
        first = Inquiry.objects.filter(submission_id=uuid.UUID(DEMO_INQUIRIES[0]["submission_id"]))
        if first := first.first():
            link, token = CaseLink.issue(first, CaseLink.Purpose.ASKED)
            self.stdout.write(
                f"The demo family's case page ({first.reference}), as its email would link it: "
                f"{link.url_with(token)}"
            )
        self.stdout.write(
            f"Demo coordinator for the admin: username “{DEMO_USERNAME}”, "
            f"password “{DEMO_PASSWORD}”."
        )
        self.stdout.write(
            f"Demo guide editor and clinical approver: usernames “{DEMO_EDITOR}” and "
            f"“{DEMO_APPROVER}”, password “{DEMO_GUIDE_PASSWORD}”."
        )

    def ask_for_records(self, inquiry: Inquiry, coordinator: User) -> None:
        """The demo case as a coordinator leaves it after asking for two records."""
        Message.objects.create(
            inquiry=inquiry,
            sender=Message.Sender.COORDINATOR,
            author=coordinator,
            text=DEMO_MESSAGE,
        )
        for name in ("Pathology report", "Flow cytometry report, with CD19"):
            RecordRequest.objects.create(
                inquiry=inquiry, kind=RecordKind.objects.get(name=name), requested_by=coordinator
            )
        inquiry.assign(coordinator)
        inquiry.await_records(2)
