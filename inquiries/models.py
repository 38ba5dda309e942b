import hashlib
import logging
import secrets
import uuid
from datetime import date, datetime, timedelta
from functools import partial
from pathlib import Path

from boto3.exceptions import Boto3Error
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.storage import storages
from django.core.signals import setting_changed
from django.db import DatabaseError, models, transaction
from django.db.models import Count, Q
from django.dispatch import receiver
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.functional import LazyObject, empty
from django_countries.fields import CountryField
from s3transfer.exceptions import RetriesExceededError as TransferRetriesExceededError
from s3transfer.exceptions import S3DownloadFailedError, S3UploadFailedError
from simple_history.models import HistoricalRecords

from .documents.messages import LABELS, archive_summary, refusal

logger = logging.getLogger(__name__)

# Readable over the phone and in an email subject: no 0/O, 1/I/L or U.
REFERENCE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"

# The exact words a person agrees to. A new wording gets a new version, so that every
# inquiry records which text was shown.
CONSENT_VERSION = "2026-11-v1"
CONSENT_TEXT = (
    "I agree that CancerFax may store and use the health information and documents in this "
    "form to review the patient’s case and reply to me. I have read the privacy notice."
)


def new_reference() -> str:
    chars = "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(8))
    return f"CF-{chars[:4]}-{chars[4:]}"


# What writing or reading a document can raise: a full or failing disk, or an object store
# that cannot be reached, refuses the request, or breaks off a transfer.
STORAGE_ERRORS = (
    OSError,
    BotoCoreError,
    ClientError,
    Boto3Error,
    TransferRetriesExceededError,
    S3DownloadFailedError,
    S3UploadFailedError,
)


class NamedStorage(LazyObject):
    """A storage of STORAGES, looked up when first used rather than when the models load,
    so that a change of STORAGES (in tests) is followed."""

    def __init__(self, alias: str) -> None:
        super().__init__()
        self.__dict__["alias"] = alias

    def _setup(self) -> None:
        self._wrapped = storages[self.__dict__["alias"]]


# What coordinators open: only copies rebuilt by the checks.
documents_storage = NamedStorage("documents")
# What families sent, as it arrived, until it has been checked; never served to anyone.
quarantine_storage = NamedStorage("quarantine")


@receiver(setting_changed)
def _forget_storages(*, setting: str, **kwargs) -> None:
    if setting == "STORAGES":
        documents_storage._wrapped = empty
        quarantine_storage._wrapped = empty


def document_storage() -> NamedStorage:
    return documents_storage


def stored_path(extension: str) -> str:
    # A generated name only: what the family called the file is kept as text, never on disk.
    return f"{timezone.now():%Y/%m}/{uuid.uuid4().hex}.{extension}"


def document_path(document: "Document", filename: str) -> str:
    return stored_path(document.extension)


def quarantine_path() -> str:
    return f"{timezone.now():%Y/%m}/{uuid.uuid4().hex}"


class Diagnosis(models.TextChoices):
    B_ALL = "b-all", "B-cell acute lymphoblastic leukemia (B-ALL)"
    T_ALL = "t-all", "T-cell acute lymphoblastic leukemia (T-ALL)"
    AML = "aml", "Acute myeloid leukemia (AML)"
    CLL = "cll", "Chronic lymphocytic leukemia or small lymphocytic lymphoma (CLL/SLL)"
    CML = "cml", "Chronic myeloid leukemia (CML)"
    MYELOMA = "myeloma", "Multiple myeloma"
    LYMPHOMA = "lymphoma", "Lymphoma"
    OTHER = "other", "Other, or not sure"


class Language(models.TextChoices):
    ENGLISH = "en", "English"
    ARABIC = "ar", "Arabic (العربية)"
    CHINESE = "zh", "Chinese (中文)"
    FRENCH = "fr", "French (Français)"
    HINDI = "hi", "Hindi (हिन्दी)"
    RUSSIAN = "ru", "Russian (Русский)"
    SPANISH = "es", "Spanish (Español)"
    OTHER = "other", "Another language (tell us in your message)"


class InquiryQuerySet(models.QuerySet):
    def open(self) -> "InquiryQuerySet":
        return self.exclude(status=Inquiry.Status.CLOSED)

    def follow_up_overdue(self, today: date | None = None) -> "InquiryQuerySet":
        return self.open().filter(follow_up_on__lt=today or timezone.localdate())

    def with_counts(self) -> "InquiryQuerySet":
        """Accepted and unchecked documents and undelivered emails per inquiry, in the same
        query (admin list)."""
        return self.annotate(
            # A ZIP file counts by what came out of it.
            document_count=Count(
                "documents",
                filter=Q(documents__state=Document.State.ACCEPTED)
                & ~Q(documents__detected_type="zip"),
                distinct=True,
            ),
            unchecked_count=Count(
                "documents",
                filter=Q(documents__state__in=[Document.State.RECEIVED, Document.State.CHECKING]),
                distinct=True,
            ),
            # Emails are only owed once the documents have been checked.
            undelivered_count=Count(
                "notifications",
                filter=Q(notifications__sent_at__isnull=True)
                & (
                    Q(documents_checked_at__isnull=False)
                    | ~Q(notifications__kind__in=AFTER_THE_CHECKS)
                ),
                distinct=True,
            ),
        )

    def with_news(self) -> "InquiryQuerySet":
        return self.filter(news_from_family_at__isnull=False)

    def closed_before(self, moment) -> "InquiryQuerySet":
        return self.filter(status=Inquiry.Status.CLOSED, closed_at__lt=moment)


class Inquiry(models.Model):
    class Writer(models.TextChoices):
        PATIENT = "patient", "I am the patient"
        FAMILY = "family", "I am a family member or carer writing for the patient"

    class Status(models.TextChoices):
        NEW = "new", "New"
        IN_REVIEW = "in_review", "In review"
        AWAITING_RECORDS = "awaiting_records", "Awaiting records"
        REFERRED = "referred", "Referred"
        CLOSED = "closed", "Closed"

    class ClosedReason(models.TextChoices):
        TREATMENT_ARRANGED = "treatment_arranged", "Treatment or trial arranged"
        NOT_SUITABLE = "not_suitable", "No suitable option found"
        DECLINED = "declined", "Family decided not to go ahead"
        NO_REPLY = "no_reply", "No reply from the family"
        DUPLICATE = "duplicate", "Duplicate of another inquiry"
        ERASURE = "erasure", "Closed at the family’s request"

    reference = models.CharField(max_length=12, unique=True, default=new_reference, editable=False)
    # The form carries this id; a double click or a refresh sends it twice and still makes
    # one inquiry.
    submission_id = models.UUIDField(unique=True, editable=False)
    received_at = models.DateTimeField(default=timezone.now, editable=False)

    writer = models.CharField("who is writing", max_length=10, choices=Writer)
    writer_name = models.CharField("name of the person writing", max_length=120, blank=True)
    acting_for_patient_confirmed = models.BooleanField(default=False)
    patient_name = models.CharField(max_length=120)
    birth_year = models.PositiveSmallIntegerField("patient’s year of birth")
    country = CountryField("patient’s country of residence")
    email = models.EmailField(max_length=254)
    phone = models.CharField(max_length=20, blank=True)
    diagnosis = models.CharField(max_length=10, choices=Diagnosis)
    treatment_so_far = models.TextField(max_length=3000)
    question = models.TextField("question", max_length=3000)
    language = models.CharField("preferred language", max_length=5, choices=Language)

    consent_version = models.CharField(max_length=20)
    consent_text = models.TextField()
    consent_given_at = models.DateTimeField()

    status = models.CharField(max_length=20, choices=Status, default=Status.NEW)
    closed_reason = models.CharField(max_length=20, choices=ClosedReason, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True, editable=False)
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="assigned_inquiries",
        limit_choices_to={"is_staff": True, "is_active": True},
    )
    follow_up_on = models.DateField("follow up on", null=True, blank=True)
    # When the last of its documents had been checked: the emails go out then, with the
    # count of files accepted and refused.
    documents_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    # An earlier inquiry about the same patient: this one is shown on it.
    same_patient_as = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="later_inquiries",
        verbose_name="same patient as",
        help_text="An earlier inquiry about the same patient (its reference).",
    )
    # The family wrote or sent something from the case page that no coordinator has opened
    # the case since; and when the coordinators were last alerted by email (once an hour at
    # most).
    news_from_family_at = models.DateTimeField(null=True, blank=True, editable=False)
    family_alerted_at = models.DateTimeField(null=True, blank=True, editable=False)
    withdrawal_asked_at = models.DateTimeField(
        "consent withdrawal asked for", null=True, blank=True, editable=False
    )

    # Who changed the status, the assignee or the follow-up date, and when.
    history = HistoricalRecords(
        excluded_fields=[
            "diagnosis",
            "writer_name",
            "patient_name",
            "birth_year",
            "country",
            "email",
            "phone",
            "treatment_so_far",
            "question",
            "consent_text",
            "documents_checked_at",
            "news_from_family_at",
            "family_alerted_at",
            "withdrawal_asked_at",
        ]
    )

    objects = InquiryQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "inquiries"
        ordering = ["-received_at"]
        permissions = [("download_document", "Can download documents sent with an inquiry")]
        constraints = [
            models.CheckConstraint(
                condition=Q(status="closed", closed_reason__gt="")
                | (~Q(status="closed") & Q(closed_reason="")),
                name="inquiry_closed_with_a_reason",
                violation_error_message="Choose a reason when you close an inquiry, and only then.",
            ),
            models.CheckConstraint(
                condition=Q(writer="patient") | Q(acting_for_patient_confirmed=True),
                name="inquiry_family_confirmed_authority",
            ),
        ]

    def __str__(self) -> str:
        return self.reference

    def clean(self) -> None:
        if self.status == self.Status.CLOSED and not self.closed_reason:
            raise ValidationError({"closed_reason": "Choose why the inquiry is closed."})
        if self.status != self.Status.CLOSED and self.closed_reason:
            raise ValidationError(
                {"closed_reason": "Leave the reason empty unless the inquiry is closed."}
            )

    def get_admin_url(self) -> str:
        return reverse("admin:inquiries_inquiry_change", args=[self.pk])

    def assign(self, to) -> None:
        self.assigned_to = to
        self._change_reason = f"Assigned to {to.get_username()}" if to else "Unassigned"
        self.save(update_fields=["assigned_to"])

    def set_status(self, status: str, reason: str = "") -> None:
        self.status = status
        self.closed_reason = reason if status == self.Status.CLOSED else ""
        self.stamp_closing()
        self._change_reason = self.status_change_reason()
        self.save(update_fields=["status", "closed_reason", "closed_at"])

    def stamp_closing(self) -> None:
        """Records when the inquiry was closed (retention counts from then), or clears it."""
        self.closed_at = timezone.now() if self.status == self.Status.CLOSED else None

    def status_change_reason(self) -> str:
        if self.status == self.Status.CLOSED:
            return f"Status: Closed ({self.get_closed_reason_display()})"
        return f"Status: {self.get_status_display()}"

    @property
    def status_for_family(self) -> tuple[str, str]:
        """Where the case stands, in the family's words: a heading and what it means."""
        return FAMILY_STATUS[self.status]

    @property
    def is_closed(self) -> bool:
        return self.status == self.Status.CLOSED

    def await_records(self, count: int) -> None:
        """Asking for records puts the case in "awaiting records" (a closed case stays
        closed)."""
        if count and self.status not in (self.Status.AWAITING_RECORDS, self.Status.CLOSED):
            self.status = self.Status.AWAITING_RECORDS
            self._change_reason = f"Status: Awaiting records ({count} requested)"
            self.save(update_fields=["status"])

    def notify_family(self) -> "Notification":
        """An email to the family that there is news on the case page, with a fresh link;
        sent once the transaction is committed."""
        notification = Notification.objects.create(inquiry=self, kind=Notification.Kind.NOTICE)
        transaction.on_commit(partial(queue_notification, notification))
        return notification

    def news_from_family(self) -> None:
        """Marks the case as having news from the family, and alerts the coordinators by
        email unless they were alerted about this case within FAMILY_ALERT_MINUTES."""
        now = timezone.now()
        quiet_since = now - timedelta(minutes=settings.FAMILY_ALERT_MINUTES)
        Inquiry.objects.filter(pk=self.pk).update(news_from_family_at=now)
        alert = (
            Inquiry.objects.filter(pk=self.pk)
            .filter(Q(family_alerted_at__isnull=True) | Q(family_alerted_at__lt=quiet_since))
            .update(family_alerted_at=now)
        )
        self.news_from_family_at = now
        if alert:
            notification = Notification.objects.create(inquiry=self, kind=Notification.Kind.NEWS)
            transaction.on_commit(partial(queue_notification, notification))

    def news_seen(self) -> None:
        Inquiry.objects.filter(pk=self.pk).update(news_from_family_at=None)
        self.news_from_family_at = None

    def is_follow_up_overdue(self, today: date | None = None) -> bool:
        return (
            self.follow_up_on is not None
            and self.status != self.Status.CLOSED
            and self.follow_up_on < (today or timezone.localdate())
        )

    def erase(self) -> None:
        """Right to erasure: the inquiry, its documents (files too) and its history."""
        pk = self.pk
        with transaction.atomic():
            for document in self.documents.filter(parent=None):
                document.erase()
            self.delete()
            # After the delete, which itself adds a history record.
            Inquiry.history.filter(id=pk).delete()


# Where the case stands, as the family's case page says it.
FAMILY_STATUS = {
    Inquiry.Status.NEW: (
        "Received",
        "We have your inquiry. A coordinator will start on it soon, usually within two "
        "working days.",
    ),
    Inquiry.Status.IN_REVIEW: (
        "Being reviewed",
        "A coordinator is reading the patient’s case and the records you sent.",
    ),
    Inquiry.Status.AWAITING_RECORDS: (
        "Waiting for records",
        "We need the records listed below before we can go on. Please send them from this "
        "page when you have them.",
    ),
    Inquiry.Status.REFERRED: (
        "Referred",
        "We have passed the case to a treatment center or specialist. We will write here "
        "when we hear from them.",
    ),
    Inquiry.Status.CLOSED: (
        "Closed",
        "We are no longer working on this case. If you need us again, write to us at the "
        "address below.",
    ),
}


def queue_notification(notification: "Notification") -> None:
    from .documents.pipeline import queue_email

    try:
        queue_email(notification)
    except DatabaseError as error:
        # The row is stored: a worker's recovery sends it.
        logger.warning("Email %s left to recovery: %s", notification.pk, type(error).__name__)


class Series(models.Model):
    """The images of one scan series (one CT of the chest, say), told apart and described by
    their DICOM headers: coordinators see "CT chest, 12 Mar 2026, 312 images", not 312
    rows. The text comes from the files and is shown as text only."""

    inquiry = models.ForeignKey(Inquiry, on_delete=models.CASCADE, related_name="series")
    study_uid = models.CharField("study instance UID", max_length=64)
    series_uid = models.CharField("series instance UID", max_length=64)
    modality = models.CharField(max_length=16, blank=True)
    study_date = models.DateField(null=True, blank=True)
    study_description = models.CharField(max_length=64, blank=True)
    series_description = models.CharField(max_length=64, blank=True)
    body_part = models.CharField(max_length=64, blank=True)

    class Meta:
        verbose_name_plural = "series"
        ordering = ["study_date", "study_uid", "series_uid"]
        constraints = [
            models.UniqueConstraint(fields=["inquiry", "series_uid"], name="one_series_per_uid")
        ]

    def __str__(self) -> str:
        return self.label()

    def label(self, images: int | None = None) -> str:
        what = self.series_description or self.study_description or self.body_part.lower()
        parts = [f"{self.modality or 'Scan'} {what}".strip()]
        if self.study_date:
            parts.append(f"{self.study_date:%-d %b %Y}")
        if images is not None:
            parts.append("1 image" if images == 1 else f"{images:,} images")
        return ", ".join(parts)

    @staticmethod
    def from_header(header: dict) -> dict:
        """The fields of a series, from what the sandbox read of a scan's header."""
        fields = {
            name: str(header.get(name) or "")[:limit]
            for name, limit in [
                ("study_uid", 64),
                ("series_uid", 64),
                ("modality", 16),
                ("study_description", 64),
                ("series_description", 64),
                ("body_part", 64),
            ]
        }
        try:
            fields["study_date"] = datetime.strptime(str(header.get("study_date")), "%Y%m%d").date()
        except ValueError:
            fields["study_date"] = None
        return fields


class DocumentQuerySet(models.QuerySet):
    def accepted(self) -> "DocumentQuerySet":
        return self.filter(state=Document.State.ACCEPTED)

    def counted(self) -> "DocumentQuerySet":
        """The files, as a family counts them: a ZIP file by what came out of it (unless it
        was refused whole), and whatever came out of a PDF."""
        return self.exclude(detected_type="zip", state=Document.State.ACCEPTED)

    def not_in_series(self) -> "DocumentQuerySet":
        """Everything but the images of a scan series, which are shown by series."""
        return self.filter(series__isnull=True)

    def unsettled(self) -> "DocumentQuerySet":
        return self.filter(state__in=[Document.State.RECEIVED, Document.State.CHECKING])


class Document(models.Model):
    """A file a family sent. It arrives in quarantine (`received`), is opened and rebuilt in
    the sandbox by a worker (`checking`), and ends `accepted`, as a rebuilt copy that
    coordinators may open, or `refused`, with the reason the family is told. The original
    bytes are deleted as soon as the check has ended, either way."""

    class State(models.TextChoices):
        RECEIVED = "received", "Received, waiting to be checked"
        CHECKING = "checking", "Being checked"
        ACCEPTED = "accepted", "Accepted"
        REFUSED = "refused", "Refused"

    inquiry = models.ForeignKey(Inquiry, on_delete=models.CASCADE, related_name="documents")
    # The ZIP file (a scan disc) or the PDF this file was taken out of, and checked on its own.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="members"
    )
    # A series goes only with its images (their files must go first: Document.erase).
    series = models.ForeignKey(
        Series, null=True, blank=True, on_delete=models.RESTRICT, related_name="images"
    )
    # For a ZIP file, what was in it that is no record, never stored: {why: [names]} and
    # how many of each ({"counts": {why: n}}).
    left_out = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=10, choices=State, default=State.RECEIVED)
    original_name = models.CharField(max_length=255, help_text="As the family named it.")
    detected_type = models.CharField(max_length=10, help_text="From the file's first bytes.")
    received_size = models.PositiveBigIntegerField()
    received_at = models.DateTimeField(default=timezone.now, editable=False)
    # The original in the quarantine storage; emptied once the original is deleted.
    quarantine_name = models.CharField(max_length=200, blank=True)
    check_attempts = models.PositiveSmallIntegerField(default=0)
    # Checks put back after a passing fault (the store, the database, a busy machine).
    check_put_backs = models.PositiveSmallIntegerField(default=0)
    check_task_id = models.CharField(max_length=64, blank=True)
    # Renewed every few seconds while a worker checks the file: a stale one means the
    # worker died, and the check is tried again.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    refusal = models.CharField(max_length=30, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    # The rebuilt copy, once accepted.
    file = models.FileField(
        storage=document_storage, upload_to=document_path, max_length=200, blank=True
    )
    content_type = models.CharField(max_length=50, blank=True)
    extension = models.CharField(max_length=5, blank=True)
    size = models.PositiveBigIntegerField(null=True, blank=True)
    pages = models.PositiveIntegerField(null=True, blank=True)
    sha256 = models.CharField("SHA-256", max_length=64, blank=True)
    # A small picture of a photo or of a PDF's first page, made by the worker from the
    # pixels it rebuilt the copy from, for coordinators to look at in place.
    preview = models.FileField(
        storage=document_storage, upload_to=document_path, max_length=200, blank=True
    )
    # Sent later, from the family's case page (not with the first form).
    sent_later = models.BooleanField(default=False)

    objects = DocumentQuerySet.as_manager()

    class Meta:
        ordering = ["received_at", "id"]
        constraints = [
            # A ZIP file is accepted once unpacked: its members carry the copies.
            models.CheckConstraint(
                condition=~Q(state="accepted")
                | Q(detected_type="zip")
                | (~Q(file="") & ~Q(sha256="")),
                name="document_accepted_with_its_rebuilt_copy",
            ),
            models.CheckConstraint(
                condition=Q(state="refused", refusal__gt="")
                | (~Q(state="refused") & Q(refusal="")),
                name="document_refused_with_a_reason",
            ),
        ]

    def __str__(self) -> str:
        return self.original_name

    @property
    def download_name(self) -> str:
        """The family's name for the file, with the extension of what is stored (a HEIC
        photo is kept as JPEG)."""
        return f"{Path(self.original_name).stem}.{self.extension}"

    @property
    def is_settled(self) -> bool:
        return self.state in (self.State.ACCEPTED, self.State.REFUSED)

    @property
    def state_for_family(self) -> str:
        if self.state == self.State.ACCEPTED:
            return "Received safely"
        if self.state == self.State.REFUSED:
            return "Not accepted"
        return "Being checked"

    def get_download_url(self) -> str:
        """The admin's checked, audited download of the rebuilt copy."""
        return reverse("admin:inquiries_document_download", args=[self.pk])

    def get_preview_url(self) -> str:
        return reverse("admin:inquiries_document_preview", args=[self.pk])

    @property
    def name_with_origin(self) -> str:
        """The family's name for the file, and what it was taken out of, if anything."""
        if self.parent_id:
            return f"{self.original_name} (from {self.parent.original_name})"
        return self.original_name

    @property
    def is_archive(self) -> bool:
        return self.detected_type == "zip"

    def unpacked(self) -> dict:
        """For a ZIP file: what came out of it (its members prefetched, ideally)."""
        images, shown = [], []
        for member in self.members.all():
            is_image = member.series_id and member.state == self.State.ACCEPTED
            (images if is_image else shown).append(member)
        counts = self.left_out.get("counts", {}) if isinstance(self.left_out, dict) else {}
        summary = archive_summary(
            len(images), len({m.series_id for m in images}), len(shown), counts
        )
        return {"summary": summary, "members": shown}

    @property
    def refusal_message(self) -> str:
        """What went wrong, in a sentence the family can act on."""
        if not self.refusal:
            return ""
        return refusal(self.refusal, self.original_name, LABELS.get(self.detected_type, ""))

    def erase(self) -> None:
        """Remove the row, then its files once the removal is committed: a failure midway
        never leaves a row pointing at a missing file. What was taken out of it goes too."""
        files = [(f.storage, f.name) for f in (self.file, self.preview) if f]
        if self.quarantine_name:
            files.append((quarantine_storage, self.quarantine_name))
        with transaction.atomic():
            for member in self.members.all():
                member.erase()
            self.delete()
            for storage, name in files:
                # Robust: one file that cannot be deleted must not keep the others.
                transaction.on_commit(partial(storage.delete, name), robust=True)


class DocumentDownload(models.Model):
    """Who downloaded or previewed which document, and when: the audit trail coordinators
    are held to."""

    class Kind(models.TextChoices):
        DOWNLOAD = "download", "Downloaded"
        PREVIEW = "preview", "Previewed"

    # Kept when the document itself is erased at the end of its retention period.
    document = models.ForeignKey(
        Document, null=True, on_delete=models.SET_NULL, related_name="downloads"
    )
    document_name = models.CharField(max_length=255)
    # A whole series, downloaded as one ZIP file.
    series = models.ForeignKey(
        Series, null=True, blank=True, on_delete=models.SET_NULL, related_name="downloads"
    )
    inquiry = models.ForeignKey(Inquiry, on_delete=models.CASCADE, related_name="downloads")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    downloaded_at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=10, choices=Kind, default=Kind.DOWNLOAD)

    class Meta:
        ordering = ["-downloaded_at"]

    def __str__(self) -> str:
        return f"{self.document_name} by {self.user} at {self.downloaded_at:%Y-%m-%d %H:%M}"


class Note(models.Model):
    """An internal note on a case. Notes are only ever added, never changed or removed."""

    inquiry = models.ForeignKey(Inquiry, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    text = models.TextField(max_length=5000)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"Note by {self.author} on {self.created_at:%Y-%m-%d %H:%M}"


# The first two emails of an inquiry wait until its documents have been checked (they count
# them); the others go at once.
AFTER_THE_CHECKS = ["receipt", "new_inquiry"]


class NotificationQuerySet(models.QuerySet):
    def owed(self) -> "NotificationQuerySet":
        """Not sent, and due to be: the first emails only once the checks have ended."""
        return self.filter(sent_at__isnull=True).filter(
            Q(inquiry__documents_checked_at__isnull=False) | ~Q(kind__in=AFTER_THE_CHECKS)
        )

    def due(self) -> "NotificationQuerySet":
        return self.owed().filter(attempts__lt=Notification.MAX_ATTEMPTS)

    def undelivered(self) -> "NotificationQuerySet":
        return self.filter(sent_at__isnull=True)


class Notification(models.Model):
    """An email owed to someone about an inquiry. The row is written with the inquiry, so a
    mail server that is down loses nothing: a worker sends it once the inquiry's documents
    have been checked, and tries again with a growing pause until it goes through."""

    MAX_ATTEMPTS = 10

    class Kind(models.TextChoices):
        RECEIPT = "receipt", "Receipt to the sender"
        NEW_INQUIRY = "new_inquiry", "Alert to the coordinators"
        NOTICE = "notice", "Notice to the family: news on the case page"
        LINK = "link", "New link to the case page, asked for by the family"
        NEWS = "news", "Alert to the coordinators: news from the family"

    inquiry = models.ForeignKey(Inquiry, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=20, choices=Kind)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    task_id = models.CharField(max_length=64, blank=True)

    objects = NotificationQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["inquiry", "kind"],
                condition=Q(kind__in=AFTER_THE_CHECKS),
                name="one_receipt_and_one_alert",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for {self.inquiry}"

    @property
    def to_family(self) -> bool:
        return self.kind in (self.Kind.RECEIPT, self.Kind.NOTICE, self.Kind.LINK)

    @property
    def state(self) -> str:
        if self.sent_at:
            return "Sent"
        if self.attempts >= self.MAX_ATTEMPTS:
            return "Failed, no more retries"
        if self.attempts:
            return "Not delivered yet, will retry"
        return "Waiting to be sent"

    def next_retry_after(self) -> timedelta:
        # 1, 2, 4 … minutes between tries (EMAIL_RETRY_SECONDS at first), at most an hour.
        seconds = settings.EMAIL_RETRY_SECONDS * 2 ** max(0, self.attempts - 1)
        return timedelta(seconds=min(3600, seconds))


class HeldFileQuerySet(models.QuerySet):
    def expired(self, now=None) -> "HeldFileQuerySet":
        held_for = timedelta(seconds=settings.HELD_FILES_SECONDS)
        return self.filter(held_at__lt=(now or timezone.now()) - held_for)

    def recent(self) -> "HeldFileQuerySet":
        held_for = timedelta(seconds=settings.HELD_FILES_SECONDS)
        return self.filter(held_at__gte=timezone.now() - held_for)

    def current(self, submission_id) -> "HeldFileQuerySet":
        held_for = timedelta(seconds=settings.HELD_FILES_SECONDS)
        return self.filter(submission_id=submission_id, held_at__gte=timezone.now() - held_for)


class HeldFile(models.Model):
    """A file that passed the form's first look while the rest of the form did not (a
    missing consent, say): kept in quarantine with the unfinished sending for
    HELD_FILES_SECONDS, so that the family only fixes what was wrong, then swept. It is no
    inquiry's until the family sends the form."""

    submission_id = models.UUIDField(db_index=True)
    original_name = models.CharField(max_length=255)
    detected_type = models.CharField(max_length=10)
    received_size = models.PositiveBigIntegerField()
    quarantine_name = models.CharField(max_length=200)
    held_at = models.DateTimeField(default=timezone.now)
    # The chosen folder, packed into a ZIP file: a sending has one at most.
    is_folder = models.BooleanField(default=False)
    # Who sent it, as a keyed hash of their address (never the address): one sender may not
    # take everybody's room (HELD_FILES_PER_CLIENT_MB).
    client = models.CharField(max_length=64, blank=True, db_index=True)

    objects = HeldFileQuerySet.as_manager()

    class Meta:
        ordering = ["held_at", "id"]

    def __str__(self) -> str:
        return self.original_name

    def release(self) -> None:
        """Removes the row, then the file once that is committed."""
        name = self.quarantine_name
        with transaction.atomic():
            self.delete()
            transaction.on_commit(partial(quarantine_storage.delete, name), robust=True)

    @classmethod
    def sweep(cls) -> int:
        """Releases what has been held too long; returns how many."""
        expired = list(cls.objects.expired())
        for held in expired:
            held.release()
        return len(expired)


# The case between family and coordinators, after the first form


class RecordKind(models.Model):
    """A record coordinators may ask a family for ("Flow cytometry with CD19"): the list is
    theirs to edit in the admin."""

    name = models.CharField(max_length=100, unique=True)
    # "Other": the coordinator says in a few words what is needed.
    needs_description = models.BooleanField(
        default=False, help_text="The coordinator describes the record when asking for it."
    )
    position = models.PositiveSmallIntegerField(default=0)
    active = models.BooleanField(default=True, help_text="Offered when asking for records.")

    class Meta:
        ordering = ["position", "name"]

    def __str__(self) -> str:
        return self.name


class AddOnlyQuerySet(models.QuerySet):
    """What was written to or by the family stays as it was written; it goes only with the
    case (a cascade deletes rows without this queryset)."""

    def update(self, **kwargs):
        raise ValueError(f"{self.model._meta.verbose_name} is never changed.")

    def delete(self):
        raise ValueError(f"{self.model._meta.verbose_name} is never deleted on its own.")


class RecordRequestQuerySet(models.QuerySet):
    def outstanding(self) -> "RecordRequestQuerySet":
        return self.filter(state=RecordRequest.State.REQUESTED)


class RecordRequest(models.Model):
    """A record a coordinator asked the family for. What was asked stays as written; only
    its state moves (requested, received, no longer needed), with who moved it and when."""

    class State(models.TextChoices):
        REQUESTED = "requested", "Requested"
        RECEIVED = "received", "Received"
        NOT_NEEDED = "not_needed", "No longer needed"

    inquiry = models.ForeignKey(Inquiry, on_delete=models.CASCADE, related_name="record_requests")
    kind = models.ForeignKey(RecordKind, on_delete=models.PROTECT, verbose_name="record")
    description = models.CharField(max_length=200, blank=True)
    state = models.CharField(max_length=12, choices=State, default=State.REQUESTED)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    requested_at = models.DateTimeField(default=timezone.now, editable=False)
    # Who last changed the state: a coordinator, or nobody when the family said it sent it.
    state_changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    state_changed_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = RecordRequestQuerySet.as_manager()

    class Meta:
        ordering = ["requested_at", "id"]

    def __str__(self) -> str:
        return self.label

    @property
    def label(self) -> str:
        if self.description:
            return f"{self.kind.name}: {self.description}"
        return self.kind.name


class Message(models.Model):
    """A message on the case, from a coordinator to the family or from the family. Never
    edited; erased with the case."""

    class Sender(models.TextChoices):
        COORDINATOR = "coordinator", "A coordinator"
        FAMILY = "family", "The family"

    inquiry = models.ForeignKey(Inquiry, on_delete=models.CASCADE, related_name="messages")
    sender = models.CharField(max_length=12, choices=Sender)
    # The coordinator who wrote it; for the family's, the link their session came from.
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT
    )
    link = models.ForeignKey(
        "CaseLink", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    text = models.TextField(max_length=5000)
    sent_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = AddOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["sent_at", "id"]

    def __str__(self) -> str:
        sent = date_format(timezone.localtime(self.sent_at), "SHORT_DATETIME_FORMAT")
        return f"from {self.get_sender_display().lower()}, {sent}"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            raise ValueError("A message is never changed.")
        super().save(*args, **kwargs)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class CaseLinkQuerySet(models.QuerySet):
    def unused(self, now=None) -> "CaseLinkQuerySet":
        return self.filter(used_at__isnull=True, expires_at__gt=now or timezone.now())


class CaseLink(models.Model):
    """A link to the family's case page, sent in one email. Only a hash of its random token
    is stored; it works once, within CASE_LINK_DAYS, and opens a session for this one case."""

    class Purpose(models.TextChoices):
        RECEIPT = "receipt", "the receipt"
        NOTICE = "notice", "a notice of news"
        ASKED = "asked", "a new link the family asked for"

    inquiry = models.ForeignKey(Inquiry, on_delete=models.CASCADE, related_name="links")
    token_hash = models.CharField(max_length=64, unique=True)
    purpose = models.CharField(max_length=10, choices=Purpose)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    objects = CaseLinkQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        sent = date_format(timezone.localtime(self.created_at), "SHORT_DATETIME_FORMAT")
        return f"link {self.pk} ({self.get_purpose_display()}, {sent})"

    @classmethod
    def issue(cls, inquiry: Inquiry, purpose: str) -> tuple["CaseLink", str]:
        """A new link and its token (32 random bytes: never stored, only sent)."""
        token = secrets.token_urlsafe(32)
        link = cls.objects.create(
            inquiry=inquiry,
            token_hash=token_digest(token),
            purpose=purpose,
            expires_at=timezone.now() + timedelta(days=settings.CASE_LINK_DAYS),
        )
        return link, token

    @classmethod
    def usable(cls, token: str) -> "CaseLink | None":
        if not isinstance(token, str) or not 20 <= len(token) <= 100:
            return None
        return cls.objects.unused().filter(token_hash=token_digest(token)).first()

    def use(self) -> bool:
        """Spends the link; False if it was spent meanwhile (two clicks at once)."""
        now = timezone.now()
        spent = CaseLink.objects.unused(now).filter(pk=self.pk).update(used_at=now)
        self.used_at = now
        return bool(spent)

    def url_with(self, token: str) -> str:
        """The address the email gives: the token in the query string, which no log keeps."""
        return f"{settings.SITE_URL}{reverse('inquiries:case_open')}?key={token}"


class CaseEvent(models.Model):
    """What the family did with its case page, for coordinators: who (through which link),
    what, when. Counts only, never names or words: a file's name can be health data."""

    class Kind(models.TextChoices):
        OPENED = "opened", "Opened the case page with the link"
        VIEWED = "viewed", "Looked at the case page"
        MESSAGE = "message", "Wrote a message"
        DOCUMENTS = "documents", "Sent documents"
        WITHDRAWAL = "withdrawal", "Asked to withdraw consent"
        SIGNED_OUT = "signed_out", "Signed out"
        NEW_LINK = "new_link", "Asked for a new link (reference and email matched)"

    inquiry = models.ForeignKey(Inquiry, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=12, choices=Kind)
    link = models.ForeignKey(CaseLink, null=True, blank=True, on_delete=models.SET_NULL)
    detail = models.CharField(max_length=100, blank=True)
    at = models.DateTimeField(default=timezone.now, editable=False)

    objects = AddOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return self.get_kind_display()
