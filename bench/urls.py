"""`make bench` only: the site's pages, plus one that measures the ceiling of a cold render.

/bench/guide-queries/<slug>/ runs the guide page's database queries exactly as the page
does (guides.views.guide_context), then answers the page's own bytes, compressed, from the
static copy the benchmark made, without rendering anything. No render of the page can be
faster than its queries alone, so this ceiling, measured side by side with the static copy,
shows how much of a cold render's cost is reading the guide, and how much is rendering it.
"""

from functools import cache
from pathlib import Path

from django.http import Http404, HttpRequest, HttpResponse
from django.urls import path

from cancerfax.urls import urlpatterns as site_urlpatterns
from guides.views import guide_context

STATIC_COPY = Path(__file__).resolve().parent.parent / "staticfiles" / "bench" / "guide.html.gz"


@cache
def page_as_served() -> bytes:
    return STATIC_COPY.read_bytes()


def queries_only(request: HttpRequest, slug: str) -> HttpResponse:
    if guide_context(slug) is None:
        raise Http404("No published guide here")
    response = HttpResponse(page_as_served())
    response["Content-Encoding"] = "gzip"
    response["Content-Length"] = str(len(response.content))
    return response


urlpatterns = [*site_urlpatterns, path("bench/guide-queries/<slug:slug>/", queries_only)]
