"""Guide pages as readers get them: rendered once, when a revision is published, and stored
with it; and the draft's preview, rendered for staff from the rows as they stand."""

import gzip

from django.conf import settings
from django.template.loader import render_to_string
from django.utils import timezone

from .models import Guide, Revision, Service, add_months


def render_revision(guide: Guide, revision: Revision) -> tuple[bytes, bytes]:
    """The page `revision` publishes, and its gzip form (compressed once, like a static
    file: it holds no secret and echoes nothing a visitor sends, so BREACH cannot apply)."""
    history = [revision, *guide.revisions.order_by("-number")]
    html = _render(guide, revision, history, draft=False).encode()
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
    history = [draft, *guide.revisions.order_by("-number")]
    return _render(guide, draft, history, draft=True)


def _render(guide: Guide, revision: Revision, history: list[Revision], *, draft: bool) -> str:
    return render_to_string("guides/guide_detail.html", page_context(guide, revision, history, draft))


def page_context(guide: Guide, revision: Revision, history: list[Revision], draft: bool) -> dict:
    return {
        "guide": guide,
        "revision": revision,
        "history": history,
        "structured_data": guide.structured_data(revision),
        "citations": {reference.key: reference for reference in guide.references.all()},
        "services": list(Service.objects.all()),
        "draft": draft,
        # No request: the page is the same for every reader.
        "nav_section": "guides",
        "SITE_URL": settings.SITE_URL,
    }
