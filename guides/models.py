import math
import re
import time
from datetime import date

from django.conf import settings
from django.core.cache import cache
from django.db import models, transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

# Claims cite the guide's numbered references inline, as [ref:key] or [ref:key-a,key-b].
# Keys rather than numbers, so that an editor can reorder the list without rewriting text.
CITATION = re.compile(r"\[ref:([a-z0-9-]+(?:\s*,\s*[a-z0-9-]+)*)\]")

# Patients reading about their own illness read slowly; 200 words a minute is the figure
# plain-language services use for health content.
WORDS_PER_MINUTE = 200


def cited_keys(text: str) -> list[str]:
    keys = []
    for match in CITATION.finditer(text):
        keys.extend(key.strip() for key in match.group(1).split(","))
    return keys


def strip_citations(text: str) -> str:
    """The text as plain words, for search engines and word counts."""
    return re.sub(r"\s*" + CITATION.pattern, "", text)


CONTENT_VERSION_KEY = "guides:content-version"


def content_version() -> int:
    """A number that changes whenever any part of any guide (or a service) is saved or
    deleted: cached guide pages are keyed by it, so an editor's change shows at once."""
    return cache.get_or_set(CONTENT_VERSION_KEY, time.time_ns, timeout=None)


def content_changed(using: str | None = None, **kwargs) -> None:
    # Now, inside the editor's transaction: if the cache cannot be told, the save fails and
    # is rolled back, rather than going unseen behind a page cached for a day. And again once
    # committed: a reader who came in between read the old rows and cached them under the
    # version set now.
    _new_content_version()
    transaction.on_commit(_new_content_version, using=using, robust=True)


def _new_content_version() -> None:
    cache.set(CONTENT_VERSION_KEY, time.time_ns(), timeout=None)


class GuideQuerySet(models.QuerySet):
    def published(self) -> "GuideQuerySet":
        return self.filter(published=True)

    def overdue_for_review(self, today: date | None = None) -> "GuideQuerySet":
        return self.filter(next_review_due__lt=today or timezone.localdate())

    def with_content(self) -> "GuideQuerySet":
        """Everything the guide page shows, in a fixed number of queries."""
        return self.prefetch_related(
            "developments", "products", "key_numbers", "balance_points", "faqs", "references"
        )


class GuideManager(models.Manager.from_queryset(GuideQuerySet)):
    def get_by_natural_key(self, slug: str) -> "Guide":
        return self.get(slug=slug)


class Guide(models.Model):
    slug = models.SlugField(max_length=100, unique=True)
    title = models.CharField(
        max_length=120, help_text="Shown as the page heading, e.g. “Gene therapy for leukemia”."
    )
    category = models.CharField(max_length=60, help_text="The small label above the title.")
    condition = models.CharField(
        max_length=80,
        help_text="The illness the guide is about, for search engines (e.g. “Leukemia”).",
    )
    lead = models.TextField(help_text="The opening paragraph under the title.")
    summary = models.CharField(
        max_length=160,
        help_text="One or two sentences for search results and the guides list "
        "(160 characters at most).",
    )
    at_a_glance = models.TextField(help_text="The “At a glance” box: one point per line.")

    patients_text = models.TextField("What this means for patients")
    developments_intro = models.TextField("Key developments: introduction", blank=True)
    products_intro = models.TextField("Approved products: introduction", blank=True)
    products_note = models.TextField("Approved products: note under the table", blank=True)
    relevant_for = models.TextField(
        "Who this is relevant for", help_text="Paragraphs; start a line with “- ” for a list."
    )
    when_to_consider = models.TextField(
        "When to consider this option", help_text="Paragraphs; start a line with “- ” for a list."
    )
    medical_disclaimer = models.TextField()

    reviewed_by = models.CharField(max_length=200)
    last_reviewed = models.DateField()
    next_review_due = models.DateField()
    published = models.BooleanField(
        default=False, help_text="Only published guides can be seen by the public."
    )
    updated_at = models.DateTimeField(auto_now=True)

    objects = GuideManager()

    class Meta:
        ordering = ["title"]
        constraints = [
            models.CheckConstraint(
                condition=Q(next_review_due__gt=F("last_reviewed")),
                name="guide_next_review_after_last_review",
                violation_error_message="The next review must be due after the last review.",
            ),
        ]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("guides:detail", kwargs={"slug": self.slug})

    def natural_key(self) -> tuple[str]:
        return (self.slug,)

    @property
    def canonical_url(self) -> str:
        return settings.SITE_URL + self.get_absolute_url()

    @property
    def glance_points(self) -> list[str]:
        return [line.strip() for line in self.at_a_glance.splitlines() if line.strip()]

    def contents(self) -> list[tuple[str, str]]:
        """The "On this page" list: the sections this guide has, in page order."""
        sections = [
            ("patients", "What this means for patients", True),
            ("developments", "Key developments", bool(self.developments.all())),
            ("products", "Approved products", bool(self.products.all())),
            ("numbers", "Key numbers", bool(self.key_numbers.all())),
            ("relevant", "Who this is relevant for", True),
            ("benefits", "Benefits and limitations", bool(self.balance_points.all())),
            ("when", "When to consider this option", True),
            ("questions", "Questions patients and families ask", bool(self.faqs.all())),
            ("help", "How CancerFax helps", True),
            ("cta-heading", "Send your medical reports", True),
            ("references", "References", bool(self.references.all())),
        ]
        return [(anchor, heading) for anchor, heading, shown in sections if shown]

    def balance_by_kind(self) -> list[tuple["BalancePoint.Kind", list["BalancePoint"]]]:
        points = self.balance_points.all()
        grouped = [(kind, [p for p in points if p.kind == kind]) for kind in BalancePoint.Kind]
        return [(kind, items) for kind, items in grouped if items]

    def is_overdue_for_review(self, today: date | None = None) -> bool:
        return self.next_review_due < (today or timezone.localdate())

    def labelled_texts(self) -> list[tuple[str, str]]:
        """All the prose a reader meets on the page, in page order, with where it stands."""
        texts = [
            ("Title", self.title),
            ("Lead", self.lead),
            ("At a glance", self.at_a_glance),
            ("What this means for patients", self.patients_text),
            ("Key developments: introduction", self.developments_intro),
        ]
        texts += [
            (f"Key development “{d.name}”", f"{d.name} {d.summary}")
            for d in self.developments.all()
        ]
        texts.append(("Approved products: introduction", self.products_intro))
        texts += [
            (
                f"Product “{p.brand_name}”",
                f"{p.brand_name} {p.generic_name} {p.target} {p.get_disease_display()} "
                f"{p.indication} {p.key_result}",
            )
            for p in self.products.all()
        ]
        texts.append(("Approved products: note", self.products_note))
        texts += [
            (f"Key number “{k.figure}”", f"{k.figure} {k.label} {k.explanation}")
            for k in self.key_numbers.all()
        ]
        texts.append(("Who this is relevant for", self.relevant_for))
        texts += [(f"“{b.title}”", f"{b.title} {b.text}") for b in self.balance_points.all()]
        texts.append(("When to consider this option", self.when_to_consider))
        texts += [(f"Question “{f.question}”", f"{f.question} {f.answer}") for f in self.faqs.all()]
        texts.append(("Medical disclaimer", self.medical_disclaimer))
        return texts

    def texts(self) -> list[str]:
        return [text for _, text in self.labelled_texts()]

    @property
    def reading_minutes(self) -> int:
        words = sum(len(strip_citations(text).split()) for text in self.texts())
        return max(1, math.ceil(words / WORDS_PER_MINUTE))

    def unresolved_citations(self) -> list[str]:
        """Citation keys used in the text that match no reference of this guide."""
        return list(dict.fromkeys(key for key, _ in self.citation_problems()))

    def citation_problems(self) -> list[tuple[str, str]]:
        """(key, where) for each citation that matches no reference of this guide."""
        known = {reference.key for reference in self.references.all()}
        return [
            (key, where)
            for where, text in self.labelled_texts()
            for key in cited_keys(text)
            if key not in known
        ]

    def cited_references(self) -> list["Reference"]:
        used = {key for text in self.texts() for key in cited_keys(text)}
        return [reference for reference in self.references.all() if reference.key in used]

    def structured_data(self) -> list[dict]:
        """schema.org descriptions of the page, for search engines (JSON-LD)."""
        page = {
            "@context": "https://schema.org",
            "@type": "MedicalWebPage",
            "name": self.title,
            "headline": self.title,
            "description": self.summary,
            "url": self.canonical_url,
            "inLanguage": "en",
            "lastReviewed": self.last_reviewed.isoformat(),
            "reviewedBy": {"@type": "Organization", "name": self.reviewed_by},
            "medicalAudience": {"@type": "Patient"},
            "about": {"@type": "MedicalCondition", "name": self.condition},
            "publisher": {"@type": "Organization", "name": "CancerFax"},
            "citation": [reference.citation for reference in self.references.all()],
        }
        faq = {
            "@context": "https://schema.org",
            "@type": "FAQPage",
            "url": self.canonical_url,
            "mainEntity": [
                {
                    "@type": "Question",
                    "name": item.question,
                    "acceptedAnswer": {
                        "@type": "Answer",
                        "text": " ".join(strip_citations(item.answer).split()),
                    },
                }
                for item in self.faqs.all()
            ],
        }
        return [page, faq] if self.faqs.all() else [page]


class GuidePart(models.Model):
    """A repeated part of a guide, shown in the order of its position."""

    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        abstract = True
        ordering = ["position", "id"]


class Development(GuidePart):
    class Status(models.TextChoices):
        APPROVED = "approved", "Approved"
        INVESTIGATIONAL = "investigational", "Investigational"

    guide = models.ForeignKey(Guide, on_delete=models.CASCADE, related_name="developments")
    name = models.CharField(max_length=150)
    status = models.CharField(max_length=20, choices=Status)
    summary = models.TextField()

    class Meta(GuidePart.Meta):
        verbose_name = "key development"

    def __str__(self) -> str:
        return self.name


class Product(GuidePart):
    class Disease(models.TextChoices):
        LEUKEMIA = "leukemia", "Leukemia"
        LYMPHOMA = "lymphoma", "Lymphoma"
        MYELOMA = "myeloma", "Myeloma"

    guide = models.ForeignKey(Guide, on_delete=models.CASCADE, related_name="products")
    brand_name = models.CharField(max_length=60)
    generic_name = models.CharField(max_length=80)
    target = models.CharField(
        max_length=20, help_text="The protein the product aims at, e.g. CD19."
    )
    disease = models.CharField(
        max_length=20,
        choices=Disease,
        help_text="The kind of blood cancer this row is mainly about.",
    )
    first_approved = models.DateField("first US approval")
    indication = models.TextField("approved for")
    key_result = models.TextField("key trial result")

    class Meta(GuidePart.Meta):
        verbose_name = "approved product"

    def __str__(self) -> str:
        return f"{self.brand_name} ({self.generic_name})"


class KeyNumber(GuidePart):
    guide = models.ForeignKey(Guide, on_delete=models.CASCADE, related_name="key_numbers")
    figure = models.CharField(max_length=12, help_text="Short, e.g. “81%” or “7”.")
    label = models.CharField(max_length=120)
    explanation = models.TextField()

    def __str__(self) -> str:
        return f"{self.figure} {self.label}"


class BalancePoint(GuidePart):
    class Kind(models.TextChoices):
        BENEFIT = "benefit", "Benefit"
        LIMITATION = "limitation", "Limitation"

    guide = models.ForeignKey(Guide, on_delete=models.CASCADE, related_name="balance_points")
    kind = models.CharField(max_length=12, choices=Kind)
    title = models.CharField(max_length=120)
    text = models.TextField()

    class Meta(GuidePart.Meta):
        verbose_name = "benefit or limitation"
        verbose_name_plural = "benefits and limitations"

    def __str__(self) -> str:
        return self.title


class Faq(GuidePart):
    guide = models.ForeignKey(Guide, on_delete=models.CASCADE, related_name="faqs")
    question = models.CharField(max_length=200)
    answer = models.TextField()

    class Meta(GuidePart.Meta):
        verbose_name = "question and answer"
        verbose_name_plural = "questions and answers"

    def __str__(self) -> str:
        return self.question


class Reference(models.Model):
    guide = models.ForeignKey(Guide, on_delete=models.CASCADE, related_name="references")
    number = models.PositiveSmallIntegerField()
    key = models.SlugField(
        max_length=40, help_text="Cite it in any text of this guide as [ref:key]."
    )
    citation = models.TextField(
        help_text="Authors, title, journal, year; or the regulator's notice."
    )
    url = models.URLField("link", max_length=300, blank=True)

    class Meta:
        ordering = ["number"]
        constraints = [
            models.UniqueConstraint(fields=["guide", "number"], name="reference_number_unique"),
            models.UniqueConstraint(fields=["guide", "key"], name="reference_key_unique"),
        ]

    def __str__(self) -> str:
        return f"[{self.number}] {self.key}"

    @property
    def anchor(self) -> str:
        return f"ref-{self.number}"


class Service(models.Model):
    """One of the ways CancerFax helps, shown on the home page and under every guide."""

    position = models.PositiveSmallIntegerField(default=0)
    title = models.CharField(max_length=80)
    description = models.TextField()

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return self.title
