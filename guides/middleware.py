import re
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from . import views

GUIDE_PATH = re.compile(r"/guides/(?P<slug>[-a-zA-Z0-9_]+)/")


def cached_guides_first(get_response: Callable[[HttpRequest], HttpResponse]):
    """Answers a guide page that is already in the cache right after the static files, before
    the session, authentication and CSRF layers: a public page with no per-request data
    needs none of them, and a reader then costs about what a static file costs.

    The security headers, request id and logs come from the middleware before this one. A
    page that is not cached yet goes the usual way, where a database failure gets its 503."""

    def middleware(request: HttpRequest) -> HttpResponse:
        match = GUIDE_PATH.fullmatch(request.path_info)
        if match and request.method in ("GET", "HEAD"):
            request.get_host()  # ALLOWED_HOSTS, as the skipped middleware would check
            if views.cached_guide_page_if_ready(request, match["slug"]):
                response = views.guide_detail(request, slug=match["slug"])
                # Set by XFrameOptionsMiddleware on every other page.
                response.headers.setdefault("X-Frame-Options", settings.X_FRAME_OPTIONS)
                return response
        return get_response(request)

    return middleware
