import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, IntegrityError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_safe

from cancerfax.cache_outage import over_limit
from cancerfax.middleware import client_address

from .documents.pipeline import queue_checks
from .forms import InquiryForm
from .models import STORAGE_ERRORS, Document, Inquiry

logger = logging.getLogger(__name__)

# Which inquiry this browser sent, for the thank-you page and the "already sent" notice: a
# signed cookie rather than the session, so that showing the reference of an inquiry that
# is stored never depends on one more database write (nor does a family need a session).
SENT_COOKIE = "inquiry_sent"
SENT_SALT = "inquiries.sent"
SENT_SECONDS = 30 * 60


def sent_reference(request: HttpRequest) -> str | None:
    return request.get_signed_cookie(
        SENT_COOKIE, default=None, salt=SENT_SALT, max_age=SENT_SECONDS
    )


def held_for(request: HttpRequest) -> str:
    """Whose held files these are: a keyed hash of the client's address, never the address."""
    return salted_hmac("inquiries.held", client_address(request), algorithm="sha256").hexdigest()


def too_many_attempts(request: HttpRequest) -> bool:
    """Every sending of the form counts, four times as loosely as stored inquiries: a family
    correcting a mistake must not be locked out, a bot posting junk must."""
    count, period = settings.INQUIRY_RATE_LIMIT.split("/")
    return over_limit(request, "inquiries.attempts", f"{int(count) * 4}/{period}", True)


def too_many_inquiries(request: HttpRequest) -> bool:
    return over_limit(request, "inquiries.stored", settings.INQUIRY_RATE_LIMIT, True)


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def new_inquiry(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        form = InquiryForm(initial={"submission_id": uuid.uuid4()})
        # After "Back", the browser shows the form again, filled in: say that it was sent.
        return render(
            request, "inquiries/new.html", {"form": form, "already_sent": sent_reference(request)}
        )

    form = InquiryForm(request.POST, request.FILES)
    if too_many_attempts(request):
        # What they typed is shown again; their files are not kept for a sender past the
        # limit (a bot's would fill the disk), so they choose them again.
        form.is_valid()
        form.discard_documents()
        return rate_limited(request, form)
    if not form.is_valid():
        form.hold_files(client=held_for(request))
        return render(request, "inquiries/new.html", {"form": form}, status=400)

    already = Inquiry.objects.filter(submission_id=form.cleaned_data["submission_id"]).first()
    if already is None and too_many_inquiries(request):
        form.hold_files(client=held_for(request))
        return rate_limited(request, form)
    if already is None:
        try:
            inquiry = form.save()
        except IntegrityError:
            # The same form sent twice at once: the other request stored it.
            already = Inquiry.objects.filter(
                submission_id=form.cleaned_data["submission_id"]
            ).first()
            if already is None:
                raise
        except (DatabaseError, *STORAGE_ERRORS) as error:
            logger.error("Inquiry not saved: %s", type(error).__name__)
            form.add_error(
                None,
                "We could not save your inquiry just now, and nothing was stored. Please try "
                "again in a few minutes.",
            )
            return render(request, "inquiries/new.html", {"form": form}, status=503)
        else:
            logger.info("Inquiry %s received", inquiry.reference)
            try:
                queue_checks(inquiry)
            except DatabaseError as error:
                # Stored, its documents waiting in quarantine: a worker finds them anyway. The
                # family must hear that it arrived, not that something failed.
                logger.error(
                    "Checks for %s left to the workers: %s", inquiry.reference, type(error).__name__
                )
    if already is not None:
        form.discard_documents()
        inquiry = already
    response = redirect("inquiries:thank_you")
    response.set_signed_cookie(
        SENT_COOKIE,
        inquiry.reference,
        salt=SENT_SALT,
        max_age=SENT_SECONDS,
        path="/inquiries/",  # only the form and the thank-you page read it
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",
    )
    return response


@never_cache
@require_safe
def thank_you(request: HttpRequest) -> HttpResponse:
    reference = sent_reference(request)
    if not reference:
        return redirect("inquiries:new")
    inquiry = Inquiry.objects.filter(reference=reference).first()
    # What was taken out of a ZIP file is shown under it.
    documents = inquiry.documents.all() if inquiry else Document.objects.none()
    files = list(documents.filter(parent=None).prefetch_related("members"))
    checking = documents.unsettled().exists()
    # Refreshes by itself while files are being checked, unless the family turned it off
    # (or it has taken so long that the page would refresh in vain).
    waited = timezone.now() - inquiry.received_at if inquiry else timedelta(0)
    slow = checking and waited > timedelta(minutes=10)
    context = {
        "reference": reference,
        "files": files,
        "checking": checking,
        "slow": slow,
        "refresh": checking and not slow and request.GET.get("refresh") != "off",
        # Counted as the family counts files: a disc by its scans.
        "refused": documents.counted().filter(state=Document.State.REFUSED).count(),
        "sent": documents.counted().count(),
    }
    return render(request, "inquiries/thank_you.html", context)


@require_safe
def privacy(request: HttpRequest) -> HttpResponse:
    return render(
        request, "inquiries/privacy.html", {"retention_days": settings.DOCUMENT_RETENTION_DAYS}
    )


def rate_limited(request: HttpRequest, form: InquiryForm) -> HttpResponse:
    """The form again, as the family filled it in, with when they may send it."""
    count, period = settings.INQUIRY_RATE_LIMIT.split("/")
    unit = {"s": "second", "m": "minute", "h": "hour", "d": "day"}[period[-1]]
    number = int(period[:-1] or 1)
    wait = f"{number} {unit}s" if number > 1 else f"an {unit}" if unit == "hour" else f"a {unit}"
    context = {"form": form, "rate_limited": True, "wait": wait}
    return render(request, "inquiries/new.html", context, status=429)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    return render(request, "inquiries/csrf_failure.html", status=403)
