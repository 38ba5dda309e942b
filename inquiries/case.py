"""The family's case page: reached from a link in an email, then a session for that one case.

A link is opened with one more click (mail scanners fetch links by themselves, and must not
spend them), and that click starts a fresh session holding nothing but this case: it ends
after SESSION_COOKIE_AGE without a request, or when the family signs out. Nothing here ever
names a case in a URL; the token travels in the query string, which no access log keeps.
"""

import logging
import uuid
from functools import partial, wraps

from django.conf import settings
from django.contrib.auth import logout
from django.db import DatabaseError, transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from cancerfax.cache_outage import over_limit

from .documents.pipeline import queue_checks
from .forms import CaseReplyForm, NewLinkForm
from .models import (
    FAMILY_STATUS,
    STORAGE_ERRORS,
    CaseEvent,
    CaseLink,
    Inquiry,
    Message,
    Notification,
    RecordRequest,
    queue_notification,
)
from .views import held_for

logger = logging.getLogger(__name__)

CASE_KEY = "case:inquiry"
LINK_KEY = "case:link"


def _link_refused(request: HttpRequest) -> HttpResponse:
    """The same calm page for a link that is wrong, used, expired or of an erased case."""
    context = {"form": NewLinkForm(), "link_days": settings.CASE_LINK_DAYS}
    return render(request, "inquiries/case_link_refused.html", context, status=410)


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def open_case(request: HttpRequest) -> HttpResponse:
    response = _open_case(request)
    # The token is in this page's address: what is fetched or followed from it is told the
    # site only ("no-referrer" would send its button's POST as Origin: null, which the CSRF
    # check refuses).
    response["Referrer-Policy"] = "strict-origin"
    return response


def _open_case(request: HttpRequest) -> HttpResponse:
    token = request.POST.get("key") if request.method == "POST" else request.GET.get("key")
    link = CaseLink.usable(token or "")
    if link is None:
        return _link_refused(request)
    if request.method != "POST":
        return render(request, "inquiries/case_open.html", {"key": token})
    if not link.use():
        return _link_refused(request)
    # A new session for this case alone: whatever this browser was signed in to ends.
    logout(request)
    request.session[CASE_KEY] = link.inquiry_id
    request.session[LINK_KEY] = link.pk
    CaseEvent.objects.create(inquiry_id=link.inquiry_id, kind=CaseEvent.Kind.OPENED, link=link)
    return redirect("inquiries:case")


def case_session(view):
    """The view gets the inquiry of this session's case, or the family is sent to ask for a
    new link."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs):
        inquiry = None
        if (pk := request.session.get(CASE_KEY)) is not None:
            inquiry = Inquiry.objects.filter(pk=pk).first()
        if inquiry is None:
            return render(request, "inquiries/case_ended.html", {"form": NewLinkForm()}, status=403)
        link = CaseLink.objects.filter(pk=request.session.get(LINK_KEY)).first()
        return view(request, inquiry, link, *args, **kwargs)

    return never_cache(wrapped)


def case_context(inquiry: Inquiry, form: CaseReplyForm) -> dict:
    documents = inquiry.documents.filter(parent=None).prefetch_related("members")
    heading, meaning = inquiry.status_for_family
    requests = list(inquiry.record_requests.select_related("kind"))
    return {
        "inquiry": inquiry,
        "status_heading": heading,
        "status_meaning": meaning,
        "messages_on_case": inquiry.messages.all(),
        "outstanding": [r for r in requests if r.state == RecordRequest.State.REQUESTED],
        "answered": [r for r in requests if r.state != RecordRequest.State.REQUESTED],
        "steps": [(status, FAMILY_STATUS[status][0]) for status in Inquiry.Status],
        "files": documents,
        "checking": inquiry.documents.unsettled().exists(),
        "form": form,
    }


def too_many_sendings(request: HttpRequest, inquiry: Inquiry) -> bool:
    return over_limit(
        request,
        f"inquiries.case.{inquiry.pk}",
        settings.CASE_SENDING_RATE_LIMIT,
        True,
        what="Case page sendings",
    )


@require_http_methods(["GET", "HEAD", "POST"])
@case_session
def case(request: HttpRequest, inquiry: Inquiry, link: CaseLink | None) -> HttpResponse:
    if request.method != "POST":
        CaseEvent.objects.create(inquiry=inquiry, kind=CaseEvent.Kind.VIEWED, link=link)
        form = CaseReplyForm(inquiry=inquiry, initial={"submission_id": uuid.uuid4()})
        return render(request, "inquiries/case.html", case_context(inquiry, form))
    form = CaseReplyForm(request.POST, request.FILES, inquiry=inquiry)
    if too_many_sendings(request, inquiry):
        form.is_valid()
        form.discard_documents()
        context = case_context(inquiry, form) | {"rate_limited": True}
        return render(request, "inquiries/case.html", context, status=429)
    if inquiry.is_closed:
        form.discard_documents()
        return render(request, "inquiries/case.html", case_context(inquiry, form), status=409)
    if not form.is_valid():
        form.hold_files(client=held_for(request))
        return render(request, "inquiries/case.html", case_context(inquiry, form), status=400)
    try:
        message, count = form.save(link)
    except (DatabaseError, *STORAGE_ERRORS) as error:
        logger.error("Case page sending not saved: %s", type(error).__name__)
        form.add_error(
            None,
            "We could not save what you sent just now, and nothing was stored. Please try "
            "again in a few minutes.",
        )
        return render(request, "inquiries/case.html", case_context(inquiry, form), status=503)
    if count:
        try:
            queue_checks(inquiry)
        except DatabaseError as error:
            logger.error(
                "Checks for %s left to the workers: %s", inquiry.reference, type(error).__name__
            )
    request.session["case:sent"] = {"message": message is not None, "files": count}
    return redirect("inquiries:case_sent")


@require_http_methods(["GET", "HEAD"])
@case_session
def case_sent(request: HttpRequest, inquiry: Inquiry, link: CaseLink | None) -> HttpResponse:
    sent = request.session.get("case:sent") or {}
    return render(request, "inquiries/case_sent.html", {"inquiry": inquiry, "sent": sent})


@require_http_methods(["GET", "HEAD", "POST"])
@case_session
def withdraw(request: HttpRequest, inquiry: Inquiry, link: CaseLink | None) -> HttpResponse:
    """The family asks to withdraw its consent: the coordinators are told, close the case
    and erase it (erasure is theirs to do, as the privacy notice says)."""
    if request.method == "POST":
        with transaction.atomic():
            if inquiry.withdrawal_asked_at is None:
                Inquiry.objects.filter(pk=inquiry.pk).update(withdrawal_asked_at=timezone.now())
                Message.objects.create(
                    inquiry=inquiry,
                    sender=Message.Sender.FAMILY,
                    link=link,
                    text="I withdraw my consent. Please stop using the patient’s information "
                    "and delete it.",
                )
                CaseEvent.objects.create(inquiry=inquiry, kind=CaseEvent.Kind.WITHDRAWAL, link=link)
                inquiry.news_from_family()
        return redirect("inquiries:case_withdrawn")
    return render(request, "inquiries/case_withdraw.html", {"inquiry": inquiry})


@require_http_methods(["GET", "HEAD"])
@case_session
def withdrawn(request: HttpRequest, inquiry: Inquiry, link: CaseLink | None) -> HttpResponse:
    return render(request, "inquiries/case_withdrawn.html", {"inquiry": inquiry})


@require_POST
def sign_out(request: HttpRequest) -> HttpResponse:
    if (pk := request.session.get(CASE_KEY)) is not None:
        link = request.session.get(LINK_KEY)
        CaseEvent.objects.create(inquiry_id=pk, kind=CaseEvent.Kind.SIGNED_OUT, link_id=link)
    request.session.flush()
    return render(request, "inquiries/case_signed_out.html", {"form": NewLinkForm()})


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def new_link(request: HttpRequest) -> HttpResponse:
    """A new link by email, for a family that lost theirs. The answer is the same whether
    the reference and the address match or not, and asking is rate-limited."""
    if request.method != "POST":
        return render(request, "inquiries/case_new_link.html", {"form": NewLinkForm()})
    form = NewLinkForm(request.POST)
    limited = over_limit(
        request, "inquiries.case_link", settings.CASE_LINK_RATE_LIMIT, True, what="Link requests"
    )
    if limited:
        context = {"form": form, "rate_limited": True}
        return render(request, "inquiries/case_new_link.html", context, status=429)
    if not form.is_valid():
        return render(request, "inquiries/case_new_link.html", {"form": form}, status=400)
    inquiry = form.matching_inquiry()
    if inquiry is not None:
        with transaction.atomic():
            CaseEvent.objects.create(inquiry=inquiry, kind=CaseEvent.Kind.NEW_LINK)
            notification = Notification.objects.create(inquiry=inquiry, kind=Notification.Kind.LINK)
            transaction.on_commit(partial(queue_notification, notification))
    return render(request, "inquiries/case_link_sent.html", {})
