"""The emails an inquiry owes. To the family: a receipt once the first documents have been
checked, a notice whenever a coordinator writes or asks for records, and a new link when
they ask for one. To the coordinators: an alert about a new inquiry, and one about news
from the family (once an hour at most per case).

None carries health details, nor anything of the case but its reference: email is not a
safe place for them. The family's emails give a fresh link to the case page, where the
content is; the coordinators' link to the case in the admin, where access is checked and
recorded. Replies go to the coordinators' mailbox (CONTACT_EMAIL), never to a no-reply
address.
"""

import logging

from django.conf import settings
from django.core.mail import EmailMessage
from django.db.models import F
from django.template.loader import render_to_string
from django.utils import timezone

from cancerfax.context_processors import contact_details

from .models import CaseLink, Document, Notification

logger = logging.getLogger(__name__)

Kind = Notification.Kind

SUBJECTS = {
    Kind.RECEIPT: "We have received your inquiry {reference}",
    Kind.NEW_INQUIRY: "New inquiry {reference}",
    Kind.NOTICE: "There is a new message about {reference}",
    Kind.LINK: "Your link to the case page for {reference}",
    Kind.NEWS: "News from the family on {reference}",
}
PURPOSES = {Kind.RECEIPT: "receipt", Kind.NOTICE: "notice", Kind.LINK: "asked"}


def build_message(notification: Notification) -> tuple[EmailMessage, CaseLink | None]:
    """The email, and the case link made for it (to be removed if it is not sent)."""
    inquiry = notification.inquiry
    # A ZIP file counts by the files taken out of it, as on the thank-you page.
    documents = inquiry.documents.counted()
    context = {
        "inquiry": inquiry,
        "admin_url": settings.SITE_URL + inquiry.get_admin_url(),
        "contact": contact_details(),
        "link_days": settings.CASE_LINK_DAYS,
        "alert_minutes": settings.FAMILY_ALERT_MINUTES,
    }
    if notification.kind in (Kind.RECEIPT, Kind.NEW_INQUIRY):
        # How many, never which: a file's name can itself be health data.
        context["accepted"] = documents.filter(state=Document.State.ACCEPTED).count()
        context["refused"] = documents.filter(state=Document.State.REFUSED).count()
    link = None
    if notification.to_family:
        link, token = CaseLink.issue(inquiry, PURPOSES[notification.kind])
        context["case_url"] = link.url_with(token)
        recipients = [inquiry.email]
    else:
        recipients = [settings.COORDINATORS_EMAIL]
    message = EmailMessage(
        SUBJECTS[notification.kind].format(reference=inquiry.reference),
        render_to_string(f"inquiries/email/{notification.kind}.txt", context),
        settings.DEFAULT_FROM_EMAIL,
        recipients,
        reply_to=[settings.CONTACT_EMAIL],
    )
    return message, link


def deliver(notification: Notification) -> bool:
    """Tries to send one notification and records how it went. Never raises: a mail server
    that is down must not turn a stored inquiry into an error page."""
    if notification.sent_at:
        return True
    # Claim this attempt first, so that a retry running at the same moment (cron, the admin
    # action) cannot send the same email twice.
    now = timezone.now()
    claimed = Notification.objects.filter(
        pk=notification.pk, sent_at__isnull=True, attempts=notification.attempts
    ).update(attempts=F("attempts") + 1, last_attempt_at=now)
    if not claimed:
        return False
    notification.attempts += 1
    notification.last_attempt_at = now
    link = None
    try:
        message, link = build_message(notification)
        message.send()
    except Exception as error:  # whatever the mail server did wrong is recorded, not raised
        notification.last_error = f"{type(error).__name__}: {error}"[:300]
        logger.warning(
            "Email %s for inquiry %s not sent (attempt %d): %s",
            notification.kind,
            notification.inquiry.reference,
            notification.attempts,
            type(error).__name__,
        )
        if link is not None:
            # A link nobody received must not stay usable.
            link.delete()
    else:
        notification.sent_at = timezone.now()
        notification.last_error = ""
    notification.save(update_fields=["last_error", "sent_at"])
    return notification.sent_at is not None
