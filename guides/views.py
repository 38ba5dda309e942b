import gzip
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.http import Http404, HttpRequest, HttpResponse, HttpResponsePermanentRedirect
from django.middleware.gzip import re_accepts_gzip
from django.shortcuts import render
from django.template.loader import render_to_string
from django.templatetags.static import static
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.utils.http import quote_etag
from django.views.decorators.gzip import gzip_page
from django.views.decorators.http import condition, require_safe

from cancerfax.caches import CACHE_ERRORS, cache_failed, cache_resting

from .models import Guide, Service, content_version

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


# An ETag and no Last-Modified: HTTP dates count whole seconds, and two saves within one
# second (or a page cached while a save was being committed) would share a date, so a client
# asking "changed since?" could be told no about a corrected page. The version is exact.
@require_safe
@condition(etag_func=lambda request, slug: _page_etag(request, slug))
def guide_detail(request: HttpRequest, slug: str) -> HttpResponse:
    page = cached_guide_page(request, slug)
    if page is None:
        raise Http404("No published guide here")
    # Compressed once when rendered, like a static file, rather than for every reader.
    if re_accepts_gzip.search(request.headers.get("Accept-Encoding", "")):
        response = HttpResponse(page.gzipped)
        response["Content-Encoding"] = "gzip"
        if page.etag:
            # Another representation of the same page: a weak ETag, as Django's
            # GZipMiddleware gives a page it compresses.
            response["ETag"] = f"W/{page.etag}"
    else:
        response = HttpResponse(page.html)
        if page.etag:
            response["ETag"] = page.etag
    patch_vary_headers(response, ["Accept-Encoding"])
    response["Content-Length"] = str(len(response.content))
    response["Cache-Control"] = "public, max-age=0, must-revalidate"
    return response


@dataclass(frozen=True)
class GuidePage:
    # Encoded and compressed once, when rendered, not for every reader.
    html: bytes
    gzipped: bytes
    # None when the page was rendered without knowing the content version (the cache could
    # not be reached): a browser's copy is then never said to be still good.
    etag: str | None


def cached_guide_page(request: HttpRequest, slug: str) -> GuidePage | None:
    """The rendered page, from the cache while no part of any guide has changed since.

    Asked for twice a request (the ETag, the body): looked up once."""
    pages = request.__dict__.setdefault("_guide_pages", {})
    if slug not in pages:
        pages[slug] = _guide_page(request, slug)
    return pages[slug]


def page_key(slug: str, version: int) -> str:
    return f"guide-page:{slug}:{version}"


# A page rendered for one content version never changes, so each worker also keeps the ones
# it has read in its own memory: a reader then costs one small read of the shared cache (the
# version), not the whole page. A new version is a new key; old ones are dropped.
_pages_in_memory: dict[str, GuidePage] = {}
_PAGES_IN_MEMORY = 32


def _stored_page(request: HttpRequest, slug: str) -> tuple[int | None, GuidePage | None]:
    """The content version, and the page rendered for it if a worker has kept one.

    (None, None) while the cache cannot be reached: the page is then rendered for each
    reader, slower but still there (cancerfax/caches.py). Asked for twice a request (the
    middleware, then the view): looked up once."""
    looked_up = request.__dict__.setdefault("_stored_guide_pages", {})
    if slug not in looked_up:
        looked_up[slug] = None, None
        if not cache_resting():
            try:
                looked_up[slug] = _from_cache(slug)
            except CACHE_ERRORS as error:
                cache_failed(error, "Guide pages rendered")
    return looked_up[slug]


def _from_cache(slug: str) -> tuple[int, GuidePage | None]:
    version = content_version()
    key = page_key(slug, version)
    page = _pages_in_memory.get(key)
    if page is None and settings.GUIDE_CACHE_SECONDS:
        page = cache.get(key)
        if page is not None:
            _keep_in_memory(key, page)
    return version, page


def _keep_in_memory(key: str, page: GuidePage) -> None:
    if len(_pages_in_memory) >= _PAGES_IN_MEMORY:
        _pages_in_memory.clear()
    _pages_in_memory[key] = page


def cached_guide_page_if_ready(request: HttpRequest, slug: str) -> GuidePage | None:
    """The page if it is in the cache already, without rendering it (nor any query)."""
    _, page = _stored_page(request, slug)
    if page is not None:
        request.__dict__.setdefault("_guide_pages", {})[slug] = page
    return page


def _guide_page(request: HttpRequest, slug: str) -> GuidePage | None:
    version, page = _stored_page(request, slug)
    if page is not None:
        return page
    context = guide_context(slug)
    if context is None:
        return None
    encoded = render_to_string("guides/guide_detail.html", context, request=request).encode()
    gzipped = gzip.compress(encoded, compresslevel=6, mtime=0)
    if version is None:
        return GuidePage(html=encoded, gzipped=gzipped, etag=None)
    page = GuidePage(html=encoded, gzipped=gzipped, etag=quote_etag(f"{slug}-{version}"))
    if settings.GUIDE_CACHE_SECONDS:
        key = page_key(slug, version)
        _keep_in_memory(key, page)
        try:
            cache.set(key, page, timeout=settings.GUIDE_CACHE_SECONDS)
        except CACHE_ERRORS as error:
            cache_failed(error, "Guide pages rendered")
    return page


def guide_context(slug: str) -> dict | None:
    """Everything the guide page shows, read from the database (8 queries)."""
    guide = Guide.objects.published().with_content().filter(slug=slug).first()
    if guide is None:
        return None
    return {
        "guide": guide,
        "citations": {reference.key: reference for reference in guide.references.all()},
        "services": list(Service.objects.all()),
    }


def _page_etag(request: HttpRequest, slug: str) -> str | None:
    page = cached_guide_page(request, slug)
    return page.etag if page else None


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
