"""Guide pages as readers get them: rendered once, when a revision is published, and stored
with it; and the draft's preview, rendered for staff from the rows as they stand."""

import gzip

from django.conf import settings
from django.core.cache import cache
from django.template.loader import render_to_string
from django.utils import timezone

from cancerfax.cache_outage import CACHE_ERRORS, cache_failed, cache_resting
from cancerfax.context_processors import contact_details

from .models import Guide, Revision, Service, add_months


def render_revision(guide: Guide, revision: Revision) -> tuple[bytes, bytes]:
    """The page `revision` publishes, and its gzip form (compressed once, like a static
    file: it holds no secret and echoes nothing a visitor sends, so BREACH cannot apply)."""
    html = _render(guide, revision, draft=False).encode()
    return html, gzip.compress(html, compresslevel=9, mtime=0)


def render_draft(guide: Guide) -> str:
    """The draft as it would be published now, marked as a draft and kept out of search."""
    current = guide.current_revision()
    draft = Revision(
        guide=guide,
        number=current.number + 1 if current else 1,
        kind=Revision.Kind.REVIEW,
        summary="(The summary is written when the draft is published.)",
        approved_at=timezone.now(),
        reviewed_on=current.reviewed_on if current else timezone.localdate(),
    )
    draft.next_review_due = add_months(draft.reviewed_on, guide.review_cycle_months)
    return _render(guide, draft, draft=True)


def _render(guide: Guide, revision: Revision, *, draft: bool) -> str:
    context = page_context(guide, revision, draft)
    return render_to_string("guides/guide_detail.html", context)


def page_context(guide: Guide, revision: Revision, draft: bool) -> dict:
    published = list(guide.revisions.listed())
    # "Changes to this guide" ends with the revision being made, before it is stored.
    history = published if revision.pk else [revision, *published]
    return {
        "guide": guide,
        "revision": revision,
        "history": history,
        "structured_data": guide.structured_data(revision),
        "sections": guide.sections(),
        "citations": {reference.key: reference for reference in guide.references.all()},
        "services": list(Service.objects.all()),
        "draft": draft,
        # No request: the page is the same for every reader.
        "nav_section": "guides",
        "SITE_URL": settings.SITE_URL,
        # As at publication: a change of contact details shows on a guide at its next
        # revision (docs/decisions).
        "contact": contact_details(),
    }


# The current page is also kept for a minute in the shared cache, where there is one, so that
# most readers cost no query. Publishing forgets it once committed; a reader who read the old
# revision just before and stored it just after is the worst case, and keeps it a minute.
PAGE_SECONDS = 60


def _page_keys(slug: str) -> dict[bool, str]:
    return {True: f"guide-page:{slug}:gzip", False: f"guide-page:{slug}:plain"}


def current_page(slug: str, *, gzipped: bool) -> tuple[str, bytes] | None:
    """(ETag, body) of the guide's current revision, or None if it has none: from the cache
    when it is there, else with one query. The cache failing only costs the query."""
    key = _page_keys(slug)[gzipped]
    if not cache_resting():
        try:
            page = cache.get(key)
        except CACHE_ERRORS as error:
            cache_failed(error, "Guide pages read")
        else:
            if page is not None:
                return page
    page = Revision.objects.current_page(slug, gzipped=gzipped)
    if page is None:
        return None
    if not cache_resting():
        try:
            cache.set(key, page, PAGE_SECONDS)
        except CACHE_ERRORS as error:
            cache_failed(error, "Guide pages read")
    return page


def forget_page(slug: str) -> None:
    """Called once a revision is committed: the next reader reads it from the database."""
    try:
        cache.delete_many(list(_page_keys(slug).values()))
    except CACHE_ERRORS as error:
        # Readers get the new revision within PAGE_SECONDS all the same.
        cache_failed(error, "A published guide's page forgotten")
