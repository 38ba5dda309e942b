from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import permission_required
from django.db.models import Max
from django.http import Http404, HttpRequest, HttpResponse, HttpResponsePermanentRedirect
from django.middleware.gzip import re_accepts_gzip
from django.shortcuts import get_object_or_404, redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.utils.cache import get_conditional_response, patch_vary_headers
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.gzip import gzip_page
from django.views.decorators.http import require_http_methods, require_safe

from cancerfax.cache_outage import over_limit

from .forms import FeedbackForm
from .models import Guide, Revision, Service
from .pages import current_page, render_draft

# Public pages are compressed here: they hold no secret and echo nothing a visitor sends, so
# compression cannot leak anything (BREACH). Pages with personal data are never compressed.


@gzip_page
@require_safe
def home(request: HttpRequest) -> HttpResponse:
    context = {
        "guides": Guide.objects.published(),
        "services": Service.objects.all(),
    }
    return render(request, "guides/home.html", context)


@gzip_page
@require_safe
def guide_list(request: HttpRequest) -> HttpResponse:
    return render(request, "guides/guide_list.html", {"guides": Guide.objects.published()})


# Readers get the current revision's stored bytes: one cache read or one query, nothing
# rendered. A shared cache or CDN may keep the page for a short while (s-maxage) and serve it
# a little longer while it asks again (stale-while-revalidate): the page changes only when a
# revision is published. Browsers ask every time (max-age=0) and get 304 while it is the same.
PUBLIC_PAGE_CACHING = "public, max-age=0, s-maxage=300, stale-while-revalidate=600"


@require_safe
def guide_detail(request: HttpRequest, slug: str) -> HttpResponse:
    gzipped = re_accepts_gzip.search(request.headers.get("Accept-Encoding", "")) is not None
    page = current_page(slug, gzipped=gzipped)
    if page is None:
        raise Http404("No published guide here")
    etag, body = page
    # The compressed page is another representation of the same revision: a weak ETag, as
    # Django's GZipMiddleware gives a page it compresses. No Last-Modified: HTTP dates count
    # whole seconds, and two revisions published within one would share a date.
    etag = f"W/{etag}" if gzipped else etag
    not_modified = get_conditional_response(request, etag=etag)
    response = not_modified or HttpResponse(body)
    if gzipped and not not_modified:
        response["Content-Encoding"] = "gzip"
    response["ETag"] = etag
    # A signed-in member of staff may be sent their session cookie with this response: no
    # shared cache may keep that one.
    signed_in = settings.SESSION_COOKIE_NAME in request.COOKIES
    response["Cache-Control"] = "private, max-age=0" if signed_in else PUBLIC_PAGE_CACHING
    patch_vary_headers(response, ["Accept-Encoding"])
    return response


@staff_member_required
@permission_required("guides.view_guide", raise_exception=True)
@require_safe
def guide_preview(request: HttpRequest, slug: str) -> HttpResponse:
    guide = get_object_or_404(Guide.objects.with_content(), slug=slug)
    response = HttpResponse(render_draft(guide))
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Cache-Control"] = "private, no-store"
    return response


@staff_member_required
@permission_required("guides.view_guide", raise_exception=True)
@require_safe
def guide_revision(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    """A past revision exactly as readers were served it."""
    revision = get_object_or_404(Revision, guide__slug=slug, number=number)
    response = HttpResponse(bytes(revision.html))
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Cache-Control"] = "private, no-store"
    return response


# The form is part of the stored page, which holds nothing per request, so it carries no
# CSRF token: a forged post could only add an anonymous answer, as anyone can
# (docs/decisions/, "Feedback without a CSRF token"). It is rate-limited instead.
@csrf_exempt
@require_http_methods(["GET", "POST"])
def guide_feedback(request: HttpRequest, slug: str) -> HttpResponse:
    guide = get_object_or_404(Guide.objects.published(), slug=slug)
    form = FeedbackForm(request.POST or None)
    if request.method == "POST":
        if over_limit(
            request, "guides.feedback", settings.GUIDE_FEEDBACK_RATE_LIMIT, True, "Feedback"
        ):
            context = {"guide": guide, "form": form, "limited": True}
            return render(request, "guides/feedback.html", context, status=429)
        if form.is_valid():
            form.save_for(guide)
            return redirect("guides:feedback_thanks", slug=slug)
    return render(request, "guides/feedback.html", {"guide": guide, "form": form})


@require_safe
def feedback_thanks(request: HttpRequest, slug: str) -> HttpResponse:
    guide = get_object_or_404(Guide.objects.published(), slug=slug)
    return render(request, "guides/feedback_thanks.html", {"guide": guide})


@gzip_page
@require_safe
def how_we_write(request: HttpRequest) -> HttpResponse:
    # "At least every N months": the longest review cycle of any published guide.
    longest = Guide.objects.published().aggregate(months=Max("review_cycle_months"))["months"]
    default = Guide._meta.get_field("review_cycle_months").default
    return render(request, "guides/how_we_write.html", {"review_months": longest or default})


@require_safe
def robots_txt(request: HttpRequest) -> HttpResponse:
    lines = [
        "User-agent: *",
        "Disallow: /admin/",
        f"Sitemap: {settings.SITE_URL}{reverse('django.contrib.sitemaps.views.sitemap')}",
    ]
    return HttpResponse("\n".join(lines) + "\n", content_type="text/plain; charset=utf-8")


@require_safe
def favicon(request: HttpRequest) -> HttpResponse:
    # Browsers ask for /favicon.ico whatever the page says; send them to the hashed file.
    return HttpResponsePermanentRedirect(static("img/favicon.ico"))
