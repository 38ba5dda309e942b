import hashlib
import logging

import phonenumbers
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Prefetch, Q, QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.template.defaultfilters import filesizeformat
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.http import content_disposition_header
from simple_history.admin import SimpleHistoryAdmin

from .documents.messages import LEFT_OUT
from .documents.types import sanitise_filename
from .downloads import zipped
from .emails import deliver
from .forms import InquiryForm
from .models import (
    STORAGE_ERRORS,
    Document,
    DocumentDownload,
    Inquiry,
    Note,
    Notification,
    Series,
)

logger = logging.getLogger(__name__)

# What the family sent, shown read-only: the form's fields, framed by when and under what
# consent they arrived.
SUBMITTED_FIELDS = [
    "reference",
    "received_at",
    *InquiryForm.Meta.fields,
    "consent_version",
    "consent_given_at",
    "consent_text",
]


def inquiries(count: int) -> str:
    return f"{count} inquiry" if count == 1 else f"{count} inquiries"


class AssignedFilter(admin.SimpleListFilter):
    title = "assigned to"
    parameter_name = "assigned"

    def lookups(self, request, model_admin):
        return [("me", "Assigned to me"), ("nobody", "Unassigned")]

    def queryset(self, request, queryset):
        if self.value() == "me":
            return queryset.filter(assigned_to=request.user)
        if self.value() == "nobody":
            return queryset.filter(assigned_to__isnull=True)
        return queryset


class FollowUpFilter(admin.SimpleListFilter):
    title = "follow-up"
    parameter_name = "follow_up"

    def lookups(self, request, model_admin):
        return [("overdue", "Overdue"), ("today", "Due today")]

    def queryset(self, request, queryset):
        if self.value() == "overdue":
            return queryset.follow_up_overdue()
        if self.value() == "today":
            return queryset.open().filter(follow_up_on=timezone.localdate())
        return queryset


class EmailFilter(admin.SimpleListFilter):
    title = "emails"
    parameter_name = "emails"

    def lookups(self, request, model_admin):
        return [("undelivered", "Not delivered yet")]

    def queryset(self, request, queryset):
        if self.value() == "undelivered":
            return queryset.filter(undelivered_count__gt=0)
        return queryset


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class DocumentInline(ReadOnlyInline):
    """The rebuilt copies coordinators may open: only documents the checks accepted. The
    images of a scan series are shown by series, below."""

    model = Document
    fields = ["name", "kind", "file_size", "pages", "checksum", "download"]
    readonly_fields = fields
    verbose_name_plural = "documents"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Document]:
        documents = super().get_queryset(request).accepted().not_in_series()
        return documents.exclude(detected_type="zip").select_related("parent")

    @admin.display(description="name")
    def name(self, document: Document) -> str:
        return document.name_with_origin

    @admin.display(description="type")
    def kind(self, document: Document) -> str:
        if document.detected_type == document.extension or document.detected_type == "jpeg":
            return document.content_type
        return f"{document.content_type} (sent as {document.detected_type.upper()})"

    @admin.display(description="size")
    def file_size(self, document: Document) -> str:
        return filesizeformat(document.size)

    @admin.display(description="SHA-256")
    def checksum(self, document: Document) -> str:
        return format_html('<span title="{}">{}…</span>', document.sha256, document.sha256[:16])

    @admin.display(description="")
    def download(self, document: Document) -> str:
        return format_html('<a href="{}">Download</a>', document.get_download_url())


class SeriesInline(ReadOnlyInline):
    """Scans by series, as their headers describe them: one row for 312 images."""

    model = Series
    fields = ["description", "images", "download"]
    readonly_fields = fields
    verbose_name = "scan series"
    verbose_name_plural = "scans, by series"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Series]:
        accepted = Q(images__state=Document.State.ACCEPTED)
        images = Document.objects.accepted().order_by("id").only("pk", "series", "original_name")
        return (
            super()
            .get_queryset(request)
            .annotate(image_count=Count("images", filter=accepted))
            .filter(image_count__gt=0)
            .prefetch_related(Prefetch("images", queryset=images, to_attr="accepted_images"))
        )

    @admin.display(description="series")
    def description(self, series: Series) -> str:
        return series.label(series.image_count)

    @admin.display(description="images")
    def images(self, series: Series) -> str:
        images = series.accepted_images
        links = format_html_join(
            "",
            '<li><a href="{}">{}</a></li>',
            ((image.get_download_url(), image.original_name) for image in images),
        )
        return format_html(
            '<details><summary>One image at a time</summary><ul class="series-images">{}</ul>'
            "</details>",
            links,
        )

    @admin.display(description="")
    def download(self, series: Series) -> str:
        url = reverse("admin:inquiries_series_download", args=[series.pk])
        return format_html('<a href="{}">Download the series (ZIP)</a>', url)


class ArchiveInline(ReadOnlyInline):
    """ZIP files (scan discs): what came out of each, and what was left out."""

    model = Document
    fields = ["original_name", "unpacked_into", "left_out_names"]
    readonly_fields = fields
    verbose_name = "ZIP file"
    verbose_name_plural = "ZIP files (scan discs), unpacked"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Document]:
        documents = super().get_queryset(request).accepted().filter(detected_type="zip")
        return documents.prefetch_related("members")

    @admin.display(description="what came out of it")
    def unpacked_into(self, archive: Document) -> str:
        return archive.unpacked()["summary"]

    @admin.display(description="left out (never stored)")
    def left_out_names(self, archive: Document) -> str:
        left_out = archive.left_out if isinstance(archive.left_out, dict) else {}
        counts = left_out.get("counts", {})
        return (
            format_html_join(
                "",
                "<p>{}: {}{}</p>",
                (
                    (
                        LEFT_OUT.get(why, ("", why))[1].capitalize(),
                        ", ".join(names),
                        f" and {counts.get(why, 0) - len(names):,} more"
                        if counts.get(why, 0) > len(names)
                        else "",
                    )
                    for why, names in left_out.items()
                    if why != "counts"
                ),
            )
            or "–"
        )


class UncheckedDocumentInline(ReadOnlyInline):
    """Files still being checked, and those the checks refused: named, never opened."""

    model = Document
    fields = ["name", "detected_type", "state", "why"]
    readonly_fields = fields
    verbose_name = "document not (yet) accepted"
    verbose_name_plural = "documents being checked or refused"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Document]:
        documents = super().get_queryset(request).exclude(state=Document.State.ACCEPTED)
        return documents.select_related("parent")

    @admin.display(description="name")
    def name(self, document: Document) -> str:
        return document.name_with_origin

    @admin.display(description="why refused")
    def why(self, document: Document) -> str:
        return document.refusal_message or "–"


class NoteInline(admin.StackedInline):
    """Notes are added, never edited or removed: the case record stays as it was written."""

    model = Note
    extra = 1
    can_delete = False
    fields = ["text", "written"]
    readonly_fields = ["written"]
    verbose_name = "internal note"
    verbose_name_plural = "internal notes (only coordinators see these)"

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Note]:
        return super().get_queryset(request).select_related("author")

    @admin.display(description="written")
    def written(self, note: Note) -> str:
        if note.pk is None:
            return "Now, by you"
        written = date_format(timezone.localtime(note.created_at), "DATETIME_FORMAT")
        return f"{written} by {note.author}"


class DownloadInline(ReadOnlyInline):
    model = DocumentDownload
    fields = ["document_name", "downloaded_by", "downloaded_at"]
    readonly_fields = fields
    verbose_name_plural = "document downloads"

    def get_queryset(self, request: HttpRequest) -> QuerySet[DocumentDownload]:
        return super().get_queryset(request).select_related("user")

    @admin.display(description="downloaded by")
    def downloaded_by(self, download: DocumentDownload) -> str:
        # Plain text: coordinators may not open user accounts, so no link to one.
        return download.user.get_username()


class NotificationInline(ReadOnlyInline):
    model = Notification
    fields = ["kind", "state", "attempts", "last_error", "sent_at"]
    readonly_fields = fields
    verbose_name_plural = "emails"


@admin.register(Inquiry)
class InquiryAdmin(SimpleHistoryAdmin):
    list_display = [
        "reference",
        "received",
        "patient_name",
        "condition",
        "country_code",
        "status",
        "assigned_to",
        "follow_up",
        "documents",
        "emails",
    ]
    list_filter = ["status", "diagnosis", AssignedFilter, FollowUpFilter, EmailFilter]
    search_fields = ["reference", "patient_name", "email"]
    date_hierarchy = "received_at"
    list_select_related = ["assigned_to"]
    list_per_page = 50
    readonly_fields = [*SUBMITTED_FIELDS, "phone_number", "closed_at", "workflow_history"]
    fieldsets = [
        (
            "Case handling",
            {"fields": [("status", "closed_reason"), ("assigned_to", "follow_up_on")]},
        ),
        (
            "Sent by the family (read-only)",
            {
                "fields": [
                    ("reference", "received_at"),
                    ("writer", "writer_name", "acting_for_patient_confirmed"),
                    ("patient_name", "birth_year", "country"),
                    ("email", "phone_number", "language"),
                    "diagnosis",
                    "treatment_so_far",
                    "question",
                    ("consent_version", "consent_given_at"),
                    "consent_text",
                ]
            },
        ),
        ("History", {"fields": ["closed_at", "workflow_history"]}),
    ]
    inlines = [
        DocumentInline,
        SeriesInline,
        ArchiveInline,
        UncheckedDocumentInline,
        NoteInline,
        DownloadInline,
        NotificationInline,
    ]
    actions = [
        "assign_to_me",
        "mark_in_review",
        "mark_awaiting_records",
        "mark_referred",
        "retry_emails",
    ]
    history_list_display = ["status", "assigned_to", "follow_up_on"]

    class Media:
        css = {"all": ["css/admin.css"]}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Inquiry]:
        return super().get_queryset(request).with_counts()

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Inquiries come from families through the public form, never from the admin.
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        # Deleting rows would leave files and history behind: erasure is `erase_inquiry`.
        return False

    @admin.display(description="received", ordering="received_at")
    def received(self, inquiry: Inquiry) -> str:
        return date_format(timezone.localtime(inquiry.received_at), "SHORT_DATETIME_FORMAT")

    @admin.display(description="diagnosis", ordering="diagnosis")
    def condition(self, inquiry: Inquiry) -> str:
        # The abbreviation in brackets keeps the column narrow: "B-ALL", "CLL/SLL".
        label = inquiry.get_diagnosis_display()
        return label[label.rindex("(") + 1 : -1] if label.endswith(")") else label

    @admin.display(description="country", ordering="country")
    def country_code(self, inquiry: Inquiry) -> str:
        return format_html('<abbr title="{}">{}</abbr>', inquiry.country.name, inquiry.country.code)

    @admin.display(description="phone")
    def phone_number(self, inquiry: Inquiry) -> str:
        if not inquiry.phone:
            return "–"
        number = phonenumbers.parse(inquiry.phone)
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)

    @admin.display(description="follow up", ordering="follow_up_on")
    def follow_up(self, inquiry: Inquiry) -> str:
        if inquiry.follow_up_on is None:
            return "–"
        due = date_format(inquiry.follow_up_on, "SHORT_DATE_FORMAT")
        if inquiry.is_follow_up_overdue():
            return format_html('<strong class="overdue">{} (overdue)</strong>', due)
        return due

    @admin.display(description="documents", ordering="document_count")
    def documents(self, inquiry: Inquiry) -> str:
        if inquiry.unchecked_count:
            return f"{inquiry.document_count} ({inquiry.unchecked_count} being checked)"
        return str(inquiry.document_count)

    @admin.display(description="emails")
    def emails(self, inquiry: Inquiry) -> str:
        if inquiry.documents_checked_at is None:
            return "After the checks"
        if inquiry.undelivered_count:
            return format_html(
                '<strong class="overdue">{} not delivered</strong>', inquiry.undelivered_count
            )
        return "Sent"

    @admin.display(description="status changes and assignments")
    def workflow_history(self, inquiry: Inquiry) -> str:
        records = inquiry.history.select_related("history_user", "assigned_to").order_by(
            "history_date"
        )
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    date_format(timezone.localtime(record.history_date), "SHORT_DATETIME_FORMAT"),
                    record.history_user or "the family (form)",
                    record.get_status_display(),
                    record.assigned_to or "nobody",
                    record.history_change_reason or "",
                )
                for record in records
            ),
        )
        return format_html(
            "<table><thead><tr><th>When</th><th>Who</th><th>Status</th><th>Assigned to</th>"
            "<th>What</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    def save_model(self, request: HttpRequest, inquiry: Inquiry, form, change: bool) -> None:
        if change and not form.has_changed():
            # Only a note was added: the case itself did not change, so no history entry.
            return
        changes = []
        if "status" in form.changed_data or "closed_reason" in form.changed_data:
            inquiry.stamp_closing()
            changes.append(inquiry.status_change_reason())
        if "assigned_to" in form.changed_data:
            changes.append(f"Assigned to {inquiry.assigned_to or 'nobody'}")
        if "follow_up_on" in form.changed_data:
            changes.append(f"Follow up on {inquiry.follow_up_on or 'no date'}")
        inquiry._change_reason = "; ".join(changes)
        super().save_model(request, inquiry, form, change)

    def save_formset(self, request: HttpRequest, form, formset, change: bool) -> None:
        if formset.model is Note:
            for note in formset.save(commit=False):
                note.author = request.user
                note.save()
        else:
            formset.save()

    @admin.action(description="Assign to me", permissions=["change"])
    def assign_to_me(self, request: HttpRequest, queryset: QuerySet[Inquiry]) -> None:
        for inquiry in queryset:
            inquiry.assign(to=request.user)
        self.message_user(request, f"{inquiries(len(queryset))} assigned to you.")

    def _set_status(self, request, queryset, status: str) -> None:
        for inquiry in queryset:
            inquiry.set_status(status)
        label = Inquiry.Status(status).label
        self.message_user(request, f"{inquiries(len(queryset))} marked “{label}”.")

    @admin.action(description="Mark as in review", permissions=["change"])
    def mark_in_review(self, request, queryset) -> None:
        self._set_status(request, queryset, Inquiry.Status.IN_REVIEW)

    @admin.action(description="Mark as awaiting records", permissions=["change"])
    def mark_awaiting_records(self, request, queryset) -> None:
        self._set_status(request, queryset, Inquiry.Status.AWAITING_RECORDS)

    @admin.action(description="Mark as referred", permissions=["change"])
    def mark_referred(self, request, queryset) -> None:
        self._set_status(request, queryset, Inquiry.Status.REFERRED)

    @admin.action(description="Try again to send emails not delivered", permissions=["change"])
    def retry_emails(self, request, queryset) -> None:
        # Emails are owed only once the documents have been checked: a receipt sent earlier
        # would count files not yet received safely.
        owed = Notification.objects.undelivered().filter(
            inquiry__in=queryset, inquiry__documents_checked_at__isnull=False
        )
        results = [deliver(notification) for notification in owed.select_related("inquiry")]
        sent, failed = results.count(True), results.count(False)
        level = messages.WARNING if failed else messages.SUCCESS
        self.message_user(request, f"{sent} email(s) sent, {failed} still not delivered.", level)

    def _not_sent(self, request: HttpRequest, document: Document, *, damaged: bool) -> HttpResponse:
        """A damaged or missing file is a 500 for the technical team; a store that cannot be
        reached just now is a 503, worth trying again."""
        title = "Document could not be verified" if damaged else "Document store unavailable"
        context = {"document": document, "title": title, "damaged": damaged}
        response = render(
            request,
            "admin/inquiries/document_damaged.html",
            context,
            status=500 if damaged else 503,
        )
        if not damaged:
            response["Retry-After"] = "30"
        return response

    def history_form_view(self, request, object_id, version_id, extra_context=None):
        # History is for reading: django-simple-history only hides the revert button, and
        # would still rewrite the case from a POST. A case changes through its own form.
        if request.method not in ("GET", "HEAD"):
            raise PermissionDenied
        return super().history_form_view(request, object_id, version_id, extra_context)

    def get_urls(self):
        download = self.admin_site.admin_view(self.download_document)
        download_series = self.admin_site.admin_view(self.download_series)
        return [
            path(
                "document/<int:pk>/download/",
                download,
                name="inquiries_document_download",
            ),
            path(
                "series/<int:pk>/download/",
                download_series,
                name="inquiries_series_download",
            ),
            *super().get_urls(),
        ]

    def download_series(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Every image of a series as one ZIP file, made while it is sent (never whole in
        memory or on disk), each image checked against its checksum before it goes in."""
        if not request.user.has_perm("inquiries.download_document"):
            raise PermissionDenied
        series = get_object_or_404(Series.objects.select_related("inquiry"), pk=pk)
        images = list(series.images.accepted().order_by("id"))
        if not images:
            raise Http404
        label = series.label(len(images))
        DocumentDownload.objects.create(
            series=series,
            document_name=f"Series: {label}",
            inquiry=series.inquiry,
            user=request.user,
        )
        folder = sanitise_filename(label).replace(",", "")
        response = StreamingHttpResponse(zipped(images, folder), content_type="application/zip")
        response["Content-Disposition"] = content_disposition_header(
            True, f"{series.inquiry.reference} {folder}.zip"
        )
        response["Cache-Control"] = "no-store"
        response["X-Content-Type-Options"] = "nosniff"
        return response

    def download_document(self, request: HttpRequest, pk: int) -> HttpResponse:
        if not request.user.has_perm("inquiries.download_document"):
            raise PermissionDenied
        # Only a rebuilt copy is ever sent: an original is never served to anyone.
        # An unpacked ZIP file has no copy of its own to send.
        accepted = Document.objects.accepted().exclude(file="")
        document = get_object_or_404(accepted.select_related("inquiry"), pk=pk)
        stored = None
        try:
            stored = document.file.storage.open(document.file.name, "rb")
            digest = hashlib.sha256()
            for chunk in iter(lambda: stored.read(1024 * 1024), b""):
                digest.update(chunk)
        except STORAGE_ERRORS as error:
            if stored is not None:
                stored.close()
            logger.error(
                "Document %s could not be read (%s); not sent", document.pk, type(error).__name__
            )
            return self._not_sent(request, document, damaged=isinstance(error, FileNotFoundError))
        if digest.hexdigest() != document.sha256:
            stored.close()
            logger.error("Document %s failed its checksum; not sent", document.pk)
            return self._not_sent(request, document, damaged=True)
        stored.seek(0)
        DocumentDownload.objects.create(
            document=document,
            document_name=document.original_name,
            inquiry=document.inquiry,
            user=request.user,
        )
        response = FileResponse(
            stored,
            as_attachment=True,
            filename=document.download_name,
            content_type=document.content_type,
        )
        response["Cache-Control"] = "no-store"
        response["X-Content-Type-Options"] = "nosniff"
        return response
