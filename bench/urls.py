"""`make bench` only: the site's pages, plus two that take a cold render apart.

Both answer the guide page's own bytes, compressed, from the static copy the benchmark made,
through the same middleware as a cold render, without rendering anything:
- /bench/guide-queries/<slug>/ first runs the page's database queries exactly as the page
  does (guides.views.guide_context). No render of the page can be faster: it is the ceiling
  of a cold render.
- /bench/no-queries/ runs none: what Django's request handling alone costs.
Measured side by side with the static copy, they show where a cold render's time goes.
"""

from functools import cache
from pathlib import Path

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import path

from cancerfax.urls import urlpatterns as site_urlpatterns
from guides.views import guide_context

STATIC_COPY = Path(settings.STATIC_ROOT) / "bench" / "guide.html.gz"


@cache
def page_as_served() -> bytes:
    return STATIC_COPY.read_bytes()


def answer_as_served() -> HttpResponse:
    response = HttpResponse(page_as_served())
    response["Content-Encoding"] = "gzip"
    response["Content-Length"] = str(len(response.content))
    return response


def queries_only(request: HttpRequest, slug: str) -> HttpResponse:
    if guide_context(slug) is None:
        raise Http404("No published guide here")
    return answer_as_served()


def no_queries(request: HttpRequest) -> HttpResponse:
    return answer_as_served()


urlpatterns = [
    *site_urlpatterns,
    path("bench/guide-queries/<slug:slug>/", queries_only),
    path("bench/no-queries/", no_queries),
]
