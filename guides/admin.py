from django import forms
from django.contrib import admin, messages
from django.db import models
from django.http import HttpRequest
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html

from .models import (
    BalancePoint,
    Development,
    Faq,
    Guide,
    KeyNumber,
    Product,
    Reference,
    Service,
)


class ReviewStatusFilter(admin.SimpleListFilter):
    title = "review"
    parameter_name = "review"

    def lookups(self, request, model_admin):
        return [("overdue", "Overdue for review"), ("soon", "Due in the next 30 days")]

    def queryset(self, request, queryset):
        today = timezone.localdate()
        if self.value() == "overdue":
            return queryset.overdue_for_review(today)
        if self.value() == "soon":
            return queryset.filter(
                next_review_due__gte=today, next_review_due__lte=today + timezone.timedelta(days=30)
            )
        return queryset


class ProseField(forms.CharField):
    """Text as editors type it, with browsers' CRLF line breaks stored as plain LF, so that
    the history shows only what really changed."""

    def to_python(self, value):
        text = super().to_python(value)
        return text.replace("\r\n", "\n").replace("\r", "\n")


WIDE_FIELDS = {
    models.TextField: {"form_class": ProseField, "widget": admin.widgets.AdminTextareaWidget},
    models.CharField: {"widget": forms.TextInput(attrs={"class": "vLargeTextField"})},
}


class GuidePartInline(admin.StackedInline):
    extra = 0
    formfield_overrides = {
        **WIDE_FIELDS,
        models.TextField: {
            "form_class": ProseField,
            "widget": admin.widgets.AdminTextareaWidget(attrs={"rows": 4}),
        },
    }


# Inlines follow the order of the sections on the page.
class DevelopmentInline(GuidePartInline):
    model = Development
    fields = [("name", "status", "position"), "summary"]


class ProductInline(GuidePartInline):
    model = Product
    fields = [
        ("brand_name", "generic_name", "position"),
        ("disease", "target", "first_approved"),
        "indication",
        "key_result",
    ]


class KeyNumberInline(GuidePartInline):
    model = KeyNumber
    fields = [("figure", "position"), "label", "explanation"]


class BalancePointInline(GuidePartInline):
    model = BalancePoint
    fields = [("kind", "position"), "title", "text"]


class FaqInline(GuidePartInline):
    model = Faq
    fields = [("question", "position"), "answer"]


class ReferenceInline(GuidePartInline):
    model = Reference
    fields = [("number", "key"), "citation", "url"]


@admin.register(Guide)
class GuideAdmin(admin.ModelAdmin):
    list_display = ["title", "published", "last_reviewed", "review_due"]
    list_filter = ["published", ReviewStatusFilter]
    search_fields = ["title", "slug", "summary"]
    ordering = ["next_review_due"]
    prepopulated_fields = {"slug": ["title"]}
    readonly_fields = ["citation_check", "updated_at"]
    save_on_top = True
    formfield_overrides = WIDE_FIELDS

    class Media:
        css = {"all": ["css/admin.css"]}

    inlines = [
        DevelopmentInline,
        ProductInline,
        KeyNumberInline,
        BalancePointInline,
        FaqInline,
        ReferenceInline,
    ]
    fieldsets = [
        (
            "Publishing and review",
            {
                "fields": [
                    "published",
                    ("last_reviewed", "next_review_due"),
                    "reviewed_by",
                    "citation_check",
                    "updated_at",
                ]
            },
        ),
        (
            "Top of the page",
            {
                "fields": [
                    "title",
                    "slug",
                    "category",
                    "condition",
                    "summary",
                    "lead",
                    "at_a_glance",
                ]
            },
        ),
        (
            "Text sections",
            {
                "description": "The text parts of the page. The repeated parts (key "
                "developments, products, key numbers, benefits and limitations, questions, "
                "references) follow below, in the order the page shows them. Cite a "
                "reference anywhere with [ref:key], using the keys of the References below.",
                "fields": [
                    "patients_text",
                    "developments_intro",
                    "products_intro",
                    "products_note",
                    "relevant_for",
                    "when_to_consider",
                    "medical_disclaimer",
                ],
            },
        ),
    ]

    @admin.display(description="Next review due", ordering="next_review_due")
    def review_due(self, guide: Guide) -> str:
        due = date_format(guide.next_review_due)
        if guide.is_overdue_for_review():
            return format_html('<strong class="overdue">{} (overdue)</strong>', due)
        return due

    @admin.display(description="Citations")
    def citation_check(self, guide: Guide) -> str:
        if guide.pk is None:
            return "Checked after the first save."
        problems = guide.citation_problems()
        if problems:
            return "Not in the reference list: " + "; ".join(
                f"[ref:{key}] in {where}" for key, where in problems
            )
        return "Every citation matches a reference."

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        problems = form.instance.citation_problems()
        if problems:
            # Readers never see a broken marker (it is left out), but the claim then has no
            # source on the page: the editor must fix it.
            self.message_user(
                request,
                "These citations match no reference and are not shown on the page: "
                + "; ".join(f"[ref:{key}] in {where}" for key, where in problems),
                messages.WARNING,
            )


@admin.register(Service)
class ServiceAdmin(admin.ModelAdmin):
    list_display = ["title", "position"]
    list_editable = ["position"]
