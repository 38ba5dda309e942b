import hashlib
import logging

import phonenumbers
from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models, transaction
from django.db.models import Count, Prefetch, Q, QuerySet
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
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
    CaseEvent,
    Document,
    DocumentDownload,
    Inquiry,
    Message,
    Note,
    Notification,
    RecordKind,
    RecordRequest,
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


class CasesFilter(admin.SimpleListFilter):
    """Which cases: a coordinator's own open ones unless they choose otherwise (the list
    opens on them, see `changelist_view`)."""

    title = "cases"
    parameter_name = "cases"

    def lookups(self, request, model_admin):
        return [("mine", "My open cases"), ("open", "All open cases"), ("all", "All cases")]

    def choices(self, changelist):
        # No implicit "All": "All cases" is one of the choices, and the list opens on mine.
        for value, label in self.lookup_choices:
            yield {
                "selected": self.value() == value,
                "query_string": changelist.get_query_string({self.parameter_name: value}),
                "display": label,
            }

    def queryset(self, request, queryset):
        if self.value() == "mine":
            return queryset.open().filter(assigned_to=request.user)
        if self.value() == "open":
            return queryset.open()
        return queryset


class NewsFilter(admin.SimpleListFilter):
    title = "from the family"
    parameter_name = "news"

    def lookups(self, request, model_admin):
        return [("yes", "New from the family")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.with_news()
        return queryset


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
    fields = ["name", "kind", "file_size", "pages", "checksum", "look", "download"]
    readonly_fields = fields
    verbose_name_plural = "documents"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Document]:
        documents = super().get_queryset(request).accepted().not_in_series()
        return documents.exclude(detected_type="zip").select_related("parent")

    @admin.display(description="name")
    def name(self, document: Document) -> str:
        if document.sent_later:
            received = date_format(timezone.localtime(document.received_at), "SHORT_DATE_FORMAT")
            return f"{document.name_with_origin} (sent from the case page, {received})"
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

    @admin.display(description="preview")
    def look(self, document: Document) -> str:
        # Loaded only when opened (a lazy picture in a closed <details>), so that each
        # preview recorded is one a coordinator looked at.
        if not document.preview:
            return "–"
        what = "first page" if document.content_type == "application/pdf" else "photo"
        return format_html(
            '<details class="preview"><summary>Preview ({})</summary>'
            '<img src="{}" alt="Preview of the {} of {}" loading="lazy"></details>',
            what,
            document.get_preview_url(),
            what,
            document.original_name,
        )

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
        # What the headers say of the series, as text: the summary staff see in place.
        facts = [
            ("Modality", series.modality),
            ("Study", series.study_description),
            ("Series", series.series_description),
            ("Body part", series.body_part),
            (
                "Study date",
                date_format(series.study_date, "DATE_FORMAT") if series.study_date else "",
            ),
        ]
        return format_html(
            '{}<dl class="series-summary">{}</dl>',
            series.label(series.image_count),
            format_html_join("", "<dt>{}</dt><dd>{}</dd>", ((k, v) for k, v in facts if v)),
        )

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


class MessageInline(admin.StackedInline):
    """Messages to and from the family: written, never edited or removed. The family reads
    them on its case page; the email they get says only that there is one."""

    model = Message
    extra = 1
    can_delete = False
    fields = ["text", "written"]
    readonly_fields = ["written"]
    formfield_overrides = {
        models.TextField: {
            "label": "Write to the family",
            "widget": forms.Textarea(attrs={"rows": 4}),
        }
    }
    verbose_name = "message"
    verbose_name_plural = "messages with the family (the family reads these on its case page)"

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        return super().get_queryset(request).select_related("author", "link")

    @admin.display(description="written")
    def written(self, message: Message) -> str:
        if message.pk is None:
            return "Now, by you. The family gets an email saying there is a new message."
        written = date_format(timezone.localtime(message.sent_at), "DATETIME_FORMAT")
        if message.sender == Message.Sender.FAMILY:
            via = f", through {message.link}" if message.link else ""
            return f"{written} by the family{via}"
        return f"{written} by {message.author.get_username()}"


class RecordRequestForm(forms.ModelForm):
    """A new request names the record; one made before keeps its words, only its state
    moves."""

    class Meta:
        model = RecordRequest
        fields = ["kind", "description", "state"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["kind"].disabled = True
            self.fields["description"].disabled = True
        else:
            self.fields["kind"].queryset = RecordKind.objects.filter(active=True)
            self.fields["state"].disabled = True

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("kind")
        if (
            not self.instance.pk
            and kind
            and kind.needs_description
            and not cleaned.get("description")
        ):
            raise ValidationError({"description": f"Say which record you need ({kind.name})."})
        return cleaned


class RecordRequestInline(admin.TabularInline):
    model = RecordRequest
    form = RecordRequestForm
    extra = 2
    can_delete = False
    fields = ["kind", "description", "state", "asked"]
    readonly_fields = ["asked"]
    verbose_name = "record requested from the family"
    verbose_name_plural = (
        "records requested from the family (asking sets the case to “Awaiting records” "
        "and emails the family a notice)"
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[RecordRequest]:
        related = ["kind", "requested_by", "state_changed_by"]
        return super().get_queryset(request).select_related(*related)

    @admin.display(description="asked and answered")
    def asked(self, request_: RecordRequest) -> str:
        if request_.pk is None:
            return "–"
        asked = date_format(timezone.localtime(request_.requested_at), "SHORT_DATETIME_FORMAT")
        text = f"Asked {asked} by {request_.requested_by.get_username()}"
        if request_.state_changed_at:
            when = date_format(
                timezone.localtime(request_.state_changed_at), "SHORT_DATETIME_FORMAT"
            )
            who = (
                request_.state_changed_by.get_username()
                if request_.state_changed_by
                else "the family, sending files"
            )
            text += f"; {request_.get_state_display().lower()} {when} ({who})"
        return text


class CaseEventInline(ReadOnlyInline):
    """What the family did with its case page, and through which link."""

    model = CaseEvent
    fields = ["at", "kind", "detail", "link"]
    readonly_fields = fields
    verbose_name_plural = "the family’s use of the case page"

    def get_queryset(self, request: HttpRequest) -> QuerySet[CaseEvent]:
        return super().get_queryset(request).select_related("link")


class DownloadInline(ReadOnlyInline):
    model = DocumentDownload
    fields = ["document_name", "kind", "downloaded_by", "downloaded_at"]
    readonly_fields = fields
    verbose_name_plural = "documents downloaded or previewed"

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


class InquiryAdminForm(forms.ModelForm):
    """The case's own fields, with the checks a closing needs."""

    class Meta:
        model = Inquiry
        fields = ["status", "closed_reason", "assigned_to", "follow_up_on", "same_patient_as"]

    def clean(self):
        cleaned = super().clean()
        if CLOSE_AS_DUPLICATE in self.data:
            if not cleaned.get("same_patient_as"):
                self.add_error("same_patient_as", "Choose the earlier inquiry this one duplicates.")
            cleaned["status"] = Inquiry.Status.CLOSED
            cleaned["closed_reason"] = Inquiry.ClosedReason.DUPLICATE
            self.instance.status = Inquiry.Status.CLOSED
            self.instance.closed_reason = Inquiry.ClosedReason.DUPLICATE
        earlier = cleaned.get("same_patient_as")
        if earlier is not None and earlier.pk == self.instance.pk:
            self.add_error("same_patient_as", "An inquiry cannot be a duplicate of itself.")
        elif earlier is not None and earlier.same_patient_as_id == self.instance.pk:
            self.add_error(
                "same_patient_as", f"{earlier} is already linked to this one, the other way."
            )
        return cleaned

    def has_changed(self) -> bool:
        return super().has_changed() or CLOSE_AS_DUPLICATE in self.data


CLOSE_AS_DUPLICATE = "_close_duplicate"


@admin.register(Inquiry)
class InquiryAdmin(SimpleHistoryAdmin):
    form = InquiryAdminForm
    list_display = [
        "reference",
        "received",
        "news",
        "patient_name",
        "condition",
        "country_code",
        "reply_language",
        "status",
        "assigned_to",
        "follow_up",
        "documents",
        "emails",
    ]
    list_filter = [
        CasesFilter,
        NewsFilter,
        "status",
        "diagnosis",
        "language",
        AssignedFilter,
        FollowUpFilter,
        EmailFilter,
    ]
    search_fields = ["reference", "patient_name", "email"]
    date_hierarchy = "received_at"
    list_select_related = ["assigned_to"]
    list_per_page = 50
    save_on_top = True
    autocomplete_fields = ["same_patient_as"]
    readonly_fields = [
        *SUBMITTED_FIELDS,
        "phone_number",
        "closed_at",
        "workflow_history",
        "later",
        "withdrawal",
    ]
    fieldsets = [
        (
            "Case handling",
            {
                "fields": [
                    ("status", "closed_reason"),
                    ("assigned_to", "follow_up_on"),
                    ("same_patient_as", "later"),
                    "withdrawal",
                ]
            },
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
        MessageInline,
        RecordRequestInline,
        DocumentInline,
        SeriesInline,
        ArchiveInline,
        UncheckedDocumentInline,
        NoteInline,
        CaseEventInline,
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
    history_list_display = []
    object_history_list_template = "admin/inquiries/inquiry/history_list.html"
    change_form_template = "admin/inquiries/inquiry/change_form.html"

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

    @admin.display(description="news", ordering="-news_from_family_at")
    def news(self, inquiry: Inquiry) -> str:
        if inquiry.news_from_family_at is None:
            return ""
        return format_html('<strong class="news">{}</strong>', "New from the family")

    @admin.display(description="language", ordering="language")
    def reply_language(self, inquiry: Inquiry) -> str:
        label = inquiry.get_language_display()
        return label.split(" (")[0] if inquiry.language != "other" else "Other (see message)"

    @admin.display(description="later inquiries about the same patient")
    def later(self, inquiry: Inquiry) -> str:
        later = inquiry.later_inquiries.order_by("received_at")
        return (
            format_html_join(
                ", ",
                '<a href="{}">{}</a> ({})',
                ((i.get_admin_url(), i.reference, i.get_status_display()) for i in later),
            )
            or "–"
        )

    @admin.display(description="consent withdrawal")
    def withdrawal(self, inquiry: Inquiry) -> str:
        if inquiry.withdrawal_asked_at is None:
            return "Not asked for"
        asked = date_format(timezone.localtime(inquiry.withdrawal_asked_at), "DATETIME_FORMAT")
        return format_html(
            '<strong class="overdue">Asked for on {} from the case page.</strong> Close the '
            "case (“Closed at the family’s request”) and erase it: "
            "<code>manage.py erase_inquiry {}</code>",
            asked,
            inquiry.reference,
        )

    def changelist_view(self, request: HttpRequest, extra_context=None):
        # A coordinator's day starts with their own open cases; every other view is a click
        # away in the "cases" filter.
        if request.method == "GET" and not request.GET:
            return HttpResponseRedirect(f"{request.path}?{CasesFilter.parameter_name}=mine")
        return super().changelist_view(request, extra_context)

    def change_view(self, request: HttpRequest, object_id, form_url="", extra_context=None):
        response = super().change_view(request, object_id, form_url, extra_context)
        if request.method == "GET" and response.status_code == 200:
            # The coordinator has the case in front of them: its news is seen.
            Inquiry.objects.filter(pk=object_id).update(news_from_family_at=None)
        return response

    def save_model(self, request: HttpRequest, inquiry: Inquiry, form, change: bool) -> None:
        if change and not form.has_changed():
            # Only a note was added: the case itself did not change, so no history entry.
            return
        changes = []
        closing = CLOSE_AS_DUPLICATE in request.POST
        if closing or "status" in form.changed_data or "closed_reason" in form.changed_data:
            inquiry.stamp_closing()
            changes.append(inquiry.status_change_reason())
        if "assigned_to" in form.changed_data:
            changes.append(f"Assigned to {inquiry.assigned_to or 'nobody'}")
        if "follow_up_on" in form.changed_data:
            changes.append(f"Follow up on {inquiry.follow_up_on or 'no date'}")
        if "same_patient_as" in form.changed_data:
            changes.append(f"Same patient as {inquiry.same_patient_as or 'no other inquiry'}")
        inquiry._change_reason = "; ".join(changes)
        super().save_model(request, inquiry, form, change)

    def save_formset(self, request: HttpRequest, form, formset, change: bool) -> None:
        if formset.model is Note:
            for note in formset.save(commit=False):
                note.author = request.user
                note.save()
        elif formset.model is Message:
            for message in formset.save(commit=False):
                message.sender = Message.Sender.COORDINATOR
                message.author = request.user
                message.save()
                form.family_news = True
        elif formset.model is RecordRequest:
            now = timezone.now()
            for record in formset.save(commit=False):
                if record.pk is None:
                    record.requested_by = request.user
                    form.records_asked = getattr(form, "records_asked", 0) + 1
                    form.family_news = True
                else:
                    record.state_changed_by = request.user
                    record.state_changed_at = now
                record.save()
        else:
            formset.save()

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        inquiry = form.instance
        inquiry.await_records(getattr(form, "records_asked", 0))
        if getattr(form, "family_news", False):
            # One email for all that was written and asked in this save: a notice and a
            # fresh link, never the words (sent once the save is committed).
            inquiry.notify_family()

    @admin.action(description="Assign to me", permissions=["change"])
    def assign_to_me(self, request: HttpRequest, queryset: QuerySet[Inquiry]) -> None:
        lines = []
        for inquiry in queryset.select_related("assigned_to"):
            before = inquiry.assigned_to
            if before == request.user:
                lines.append(f"{inquiry} was already yours")
                continue
            inquiry.assign(to=request.user)
            lines.append(f"{inquiry}: was {before.get_username() if before else 'unassigned'}")
        self.message_user(request, "Assigned to you. " + "; ".join(lines) + ".")

    def _set_status(self, request, queryset, status: str) -> None:
        """Never reopens a closed case (nor wipes why it was closed): those are skipped, and
        named."""
        changed, closed = [], []
        with transaction.atomic():
            for inquiry in queryset:
                if inquiry.is_closed:
                    closed.append(inquiry.reference)
                elif inquiry.status != status:
                    inquiry.set_status(status)
                    changed.append(inquiry)
        label = Inquiry.Status(status).label
        self.message_user(request, f"{inquiries(len(changed))} marked “{label}”.")
        if closed:
            self.message_user(
                request,
                f"{inquiries(len(closed))} left as they were because they are closed: "
                f"{', '.join(closed)}. Open a closed case to change it.",
                messages.WARNING,
            )

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
        owed = Notification.objects.owed().filter(inquiry__in=queryset)
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

    # The history page: each change in words, with accounts by name and no links (a
    # coordinator may not open user accounts, and a link that answers 403 is no help).
    HISTORY_FIELDS = ["status", "closed_reason", "assigned_to", "follow_up_on", "same_patient_as"]

    def set_history_delta_changes(self, request, historical_records, foreign_keys_are_objs=True):
        records = list(historical_records)
        user_ids = {r.history_user_id for r in records} | {r.assigned_to_id for r in records}
        names = dict(
            get_user_model().objects.filter(pk__in=user_ids - {None}).values_list("pk", "username")
        )
        linked = {r.same_patient_as_id for r in records} - {None}
        references = dict(Inquiry.objects.filter(pk__in=linked).values_list("pk", "reference"))

        def shown(record, field: str) -> str:
            if field == "status":
                return record.get_status_display()
            if field == "closed_reason":
                return record.get_closed_reason_display() or "none"
            if field == "assigned_to":
                pk = record.assigned_to_id
                return "nobody" if pk is None else names.get(pk, "a removed account")
            if field == "follow_up_on":
                day = record.follow_up_on
                return date_format(day, "DATE_FORMAT") if day else "no date"
            pk = record.same_patient_as_id
            return "no other inquiry" if pk is None else references.get(pk, "an erased inquiry")

        labels = {name: Inquiry._meta.get_field(name).verbose_name for name in self.HISTORY_FIELDS}
        for current, older in zip(records, [*records[1:], None], strict=True):
            if current.history_user_id is not None:
                current.who = names.get(current.history_user_id, "a removed account")
            else:
                current.who = "the family (form)" if current.history_type == "+" else "the site"
            current.when = date_format(
                timezone.localtime(current.history_date), "SHORT_DATETIME_FORMAT"
            )
            if older is None:
                current.readable_changes = [
                    (labels[f], "", shown(current, f)) for f in ("status", "assigned_to")
                ]
                continue
            current.readable_changes = [
                (labels[f], shown(older, f), shown(current, f))
                for f in self.HISTORY_FIELDS
                if shown(older, f) != shown(current, f)
            ]

    def history_form_view(self, request, object_id, version_id, extra_context=None):
        # History is for reading: django-simple-history only hides the revert button, and
        # would still rewrite the case from a POST. A case changes through its own form.
        if request.method not in ("GET", "HEAD"):
            raise PermissionDenied
        return super().history_form_view(request, object_id, version_id, extra_context)

    def get_urls(self):
        download = self.admin_site.admin_view(self.download_document)
        download_series = self.admin_site.admin_view(self.download_series)
        preview = self.admin_site.admin_view(self.preview_document)
        return [
            path(
                "document/<int:pk>/preview/",
                preview,
                name="inquiries_document_preview",
            ),
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

    def preview_document(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The small picture the worker made of a photo or a PDF's first page; each one
        opened is recorded, as a download is."""
        if not request.user.has_perm("inquiries.download_document"):
            raise PermissionDenied
        accepted = Document.objects.accepted().exclude(preview="")
        document = get_object_or_404(accepted.select_related("inquiry"), pk=pk)
        try:
            with document.preview.storage.open(document.preview.name, "rb") as stored:
                picture = stored.read(2 * 1024 * 1024)
        except STORAGE_ERRORS as error:
            logger.error("Preview of %s could not be read (%s)", document.pk, type(error).__name__)
            return self._not_sent(request, document, damaged=isinstance(error, FileNotFoundError))
        DocumentDownload.objects.create(
            document=document,
            document_name=document.original_name,
            inquiry=document.inquiry,
            user=request.user,
            kind=DocumentDownload.Kind.PREVIEW,
        )
        response = HttpResponse(picture, content_type="image/jpeg")
        response["Cache-Control"] = "no-store"
        response["X-Content-Type-Options"] = "nosniff"
        return response

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


@admin.register(RecordKind)
class RecordKindAdmin(admin.ModelAdmin):
    """The records coordinators may ask for: theirs to add to, reorder and retire (a kind
    already asked for is kept, since requests name it)."""

    list_display = ["name", "needs_description", "active", "position"]
    list_editable = ["active", "position"]
    ordering = ["position", "name"]

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return obj is None or not obj.recordrequest_set.exists()
