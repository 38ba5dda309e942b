from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils import timezone
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


# Inlines follow the order of the sections on the page.
class DevelopmentInline(admin.StackedInline):
    model = Development
    extra = 0
    fields = [("name", "status", "position"), "summary"]


class ProductInline(admin.StackedInline):
    model = Product
    extra = 0
    fields = [
        ("brand_name", "generic_name", "position"),
        ("disease", "target", "first_approved"),
        "indication",
        "key_result",
    ]


class KeyNumberInline(admin.TabularInline):
    model = KeyNumber
    extra = 0
    fields = ["figure", "label", "explanation", "position"]


class BalancePointInline(admin.TabularInline):
    model = BalancePoint
    extra = 0
    fields = ["kind", "title", "text", "position"]


class FaqInline(admin.StackedInline):
    model = Faq
    extra = 0
    fields = [("question", "position"), "answer"]


class ReferenceInline(admin.TabularInline):
    model = Reference
    extra = 0
    fields = ["number", "key", "citation", "url"]


@admin.register(Guide)
class GuideAdmin(admin.ModelAdmin):
    list_display = ["title", "published", "last_reviewed", "review_due", "updated_at"]
    list_filter = ["published", ReviewStatusFilter]
    search_fields = ["title", "slug", "summary"]
    ordering = ["next_review_due"]
    prepopulated_fields = {"slug": ["title"]}
    readonly_fields = ["citation_check", "updated_at"]
    save_on_top = True

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
            "Sections",
            {
                "description": "Cite a reference anywhere with [ref:key], using the keys in "
                "the References list at the bottom of this page.",
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
        if guide.is_overdue_for_review():
            return format_html(
                '<strong class="overdue">{} (overdue)</strong>',
                guide.next_review_due.strftime("%-d %b %Y"),
            )
        return guide.next_review_due.strftime("%-d %b %Y")

    @admin.display(description="Citations")
    def citation_check(self, guide: Guide) -> str:
        if guide.pk is None:
            return "Checked after the first save."
        missing = guide.unresolved_citations()
        if missing:
            return "Not in the reference list: " + ", ".join(f"[ref:{key}]" for key in missing)
        return "Every citation matches a reference."

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        missing = form.instance.unresolved_citations()
        if missing:
            # Readers never see a broken marker (it is left out), but the claim then has no
            # source on the page: the editor must fix it.
            self.message_user(
                request,
                "These citations match no reference and are not shown on the page: "
                + ", ".join(f"[ref:{key}]" for key in missing),
                messages.WARNING,
            )


@admin.register(Service)
class ServiceAdmin(admin.ModelAdmin):
    list_display = ["title", "position"]
    list_editable = ["position"]
