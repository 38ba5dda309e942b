"""`make bench` only: the site's pages, plus two that exist only to be measured beside them.

- /bench/cache-page/<slug>/: the guide page the way most Django sites serve one, rendered
  from the database by a view behind Django's stock `cache_page` (and `gzip_page`, for the
  same compressed bytes a browser asks for): what the published revision must beat.
- /bench/plain-upload/: a file stored by a plain Django form with a FileField, Django's own
  upload handlers and storage, no check of any kind: what a family's upload would cost
  without the site's safety, beside the inquiry form.
"""

import uuid
from pathlib import Path

from django import forms
from django.conf import settings
from django.core.files.storage import FileSystemStorage
from django.core.files.uploadhandler import MemoryFileUploadHandler, TemporaryFileUploadHandler
from django.http import Http404, HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.cache import cache_page
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.gzip import gzip_page

from cancerfax.urls import urlpatterns as site_urlpatterns
from guides.models import Guide
from guides.pages import page_context


@cache_page(300)
@gzip_page
def stock_guide(request: HttpRequest, slug: str) -> HttpResponse:
    guide = Guide.objects.with_content().filter(slug=slug).first()
    revision = guide.current_revision() if guide else None
    if revision is None:
        raise Http404("No published guide here")
    context = page_context(guide, revision, draft=False)
    return render(request, "guides/guide_detail.html", context)


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
    path("bench/cache-page/<slug:slug>/", stock_guide),
    path("bench/plain-upload/", plain_upload),
]
