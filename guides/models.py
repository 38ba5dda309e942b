import calendar
import hashlib
import json
import math
import re
from datetime import date, timedelta

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import connections, models, transaction
from django.db.models import F, OuterRef, Q, Subquery
from django.forms.models import model_to_dict
from django.urls import reverse
from django.utils import timezone
from django.utils.http import quote_etag

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


def add_months(day: date, months: int) -> date:
    """The same day `months` later, or the month's last day where it has no such day."""
    year, month = divmod(day.month - 1 + months, 12)
    year, month = day.year + year, month + 1
    last = calendar.monthrange(year, month)[1]
    return day.replace(year=year, month=month, day=min(day.day, last))


# The guide's repeated parts, by their names on the guide.
PART_NAMES = ["developments", "products", "key_numbers", "balance_points", "faqs", "references"]


class GuideQuerySet(models.QuerySet):
    def published(self) -> "GuideQuerySet":
        """Guides with a published revision, each with its current revision's review dates
        (`last_reviewed`, `updated`, `next_review_due`)."""
        return self.with_review_dates().filter(current_number__isnull=False)

    def with_review_dates(self) -> "GuideQuerySet":
        current = Revision.objects.filter(guide=OuterRef("pk")).order_by("-number")
        return self.annotate(
            current_number=Subquery(current.values("number")[:1]),
            last_reviewed=Subquery(current.values("reviewed_on")[:1]),
            updated=Subquery(current.values("approved_at")[:1]),
            next_review_due=Subquery(current.values("next_review_due")[:1]),
            published_title=Subquery(current.values("content__guide__title")[:1]),
            published_summary=Subquery(current.values("content__guide__summary")[:1]),
            published_category=Subquery(current.values("content__guide__category")[:1]),
        )

    def due_for_review(self, within_days: int = 30, today: date | None = None):
        """Published guides whose next review falls in the next `within_days` or has passed."""
        today = today or timezone.localdate()
        return self.published().filter(next_review_due__lte=today + timedelta(days=within_days))

    def overdue_for_review(self, today: date | None = None) -> "GuideQuerySet":
        return self.published().filter(next_review_due__lt=today or timezone.localdate())

    def with_content(self) -> "GuideQuerySet":
        """Everything the guide page shows, in a fixed number of queries."""
        return self.prefetch_related(*PART_NAMES, "reviewers")

    def mark_edited(self, user) -> int:
        """Records `user` as an editor of these guides' drafts: a change outside the guide's
        own page (a reviewer, a service) changes what each would publish."""
        guides = list(self.values_list("pk", flat=True))
        Editors = Guide.draft_editors.through
        Editors.objects.bulk_create(
            [Editors(guide_id=pk, user_id=user.pk) for pk in guides], ignore_conflicts=True
        )
        return Guide.objects.filter(pk__in=guides).update(
            last_edited_by=user, last_edited_at=timezone.now()
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
    cta_heading = models.CharField(
        "call to action",
        max_length=120,
        default="Could a treatment or trial apply to the patient?",
        help_text="The question above the button to send medical reports, shown after “At a "
        "glance” on phones and near the end of the page, e.g. “Does CAR-T apply to your "
        "diagnosis?”.",
    )

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

    reviewers = models.ManyToManyField(
        "Reviewer",
        related_name="guides",
        blank=True,
        help_text="The clinicians who review this guide, shown on the page.",
    )
    review_cycle_months = models.PositiveSmallIntegerField(
        default=12,
        validators=[MinValueValidator(1), MaxValueValidator(36)],
        help_text="A full clinical review is due this many months after the last one.",
    )
    # Who changed the draft last, for the four-eyes rule: they may not publish it.
    last_edited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
    )
    last_edited_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Everyone who changed the draft since it was last published: none of them may publish it.
    draft_editors = models.ManyToManyField(
        settings.AUTH_USER_MODEL, related_name="+", blank=True, editable=False
    )
    updated_at = models.DateTimeField(auto_now=True)

    objects = GuideManager()

    class Meta:
        ordering = ["title"]
        permissions = [("publish_guide", "Can approve and publish a revision of a guide")]

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

    def sections(self) -> dict[str, str]:
        """The sections this guide has, in page order: {anchor: heading}. The page's
        headings and its "On this page" list both come from here."""
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
            ("changes", "Changes to this guide", True),
        ]
        return {anchor: heading for anchor, heading, shown in sections if shown}

    def balance_by_kind(self) -> list[tuple["BalancePoint.Kind", str, list["BalancePoint"]]]:
        """(kind, its heading, its points) for each kind this guide has."""
        points = self.balance_points.all()
        grouped = [
            (kind, BalancePoint.HEADINGS[kind], [p for p in points if p.kind == kind])
            for kind in BalancePoint.Kind
        ]
        return [group for group in grouped if group[2]]

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
                f"{p.indication} {p.key_result} {p.harms}",
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

    def structured_data(self, revision: "Revision") -> list[dict]:
        """schema.org descriptions of the page as `revision` publishes it (JSON-LD)."""
        page = {
            "@context": "https://schema.org",
            "@type": "MedicalWebPage",
            "name": self.title,
            "headline": self.title,
            "description": self.summary,
            "url": self.canonical_url,
            "inLanguage": "en",
            "lastReviewed": revision.reviewed_on.isoformat(),
            "dateModified": revision.approved_at.isoformat(),
            "reviewedBy": [reviewer.as_person() for reviewer in self.reviewers.all()],
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

    def mark_edited(self, user) -> None:
        """Records `user` as an editor of the draft (the four-eyes rule)."""
        Guide.objects.filter(pk=self.pk).mark_edited(user)
        self.refresh_from_db(fields=["last_edited_by", "last_edited_at"])

    def snapshot(self) -> dict:
        """The whole draft as it stands: every field of the guide and of each of its parts,
        its reviewers, and its texts as a reader meets them (for the differences)."""
        parts = {
            name: [
                model_to_dict(part, exclude=["id", "guide"]) for part in getattr(self, name).all()
            ]
            for name in PART_NAMES
        }
        return {
            "guide": model_to_dict(
                self,
                exclude=["id", "reviewers", "last_edited_by", "last_edited_at", "draft_editors"],
            ),
            "parts": parts,
            "reviewers": [
                model_to_dict(reviewer, exclude=["id"]) for reviewer in self.reviewers.all()
            ],
            "services": [
                model_to_dict(service, exclude=["id"]) for service in Service.objects.all()
            ],
            "texts": self.labelled_texts(),
        }

    def fingerprint(self) -> str:
        return fingerprint_of(self.snapshot())

    def current_revision(self) -> "Revision | None":
        return self.revisions.defer("html", "gzipped").order_by("-number").first()

    def publish(
        self, approver, *, kind: str, summary: str, fingerprint: str | None = None
    ) -> "Revision":
        """Makes the draft, as it stands, the guide's next revision: what readers get from
        now on. Raises PublishRefused, with a sentence for the approver, when `approver` may
        not publish it."""
        from .pages import forget_page, render_revision

        summary = " ".join(summary.split())
        if not approver.has_perm("guides.publish_guide"):
            raise PublishRefused("You do not have permission to publish guides.")
        if not summary:
            raise PublishRefused("Write a short summary of what changed, for readers.")
        with transaction.atomic():
            guide = Guide.objects.select_for_update().get(pk=self.pk)
            if guide.draft_editors.filter(pk=approver.pk).exists():
                raise PublishRefused(
                    "You made a change to this draft, so someone else must approve and "
                    "publish it (four eyes)."
                )
            guide = Guide.objects.with_content().get(pk=self.pk)
            snapshot = guide.snapshot()
            if fingerprint is not None and fingerprint != fingerprint_of(snapshot):
                raise PublishRefused(
                    "The draft changed while you were reading it. Read the changes again "
                    "before you publish."
                )
            problems = guide.unresolved_citations()
            if problems:
                raise PublishRefused(
                    "Some citations match no reference: "
                    + ", ".join(f"[ref:{key}]" for key in problems)
                    + ". Fix them before publishing."
                )
            if not guide.reviewers.exists():
                raise PublishRefused("Name at least one clinical reviewer before publishing.")
            previous = guide.current_revision()
            if previous is None and kind != Revision.Kind.REVIEW:
                raise PublishRefused("A guide's first revision must be a full clinical review.")
            approved_at = timezone.now()
            reviewed_on = (
                timezone.localdate(approved_at)
                if kind == Revision.Kind.REVIEW
                else previous.reviewed_on
            )
            revision = Revision(
                guide=guide,
                number=previous.number + 1 if previous else 1,
                kind=kind,
                summary=summary,
                content={
                    **snapshot,
                    "editors": sorted(user.get_username() for user in guide.draft_editors.all()),
                },
                edited_by=guide.last_edited_by,
                approved_by=approver,
                approved_at=approved_at,
                reviewed_on=reviewed_on,
                next_review_due=add_months(reviewed_on, guide.review_cycle_months),
            )
            revision.html, revision.gzipped = render_revision(guide, revision)
            revision.save()
            guide.draft_editors.clear()
            # Now, and again once committed: a reader in between reads the old revision and
            # may keep it in the cache, under the key just forgotten.
            forget_page(guide.slug)
            transaction.on_commit(lambda: forget_page(guide.slug))
        return revision


def fingerprint_of(snapshot: dict) -> str:
    """A short digest of a draft's snapshot: the approver publishes what they read, not what
    someone changed since."""
    encoded = json.dumps(snapshot, cls=DjangoJSONEncoder, sort_keys=True)
    return hashlib.sha256(encoded.encode()).hexdigest()[:16]


class PublishRefused(Exception):
    """Publishing a draft was refused, for a reason the approver can act on."""


class ReviewerManager(models.Manager):
    def get_by_natural_key(self, name: str) -> "Reviewer":
        return self.get(name=name)


class Reviewer(models.Model):
    """A clinician who reviews guides: a person, named on every page they review."""

    name = models.CharField(max_length=120, unique=True)
    role = models.CharField(max_length=120, help_text="e.g. “Consultant haematologist”.")
    qualifications = models.CharField(max_length=200, help_text="e.g. “MB BS, FRCP, FRCPath”.")
    fictional = models.BooleanField(
        default=False,
        help_text="A demonstration reviewer who does not exist. Replace before going live.",
    )

    objects = ReviewerManager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} (fictional)" if self.fictional else self.name

    def natural_key(self) -> tuple[str]:
        return (self.name,)

    def as_person(self) -> dict:
        return {
            "@type": "Person",
            "name": self.name,
            "jobTitle": self.role,
            "honorificSuffix": self.qualifications,
        }


# The current page of a guide, compressed or plain (RevisionQuerySet.current_page).
_CURRENT_PAGE = (
    "FROM guides_revision r JOIN guides_guide g ON g.id = r.guide_id "
    "WHERE g.slug = %s ORDER BY r.number DESC LIMIT 1"
)
CURRENT_PAGE_SQL = {
    True: "SELECT r.guide_id, r.number, r.gzipped " + _CURRENT_PAGE,
    False: "SELECT r.guide_id, r.number, r.html " + _CURRENT_PAGE,
}


class RevisionQuerySet(models.QuerySet):
    def listed(self) -> "RevisionQuerySet":
        """Newest first, without the stored pages and content a list of them never shows."""
        return self.defer("html", "gzipped", "content").order_by("-number")

    # A published revision is what readers were served: never changed, never removed.
    def update(self, **kwargs):
        raise ValueError("A published revision is never changed.")

    def delete(self):
        raise ValueError("A published revision is never deleted.")

    def current_page(self, slug: str, *, gzipped: bool) -> tuple[str, bytes] | None:
        """(ETag, body) of the current revision of the guide at `slug`, or None: one query.

        Written out rather than built by the ORM: it is the query of every reader without a
        cache, and building it cost ten times what running it does (0.5 ms against 0.04 ms
        on SQLite; docs/benchmarks.md)."""
        with connections[self.db].cursor() as cursor:
            cursor.execute(CURRENT_PAGE_SQL[gzipped], [slug])
            row = cursor.fetchone()
        if row is None:
            return None
        guide_id, number, body = row
        return revision_etag(guide_id, number), bytes(body)


def revision_etag(guide_id: int, number: int) -> str:
    return quote_etag(f"{guide_id}-{number}")


class Revision(models.Model):
    """A published state of a guide, never changed afterwards: what readers were served,
    byte for byte, from `approved_at` until the next revision."""

    class Kind(models.TextChoices):
        REVIEW = "review", "Full clinical review"
        CORRECTION = "correction", "Correction"

    guide = models.ForeignKey(Guide, on_delete=models.PROTECT, related_name="revisions")
    number = models.PositiveIntegerField()
    kind = models.CharField(max_length=12, choices=Kind)
    summary = models.CharField(
        max_length=300, help_text="What changed, in a sentence or two for readers."
    )
    content = models.JSONField(encoder=DjangoJSONEncoder, help_text="The whole guide as published.")
    html = models.BinaryField()
    gzipped = models.BinaryField()
    edited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        related_name="+",
        help_text="Who made the last change to the draft.",
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    approved_at = models.DateTimeField()
    reviewed_on = models.DateField(help_text="The last full clinical review, as of this revision.")
    next_review_due = models.DateField()

    objects = RevisionQuerySet.as_manager()

    class Meta:
        ordering = ["guide", "-number"]
        get_latest_by = "number"
        constraints = [
            models.UniqueConstraint(fields=["guide", "number"], name="revision_number_unique"),
            models.CheckConstraint(
                condition=Q(next_review_due__gt=F("reviewed_on")),
                name="revision_next_review_after_review",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.guide} – revision {self.number}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise ValueError("A published revision is never changed.")
        super().save(*args, **kwargs)

    @property
    def etag(self) -> str:
        return revision_etag(self.guide_id, self.number)

    @property
    def is_correction(self) -> bool:
        return self.kind == self.Kind.CORRECTION


class Feedback(models.Model):
    """A reader's answer to "Was this page useful?": anonymous, for the editors. Nothing
    about the reader is kept, not even their address (the rate limit counts it in the cache,
    as a key that expires)."""

    guide = models.ForeignKey(Guide, on_delete=models.CASCADE, related_name="feedback")
    revision_number = models.PositiveIntegerField(help_text="The revision the reader read.")
    useful = models.BooleanField()
    comment = models.TextField(blank=True, max_length=1000)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "reader's feedback"
        verbose_name_plural = "readers' feedback"

    def __str__(self) -> str:
        return f"{self.guide}: {'useful' if self.useful else 'not useful'}"


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

    class Region(models.TextChoices):
        US = "US", "US"
        EU = "EU", "EU"
        UK = "UK", "UK"
        CHINA = "China", "China"

    first_approved = models.DateField("first approval")
    first_approved_in = models.CharField(
        max_length=10,
        choices=Region,
        default=Region.US,
        help_text="Where that first approval was given.",
    )
    indication = models.TextField(
        "approved for", help_text="Label every approval and age limit US, EU or UK."
    )
    key_result = models.TextField(
        "key trial result",
        help_text="With how many people: who signed up, and who received the cells.",
    )
    harms = models.TextField(
        "serious side effects",
        blank=True,
        help_text="How often, of how many people; the same trial as the result where possible.",
    )

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

    # Headings are written out, not made by adding an "s" to a label.
    HEADINGS = {Kind.BENEFIT: "Benefits", Kind.LIMITATION: "Limitations"}

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
