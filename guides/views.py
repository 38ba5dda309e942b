from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect
from django.shortcuts import get_object_or_404, render
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.gzip import gzip_page
from django.views.decorators.http import require_safe

from .models import Guide, Service

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


@gzip_page
@require_safe
def guide_detail(request: HttpRequest, slug: str) -> HttpResponse:
    guide = get_object_or_404(Guide.objects.published().with_content(), slug=slug)
    context = {
        "guide": guide,
        "citations": {reference.key: reference for reference in guide.references.all()},
        "services": Service.objects.all(),
    }
    return render(request, "guides/guide_detail.html", context)


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
