"""`make bench` only: the site's pages, plus two that take a cold render apart.

Both answer the guide page's own bytes, compressed, from the static copy the benchmark made,
through the same middleware as a cold render, without rendering anything:
- /bench/guide-queries/<slug>/ first runs the page's database queries exactly as the page
  does (guides.views.guide_context). No render of the page can be faster: it is the ceiling
  of a cold render.
- /bench/no-queries/ runs none: what Django's request handling alone costs.
Measured side by side with the static copy, they show where a cold render's time goes.

And /bench/plain-upload/: a file stored by a plain Django form with a FileField, Django's
own upload handlers and storage, no check of any kind: what a family's upload would cost
without the site's safety, beside the inquiry form.
"""

import uuid
from functools import cache
from pathlib import Path

from django import forms
from django.conf import settings
from django.core.files.storage import FileSystemStorage
from django.core.files.uploadhandler import MemoryFileUploadHandler, TemporaryFileUploadHandler
from django.http import Http404, HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect
from django.urls import path
from django.views.decorators.csrf import csrf_exempt, csrf_protect

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


class PlainUpload(forms.Form):
    document = forms.FileField()


PLAIN_STORAGE = FileSystemStorage(location=Path(settings.DATA_DIR) / "bench-plain")


@csrf_exempt
def plain_upload(request: HttpRequest) -> HttpResponse:
    # Django's own handlers, as a project that never changed them has (set before the body
    # is read, hence the CSRF check below rather than by the middleware).
    request.upload_handlers = [
        MemoryFileUploadHandler(request),
        TemporaryFileUploadHandler(request),
    ]
    return _plain_upload(request)


@csrf_protect
def _plain_upload(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = PlainUpload(request.POST, request.FILES)
        if form.is_valid():
            PLAIN_STORAGE.save(f"{uuid.uuid4().hex}.pdf", form.cleaned_data["document"])
            return redirect("/bench/plain-upload/")
        return HttpResponse(status=400)
    return HttpResponse(f'<input name="csrfmiddlewaretoken" value="{get_token(request)}">')


urlpatterns = [
    *site_urlpatterns,
    path("bench/guide-queries/<slug:slug>/", queries_only),
    path("bench/no-queries/", no_queries),
    path("bench/plain-upload/", plain_upload),
]
