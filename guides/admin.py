from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html

from .models import (
    BalancePoint,
    Development,
    Faq,
    Feedback,
    Guide,
    KeyNumber,
    Product,
    PublishRefused,
    Reference,
    Reviewer,
    Revision,
    Service,
    fingerprint_of,
)
from .revisions import differences


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
            return queryset.due_for_review(30, today).filter(next_review_due__gte=today)
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
        ("disease", "target", "first_approved", "first_approved_in"),
        "indication",
        "key_result",
        "harms",
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


class PublishForm(forms.Form):
    kind = forms.ChoiceField(
        label="What kind of change is this?",
        choices=Revision.Kind.choices,
        widget=forms.RadioSelect,
        help_text="A full clinical review moves “Last reviewed” and the next review date; "
        "a correction shows as “Updated” and moves neither.",
    )
    summary = forms.CharField(
        label="What changed, for readers",
        max_length=300,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Shown under “Changes to this guide”, e.g. “Updated the approvals in the "
        "EU and UK.” 300 characters at most.",
    )
    # The draft as the approver read it (Guide.fingerprint): a change since is refused.
    fingerprint = forms.CharField(widget=forms.HiddenInput)


@admin.register(Guide)
class GuideAdmin(admin.ModelAdmin):
    list_display = [
        "title",
        "revision_shown",
        "reviewed",
        "review_due",
        "draft_edited",
        "readers_said",
    ]
    list_filter = [ReviewStatusFilter]
    search_fields = ["title", "slug", "summary"]
    prepopulated_fields = {"slug": ["title"]}
    readonly_fields = ["publishing", "citation_check", "last_edited", "updated_at"]
    filter_horizontal = ["reviewers"]
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
                "description": "What you change here is a draft: readers keep getting the "
                "published revision until someone else approves and publishes the draft.",
                "fields": [
                    "publishing",
                    "reviewers",
                    "review_cycle_months",
                    "citation_check",
                    "last_edited",
                    "updated_at",
                ],
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
                    "cta_heading",
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

    def get_readonly_fields(self, request: HttpRequest, obj: Guide | None = None):
        # A published guide's address is in search engines, links and its stored pages.
        published = obj is not None and obj.revisions.exists()
        return [*self.readonly_fields, "slug"] if published else self.readonly_fields

    def get_prepopulated_fields(self, request: HttpRequest, obj: Guide | None = None):
        return {} if obj is not None and obj.revisions.exists() else self.prepopulated_fields

    def get_queryset(self, request: HttpRequest):
        return (
            super()
            .get_queryset(request)
            .with_review_dates()
            .select_related("last_edited_by")
            .annotate(
                useful=Count("feedback", filter=Q(feedback__useful=True)),
                not_useful=Count("feedback", filter=Q(feedback__useful=False)),
            )
        )

    def get_urls(self):
        return [
            path(
                "<int:pk>/publish/",
                self.admin_site.admin_view(self.publish_view),
                name="guides_guide_publish",
            ),
            *super().get_urls(),
        ]

    @admin.display(description="Published revision", ordering="current_number")
    def revision_shown(self, guide: Guide) -> str:
        return f"Revision {guide.current_number}" if guide.current_number else "Not published"

    @admin.display(description="Readers: useful / not")
    def readers_said(self, guide: Guide) -> str:
        url = reverse("admin:guides_feedback_changelist") + f"?guide__id__exact={guide.pk}"
        return format_html('<a href="{}">{} / {}</a>', url, guide.useful, guide.not_useful)

    @admin.display(description="Last reviewed", ordering="last_reviewed")
    def reviewed(self, guide: Guide) -> str:
        return date_format(guide.last_reviewed) if guide.last_reviewed else "–"

    @admin.display(description="Next review due", ordering="next_review_due")
    def review_due(self, guide: Guide) -> str:
        if guide.next_review_due is None:
            return "–"
        due = date_format(guide.next_review_due)
        if guide.next_review_due < timezone.localdate():
            return format_html('<strong class="overdue">{} (overdue)</strong>', due)
        return due

    @admin.display(description="Draft changed since publishing")
    def draft_edited(self, guide: Guide) -> str:
        if guide.last_edited_at is None or guide.updated is None:
            return "No" if guide.updated else "–"
        return "Yes" if guide.last_edited_at > guide.updated else "No"

    @admin.display(description="Last change to the draft")
    def last_edited(self, guide: Guide) -> str:
        if guide.last_edited_by is None:
            return "Loaded from the content file (no editor recorded)."
        when = date_format(timezone.localtime(guide.last_edited_at), "DATETIME_FORMAT")
        return f"{guide.last_edited_by.get_username()}, {when}"

    @admin.display(description="Publishing")
    def publishing(self, guide: Guide) -> str:
        if guide.pk is None:
            return "Save the draft first."
        preview = reverse("guides:preview", kwargs={"slug": guide.slug})
        publish = reverse("admin:guides_guide_publish", kwargs={"pk": guide.pk})
        return format_html(
            '<a href="{}">Preview the draft as readers would see it</a> · '
            '<a href="{}">Compare with the published page and publish</a>',
            preview,
            publish,
        )

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
        if form.has_changed() or any(formset.has_changed() for formset in formsets):
            form.instance.mark_edited(request.user)
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

    def publish_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        guide = get_object_or_404(Guide.objects.with_content(), pk=pk)
        if not self.has_view_permission(request, guide):
            raise PermissionDenied
        may_publish = request.user.has_perm("guides.publish_guide")
        snapshot = guide.snapshot()
        form = PublishForm(request.POST or None, initial={"fingerprint": fingerprint_of(snapshot)})
        if request.method == "POST" and form.is_valid():
            try:
                revision = guide.publish(
                    request.user,
                    kind=form.cleaned_data["kind"],
                    summary=form.cleaned_data["summary"],
                    fingerprint=form.cleaned_data["fingerprint"],
                )
            except PublishRefused as refused:
                form.add_error(None, str(refused))
            else:
                self.log_change(request, guide, f"Published revision {revision.number}.")
                self.message_user(
                    request,
                    f"Revision {revision.number} is published: readers get it from now on.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(reverse("admin:guides_guide_change", args=[pk]))
        current = guide.current_revision()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Publish “{guide}”",
            "guide": guide,
            "current": current,
            "changes": differences(current.content if current else None, snapshot),
            "form": form,
            "may_publish": may_publish,
            "edited_it": guide.draft_editors.filter(pk=request.user.pk).exists(),
            "revisions": guide.revisions.listed().select_related("approved_by"),
        }
        return TemplateResponse(request, "admin/guides/publish.html", context)


@admin.register(Revision)
class RevisionAdmin(admin.ModelAdmin):
    """Published revisions, to read: nobody changes or deletes one."""

    list_display = ["__str__", "kind", "approved_at", "approved_by", "summary", "page"]
    list_filter = ["guide", "kind"]
    list_select_related = ["guide", "approved_by"]
    fields = [
        "guide",
        "number",
        "kind",
        "summary",
        "approved_by",
        "approved_at",
        "edited_by",
        "reviewed_on",
        "next_review_due",
        "page",
    ]
    readonly_fields = fields

    @admin.display(description="Page as served")
    def page(self, revision: Revision) -> str:
        url = reverse(
            "guides:revision", kwargs={"slug": revision.guide.slug, "number": revision.number}
        )
        return format_html('<a href="{}">Open revision {}</a>', url, revision.number)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    """What readers answered to "Was this page useful?", to read: nobody changes an answer."""

    list_display = ["guide", "answer", "comment", "revision_number", "created_at"]
    list_filter = ["guide", "useful"]
    date_hierarchy = "created_at"
    search_fields = ["comment"]
    list_select_related = ["guide"]
    fields = ["guide", "revision_number", "useful", "comment", "created_at"]
    readonly_fields = fields

    @admin.display(description="Useful?", ordering="useful")
    def answer(self, feedback: Feedback) -> str:
        return "Yes" if feedback.useful else "No"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Reviewer)
class ReviewerAdmin(admin.ModelAdmin):
    list_display = ["name", "role", "qualifications", "is_fictional"]
    search_fields = ["name", "role"]

    # A reviewer is named on the pages of their guides: changing one changes those drafts.
    def save_model(self, request: HttpRequest, obj: Reviewer, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change:
            obj.guides.mark_edited(request.user)

    def delete_model(self, request: HttpRequest, obj: Reviewer) -> None:
        guides = list(obj.guides.values_list("pk", flat=True))
        super().delete_model(request, obj)
        Guide.objects.filter(pk__in=guides).mark_edited(request.user)

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        guides = list(Guide.objects.filter(reviewers__in=queryset).values_list("pk", flat=True))
        super().delete_queryset(request, queryset)
        Guide.objects.filter(pk__in=guides).mark_edited(request.user)

    @admin.display(description="Fictional", boolean=True, ordering="fictional")
    def is_fictional(self, reviewer: Reviewer) -> bool:
        return reviewer.fictional


@admin.register(Service)
class ServiceAdmin(admin.ModelAdmin):
    list_display = ["title", "position"]
    list_editable = ["position"]

    # Every guide page shows the services: a change to one is a change to every draft, and
    # whoever made it may not publish it (four eyes).
    def save_model(self, request: HttpRequest, obj: Service, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        Guide.objects.mark_edited(request.user)

    def delete_model(self, request: HttpRequest, obj: Service) -> None:
        super().delete_model(request, obj)
        Guide.objects.mark_edited(request.user)

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        super().delete_queryset(request, queryset)
        Guide.objects.mark_edited(request.user)
