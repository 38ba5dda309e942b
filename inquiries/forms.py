import logging
import re
import unicodedata
import uuid

import phonenumbers
from crispy_forms.helper import FormHelper
from crispy_forms.layout import HTML, Field, Fieldset, Layout
from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import DatabaseError, transaction
from django.db.models import Sum
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from .documents.messages import refusal
from .documents.types import HEAD_BYTES, detect, sanitise_filename
from .documents.uploads import FolderMember
from .models import (
    CONSENT_TEXT,
    CONSENT_VERSION,
    STORAGE_ERRORS,
    CaseEvent,
    CaseLink,
    Document,
    HeldFile,
    Inquiry,
    Message,
    Notification,
    RecordRequest,
    quarantine_path,
    quarantine_storage,
)

logger = logging.getLogger(__name__)


def _delete_from_quarantine(names: list[str]) -> None:
    """Deletes files stored for rows that were rolled back, each on its own: a store failing
    now must not keep the others (the orphan sweep reports one that stays)."""
    for name in names:
        try:
            quarantine_storage.delete(name)
        except STORAGE_ERRORS as error:
            logger.error("A file of a sending not stored stayed (%s)", type(error).__name__)


def one_line(value: str) -> None:
    # Names and addresses end up in email headers and in the admin list: a line break in
    # them is either a mistake or an attempt to inject something.
    if "\r" in value or "\n" in value:
        raise ValidationError("Please write this on one line.", code="line_break")


# One ordinary mailbox, name@example.org. The standards allow far more: a quoted name may
# hold commas, spaces or a second address ("a@x.org, b@y.org"@z.org), and an address may
# name a bare IP (x@[127.0.0.1]) or a local host. Mail software disagrees about all of it,
# and a receipt must reach exactly one inbox.
ORDINARY_MAILBOX = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[^\s@\[\]\"(),;:<>\\]+\.[^\s@\[\]\"(),;:<>\\.]+"
)


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class FolderInput(MultipleFileInput):
    """The browser's folder picker, where it has one; elsewhere, a file picker."""

    def __init__(self, attrs=None):
        super().__init__({"webkitdirectory": True, **(attrs or {})})


class DocumentsField(forms.FileField):
    """The files as they arrived; the form says what is wrong with any of them, all at once."""

    widget = MultipleFileInput

    def clean(self, data, initial=None):
        return data if isinstance(data, list | tuple) else [data] if data else []


class DocumentFields(forms.Form):
    """The files a family sends, with the first form or later from the case page: the same
    fields, checks, limits and messages for both, and the files that passed kept in
    quarantine while the rest of the form is put right."""

    # No `accept` filter: the files of a scan disc have no extension, and a filter would
    # hide them. What a file is, its bytes say.
    documents = DocumentsField(label="Choose the files", required=False)
    folder = DocumentsField(
        label="Or choose the folder of a scan disc",
        required=False,
        widget=FolderInput,
        help_text="All the files in the folder are sent as one, as if you had made a ZIP "
        "file of it.",
    )
    submission_id = forms.UUIDField(widget=forms.HiddenInput)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Files that passed on an earlier try of this same sending, kept for it.
        self.held_files: list[HeldFile] = []
        self._passed: list[UploadedFile] = []
        submission = self._submission_id()
        if submission is not None:
            self.held_files = list(HeldFile.objects.current(submission))
        mb = 1024 * 1024
        self.fields["documents"].help_text = (
            f"1 to {settings.DOCUMENT_MAX_FILES} files: PDF, photos (JPEG, PNG, or HEIC from an "
            "iPhone), scans (TIFF, or DICOM from a scan disc), or a ZIP file of a scan disc. Up "
            f"to {settings.DOCUMENT_MAX_BYTES // mb} MB each and "
            f"{settings.DOCUMENTS_MAX_TOTAL_BYTES // mb} MB in all; a ZIP file up to "
            f"{filesizeformat(settings.DOCUMENT_ARCHIVE_MAX_BYTES)}. Photos of paper reports "
            "are fine if every word can be read."
        )

    def _submission_id(self) -> uuid.UUID | None:
        if not self.is_bound:
            return None
        try:
            return uuid.UUID(str(self.data.get("submission_id", "")))
        except ValueError:
            return None

    def dropped(self) -> set[int]:
        """The held files the family ticked to remove ("drop_held" checkboxes, which the
        template draws beside each; an id not held for this sending means nothing)."""
        try:
            return {int(pk) for pk in self.data.getlist("drop_held")}
        except (AttributeError, ValueError):
            return set()

    def kept_held(self) -> list[HeldFile]:
        dropped = self.dropped()
        return [held for held in self.held_files if held.pk not in dropped]

    def clean_folder(self) -> list[UploadedFile]:
        """The chosen folder, as the one ZIP file its files were written into."""
        members = [m for m in self.cleaned_data["folder"] if isinstance(m, FolderMember)]
        if not members:
            return []
        folder = members[0].archive.received()
        folder.kind, folder.is_folder = "zip", True
        return [folder]

    def clean_documents(self) -> list[UploadedFile]:
        """What can be known of the files at once: their number, sizes and types (from
        their first bytes). Opening them is left to the sandbox, after sending."""
        uploads = self.cleaned_data["documents"]
        if len(uploads) + len(self.kept_held()) > settings.DOCUMENT_MAX_FILES:
            raise ValidationError(
                f"Please choose at most {settings.DOCUMENT_MAX_FILES} files. If you have more, "
                "send the most recent reports now; we can ask for the rest later.",
                code="too_many",
            )
        errors = []
        for upload in uploads:
            if problem := self._upload_problem(upload):
                upload.close()
                errors.append(ValidationError(problem, code="document"))
            else:
                self._passed.append(upload)
        if errors:
            raise ValidationError(errors)
        return uploads

    def uploads(self) -> list[UploadedFile]:
        """Every file to store: those chosen, and the chosen folder as a ZIP file."""
        cleaned = getattr(self, "cleaned_data", None) or {}
        return [*(cleaned.get("documents") or []), *(cleaned.get("folder") or [])]

    @staticmethod
    def _upload_problem(upload: UploadedFile) -> str | None:
        name = sanitise_filename(upload.name or "")
        upload.shown_name = name
        if getattr(upload, "over", ""):
            return refusal(upload.over, name)
        if not upload.size:
            return refusal("empty", name)
        head = getattr(upload, "head", None)
        if head is None:
            upload.seek(0)
            head = upload.read(HEAD_BYTES)
        detected = detect(name, head)
        if detected.kind is None:
            logger.info("Document refused at once (%s)", detected.looks_like or "unknown type")
            return refusal("type", name, looks_like=detected.looks_like)
        # What arrived under a ZIP file's larger limits must be one.
        if detected.kind != "zip" and upload.size > settings.DOCUMENT_MAX_BYTES:
            return refusal("too_large", name)
        upload.kind = detected.kind
        return None

    # The first form needs a report; a reply from the case page may be words alone.
    files_required = True

    def clean(self):
        cleaned = super().clean()
        self.clean_files(cleaned)
        return cleaned

    def has_files(self) -> bool:
        return bool(self.uploads() or self.kept_held())

    def clean_files(self, cleaned: dict) -> None:
        folder = cleaned.get("folder") or []
        for upload in folder:
            # A ZIP file the form made: only its size can be wrong.
            upload.shown_name = upload.name
            if upload.over:
                upload.close()
                problem = refusal(upload.over, upload.name)
                self.add_error("folder", ValidationError(problem, code="document"))
            else:
                self._passed.append(upload)
        kept = self.kept_held()
        held_bytes = sum(held.received_size for held in kept if held.detected_type != "zip")
        new_bytes = sum(upload.size for upload in self.uploads() if upload.kind != "zip")
        if kept and held_bytes + new_bytes > settings.DOCUMENTS_MAX_TOTAL_BYTES:
            self.add_error(
                "documents",
                ValidationError(
                    f"Together your files are larger than "
                    f"{settings.DOCUMENTS_MAX_TOTAL_BYTES // (1024 * 1024)} MB. Please remove "
                    "one of the files kept from your last try, or send fewer now.",
                    code="too_large_total",
                ),
            )
        no_files = "documents" in cleaned and "folder" in cleaned and not self.has_files()
        if self.files_required and no_files:
            self.add_error(
                "documents",
                ValidationError(
                    "Please choose at least one medical report to send.", code="required"
                ),
            )

    def error_summary(self) -> list[tuple[str, str]]:
        """(link target, message) for every problem, in the order the form shows the fields,
        for the list at the top of the page."""
        summary = [("", message) for message in self.non_field_errors()]
        in_page_order = [pointer.name for pointer in self.helper.layout.get_field_names()]
        for name in sorted(
            (name for name in self.errors if name != "__all__"), key=in_page_order.index
        ):
            field = self[name]
            anchor = field.id_for_label or f"{field.auto_id}_0"
            summary += [(anchor, message) for message in self.errors[name]]
        return summary

    def discard_documents(self, uploads: list[UploadedFile] | None = None) -> None:
        """Closes the received files (they leave nothing on disk)."""
        if uploads is None:
            uploads = [*self.uploads(), *self._passed]
        for upload in uploads:
            upload.close()

    @staticmethod
    def _may_hold(submission: uuid.UUID, passed: list[UploadedFile], client: str) -> bool:
        """Whether holding these files keeps this sending within what one inquiry may
        carry (tries that come back again and again do not pile up), and all the files
        held within HELD_FILES_MAX_BYTES."""
        # A folder chosen again replaces the one held before.
        again = any(getattr(upload, "is_folder", False) for upload in passed)
        held = [
            (h.detected_type, h.received_size)
            for h in HeldFile.objects.current(submission)
            if not (again and h.is_folder)
        ]
        kept = held + [(upload.kind, upload.size) for upload in passed]
        zipped = sum(size for kind, size in kept if kind == "zip")
        others = sum(size for kind, size in kept if kind != "zip")
        in_all = HeldFile.objects.aggregate(total=Sum("received_size"))["total"] or 0
        theirs = HeldFile.objects.recent().filter(client=client).exclude(submission_id=submission)
        theirs = theirs.aggregate(total=Sum("received_size"))["total"] or 0
        incoming = sum(upload.size for upload in passed)
        return (
            len(kept) <= settings.DOCUMENT_MAX_FILES + 1  # and a folder
            and zipped <= settings.DOCUMENT_ARCHIVE_MAX_BYTES
            and others <= settings.DOCUMENTS_MAX_TOTAL_BYTES
            and in_all + incoming <= settings.HELD_FILES_MAX_BYTES
            and theirs + zipped + others <= settings.HELD_FILES_PER_CLIENT_BYTES
        )

    def hold_files(self, client: str = "") -> None:
        """The form came back with a problem: the files that passed are kept in quarantine
        with this sending (all of them or none), and shown as kept when the form is shown
        again. Nothing is an inquiry's yet."""
        submission = self._submission_id()
        passed = list({id(upload): upload for upload in self._passed}.values())
        if self.has_error("website"):
            passed = []  # a bot's: nothing of it is kept
        if submission is None or not passed or not self._may_hold(submission, passed, client):
            self.discard_documents()
            return
        stored: list[str] = []
        try:
            with transaction.atomic():
                if any(getattr(upload, "is_folder", False) for upload in passed):
                    for held in HeldFile.objects.current(submission).filter(is_folder=True):
                        held.release()
                for upload in passed:
                    upload.seek(0)
                    name = quarantine_storage.save(quarantine_path(), upload.file)
                    stored.append(name)
                    HeldFile.objects.create(
                        submission_id=submission,
                        original_name=upload.shown_name,
                        detected_type=upload.kind,
                        received_size=upload.size,
                        quarantine_name=name,
                        is_folder=getattr(upload, "is_folder", False),
                        client=client,
                    )
        except (DatabaseError, *STORAGE_ERRORS) as error:
            # The family is asked to choose them again, as before; nothing stays.
            logger.error("Files of an unfinished sending not kept: %s", type(error).__name__)
            _delete_from_quarantine(stored)
        finally:
            self.held_files = list(HeldFile.objects.current(submission))
            self.discard_documents()

    def store_documents(self, inquiry: Inquiry, stored: list[str], **fields) -> int:
        """Within the caller's transaction: the documents of this sending, kept from an
        earlier try or just received, as the inquiry's, waiting in quarantine. The names
        written to the quarantine are added to `stored` (for the caller to delete if the
        transaction fails). Returns how many."""
        count = 0
        for held in self.kept_held():
            # Kept from an earlier try: already in quarantine, now this inquiry's.
            Document.objects.create(
                inquiry=inquiry,
                original_name=held.original_name,
                detected_type=held.detected_type,
                received_size=held.received_size,
                quarantine_name=held.quarantine_name,
                **fields,
            )
            held.delete()
            count += 1
        for held in self.held_files:
            if held.pk in self.dropped():
                held.release()
        for upload in self.uploads():
            upload.seek(0)
            name = quarantine_storage.save(quarantine_path(), upload.file)
            stored.append(name)
            Document.objects.create(
                inquiry=inquiry,
                original_name=upload.shown_name,
                detected_type=upload.kind,
                received_size=upload.size,
                quarantine_name=name,
                **fields,
            )
            count += 1
        return count


class InquiryForm(DocumentFields, forms.ModelForm):
    writer = forms.ChoiceField(
        label="Who is writing?",
        choices=Inquiry.Writer,
        widget=forms.RadioSelect,
        error_messages={"required": "Please tell us who is writing."},
    )
    acting_for_patient_confirmed = forms.BooleanField(
        label="I confirm that the patient has agreed that I may contact CancerFax for them, "
        "or that I am legally allowed to act for them.",
        help_text="Only if you are writing for the patient.",
        required=False,
    )
    birth_year = forms.TypedChoiceField(
        label="Patient’s year of birth", coerce=int, empty_value=None
    )
    consent = forms.BooleanField(
        required=True,
        error_messages={
            "required": "We can only look at the patient’s case if you agree to this. Please "
            "tick the box."
        },
    )
    # Left empty by people, filled in by bots that fill every field they find.
    website = forms.CharField(required=False, label="Leave this field empty")

    class Meta:
        model = Inquiry
        fields = [
            "writer",
            "writer_name",
            "acting_for_patient_confirmed",
            "patient_name",
            "birth_year",
            "country",
            "email",
            "phone",
            "diagnosis",
            "treatment_so_far",
            "question",
            "language",
        ]
        labels = {
            "writer_name": "Your name",
            "patient_name": "Patient’s full name",
            "email": "Your email address",
            "phone": "Phone number (optional)",
            "diagnosis": "Diagnosis",
            "treatment_so_far": "Treatment so far",
            "question": "Your question",
            "language": "Language you would like us to reply in",
        }
        help_texts = {
            "writer_name": "Only if you are writing for the patient.",
            "country": "Where the patient lives now.",
            "email": "We will send our reply and your reference number here.",
            "phone": "With the country code, for example +44 20 7946 0000.",
            "treatment_so_far": "The treatments the patient has had, and roughly when. "
            "A short list is fine.",
            "question": "What would you like to know? For example, whether CAR-T could be an "
            "option.",
        }
        widgets = {
            "phone": forms.TextInput(attrs={"type": "tel"}),
            "treatment_so_far": forms.Textarea(attrs={"rows": 4}),
            "question": forms.Textarea(attrs={"rows": 4}),
        }
        error_messages = {
            "patient_name": {"required": "Please tell us the patient’s name."},
            "country": {"required": "Please choose the country where the patient lives."},
            "email": {
                "required": "Please give an email address so that we can reply.",
                "invalid": "Please enter an email address like name@example.com.",
            },
            "diagnosis": {"required": "Please choose a diagnosis, or “Other, or not sure”."},
            "treatment_so_far": {
                "required": "Please tell us briefly about the treatment so far, or write "
                "“none yet”."
            },
            "question": {"required": "Please tell us what you would like to know."},
            "language": {"required": "Please choose the language you would like us to use."},
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        this_year = timezone.localdate().year
        self.fields["birth_year"].choices = [("", "Choose a year")] + [
            (year, year) for year in range(this_year, this_year - 111, -1)
        ]
        self.fields["birth_year"].error_messages["required"] = (
            "Please choose the year the patient was born."
        )
        self.fields["country"].choices = [("", "Choose a country")] + list(
            self.fields["country"].choices
        )[1:]
        self.fields["diagnosis"].choices = [("", "Choose a diagnosis")] + list(
            self.fields["diagnosis"].choices
        )[1:]
        self.fields["language"].choices = list(self.fields["language"].choices)[1:]
        self.fields["language"].initial = "en"
        for name in ("writer_name", "patient_name", "email", "phone"):
            self.fields[name].validators.append(one_line)
        for field in self.fields.values():
            if isinstance(field, forms.CharField) and field.max_length:
                field.error_messages["max_length"] = (
                    "Please shorten this to %(limit_value)d characters or fewer "
                    "(it has %(show_value)d)."
                )
        self.fields["consent"].label = CONSENT_TEXT
        privacy_link = format_html(
            '<p>Please read our <a href="{}" target="_blank" rel="noopener">privacy notice '
            "(opens in a new tab)</a>: it says who sees this information, how long we keep it "
            "and how to ask us to delete it.</p>",
            reverse("inquiries:privacy"),
        )
        self.helper = FormHelper()
        self.helper.form_tag = False
        self.helper.disable_csrf = True  # the template's form has its own token
        self.helper.layout = Layout(
            Fieldset(
                "About you",
                Field("writer"),
                Field("writer_name", autocomplete="name"),
                Field("acting_for_patient_confirmed"),
                Field("email", autocomplete="email"),
                Field("phone", autocomplete="tel"),
            ),
            Fieldset(
                "About the patient",
                Field("patient_name", autocomplete="off"),
                Field("birth_year"),
                Field("country"),
                Field("diagnosis"),
                Field("treatment_so_far"),
                Field("question"),
                Field("language"),
            ),
            Fieldset(
                "Medical reports",
                HTML('{% include "inquiries/held_files.html" %}'),
                Field("documents"),
                Field("folder", wrapper_class="folder-picker"),
            ),
            Fieldset("Your agreement", HTML(privacy_link), Field("consent")),
            Field("website", wrapper_class="trap", autocomplete="off", tabindex="-1"),
            Field("submission_id"),
        )

    def clean_phone(self) -> str:
        value = self.cleaned_data["phone"].strip()
        if not value:
            return ""
        message = (
            "Please enter the phone number with its country code, for example +44 20 7946 0000."
        )
        try:
            number = phonenumbers.parse(value, None)
        except phonenumbers.NumberParseException:
            raise ValidationError(message, code="invalid") from None
        if not phonenumbers.is_valid_number(number):
            raise ValidationError(message, code="invalid")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)

    def clean_email(self) -> str:
        email = self.cleaned_data["email"]
        # Invisible characters (a zero-width space, say) would be stored and shown, while
        # the mail went elsewhere.
        hidden = any(unicodedata.category(char)[0] in "CZ" for char in email)
        if hidden or not ORDINARY_MAILBOX.fullmatch(email):
            raise ValidationError(
                "Please enter one email address, like name@example.com, with no spaces, "
                "quotes, commas or brackets.",
                code="invalid",
            )
        return email

    def clean_website(self) -> str:
        if self.cleaned_data["website"]:
            logger.info("Inquiry refused: the bot trap field was filled in")
            raise ValidationError("Please leave this field empty.", code="bot")
        return ""

    def clean_treatment_so_far(self) -> str:
        return self.cleaned_data["treatment_so_far"].replace("\r\n", "\n")

    def clean_question(self) -> str:
        return self.cleaned_data["question"].replace("\r\n", "\n")

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("writer") == Inquiry.Writer.FAMILY:
            if not cleaned.get("writer_name"):
                self.add_error("writer_name", "Please tell us your name.")
            if not cleaned.get("acting_for_patient_confirmed"):
                self.add_error(
                    "acting_for_patient_confirmed",
                    "Please confirm that you may contact us for the patient.",
                )
        return cleaned

    def save(self, commit: bool = True) -> Inquiry:
        """Stores the inquiry, its documents in quarantine and the emails it owes, all or
        nothing. The documents are then checked by a worker (`queue_checks`)."""
        inquiry = super().save(commit=False)
        inquiry.submission_id = self.cleaned_data["submission_id"]
        inquiry.consent_version = CONSENT_VERSION
        inquiry.consent_text = CONSENT_TEXT
        inquiry.consent_given_at = timezone.now()
        stored: list[str] = []
        try:
            with transaction.atomic():
                inquiry.save()
                self.store_documents(inquiry, stored)
                Notification.objects.bulk_create(
                    Notification(inquiry=inquiry, kind=kind)
                    for kind in (Notification.Kind.RECEIPT, Notification.Kind.NEW_INQUIRY)
                )
        except BaseException:
            # Nothing half-stored: the rows are rolled back, and the files written so far go.
            _delete_from_quarantine(stored)
            raise
        finally:
            self.discard_documents()
        return inquiry


class CaseReplyForm(DocumentFields):
    """What a family sends from its case page: a message, more documents, or both, with
    the same checks, limits and messages as the first form."""

    files_required = False

    text = forms.CharField(
        label="Your message (optional if you send files)",
        required=False,
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 5}),
    )
    covers = forms.ModelMultipleChoiceField(
        label="Which of the records we asked for are in these files?",
        help_text="Tick what you are sending now, so that the coordinator knows.",
        queryset=RecordRequest.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )

    def __init__(self, *args, inquiry: Inquiry, **kwargs):
        super().__init__(*args, **kwargs)
        self.inquiry = inquiry
        self.fields["text"].error_messages["max_length"] = (
            "Please shorten your message to %(limit_value)d characters or fewer "
            "(it has %(show_value)d)."
        )
        outstanding = inquiry.record_requests.outstanding().select_related("kind")
        self.fields["covers"].queryset = outstanding
        self.fields["covers"].label_from_instance = lambda request: request.label
        if not outstanding.exists():
            del self.fields["covers"]
        self.fields["documents"].label = "Add files"
        self.helper = FormHelper()
        self.helper.form_tag = False
        self.helper.disable_csrf = True
        self.helper.layout = Layout(
            Field("text"),
            HTML('{% include "inquiries/held_files.html" %}'),
            Field("documents"),
            Field("folder", wrapper_class="folder-picker"),
            *([Field("covers")] if "covers" in self.fields else []),
            Field("submission_id"),
        )

    def clean_text(self) -> str:
        return self.cleaned_data["text"].replace("\r\n", "\n").strip()

    def clean(self):
        cleaned = super().clean()
        if "text" in cleaned and not cleaned["text"] and not self.has_files():
            if not self.has_error("documents") and not self.has_error("folder"):
                self.add_error(
                    "text", "Please write a message or choose at least one file to send."
                )
        if cleaned.get("covers") and not self.has_files():
            self.add_error(
                "documents",
                "You ticked records you are sending: please choose the files too.",
            )
        return cleaned

    def save(self, link: "CaseLink | None") -> tuple[Message | None, int]:
        """Stores the message and the documents, all or nothing; marks the ticked records
        as received; records what was done for the coordinators and alerts them."""
        inquiry = self.inquiry
        stored: list[str] = []
        message = None
        try:
            with transaction.atomic():
                if text := self.cleaned_data["text"]:
                    message = Message.objects.create(
                        inquiry=inquiry, sender=Message.Sender.FAMILY, link=link, text=text
                    )
                    CaseEvent.objects.create(
                        inquiry=inquiry, kind=CaseEvent.Kind.MESSAGE, link=link
                    )
                count = self.store_documents(inquiry, stored, sent_later=True)
                if count:
                    covered = self.cleaned_data.get("covers") or []
                    CaseEvent.objects.create(
                        inquiry=inquiry,
                        kind=CaseEvent.Kind.DOCUMENTS,
                        link=link,
                        detail=f"{count} file{'s' if count > 1 else ''}"
                        + (f", {len(covered)} requested record(s) ticked" if covered else ""),
                    )
                    inquiry.record_requests.filter(
                        pk__in=[r.pk for r in covered]
                    ).outstanding().update(
                        state=RecordRequest.State.RECEIVED,
                        state_changed_by=None,
                        state_changed_at=timezone.now(),
                    )
                inquiry.news_from_family()
        except BaseException:
            _delete_from_quarantine(stored)
            raise
        finally:
            self.discard_documents()
        return message, count


class NewLinkForm(forms.Form):
    """A family that lost its email asks for a new link. The answer never says whether the
    reference and the address belong together."""

    reference = forms.CharField(
        label="Your reference",
        max_length=20,
        help_text="It starts with CF-, for example CF-AB23-CD45. It is in our emails to you.",
        error_messages={"required": "Please enter your reference, as in our emails."},
    )
    email = forms.EmailField(
        label="The email address you gave us",
        max_length=254,
        error_messages={
            "required": "Please enter the email address you gave us.",
            "invalid": "Please enter an email address like name@example.com.",
        },
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["reference"].widget.attrs.update(autocomplete="off", spellcheck="false")
        self.fields["email"].widget.attrs.update(autocomplete="email")
        self.helper = FormHelper()
        self.helper.form_tag = False
        self.helper.disable_csrf = True

    def clean_reference(self) -> str:
        # As people type it: lower case, spaces, the dash forgotten.
        value = re.sub(r"[\s-]", "", self.cleaned_data["reference"].upper())
        if value.startswith("CF"):
            value = value[2:]
        return f"CF-{value[:4]}-{value[4:]}" if len(value) == 8 else value

    def matching_inquiry(self) -> Inquiry | None:
        return Inquiry.objects.filter(
            reference=self.cleaned_data["reference"], email__iexact=self.cleaned_data["email"]
        ).first()
