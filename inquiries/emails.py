"""The emails an inquiry owes: a receipt to the sender and an alert to the coordinators, both
sent by a worker once the inquiry's documents have been checked.

Neither carries health details: email is not a safe place for them. They say how many files
were received and how many were not, never which. The coordinators' alert links to the
inquiry in the admin, where access is checked and recorded.
"""

import logging

from django.conf import settings
from django.core.mail import EmailMessage
from django.db.models import F
from django.template.loader import render_to_string
from django.utils import timezone

from .models import Document, Notification

logger = logging.getLogger(__name__)


def build_message(notification: Notification) -> EmailMessage:
    inquiry = notification.inquiry
    # A ZIP file counts by the files taken out of it, as on the thank-you page.
    documents = inquiry.documents.counted()
    context = {
        "inquiry": inquiry,
        "admin_url": settings.SITE_URL + inquiry.get_admin_url(),
        # How many, never which: a file's name can itself be health data.
        "accepted": documents.filter(state=Document.State.ACCEPTED).count(),
        "refused": documents.filter(state=Document.State.REFUSED).count(),
    }
    if notification.kind == Notification.Kind.RECEIPT:
        subject = f"We have received your inquiry {inquiry.reference}"
        body = render_to_string("inquiries/email/receipt.txt", context)
        recipients = [inquiry.email]
    else:
        subject = f"New inquiry {inquiry.reference}"
        body = render_to_string("inquiries/email/new_inquiry.txt", context)
        recipients = [settings.COORDINATORS_EMAIL]
    return EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)


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
    try:
        build_message(notification).send()
    except Exception as error:  # whatever the mail server did wrong is recorded, not raised
        notification.last_error = f"{type(error).__name__}: {error}"[:300]
        logger.warning(
            "Email %s for inquiry %s not sent (attempt %d): %s",
            notification.kind,
            notification.inquiry.reference,
            notification.attempts,
            type(error).__name__,
        )
    else:
        notification.sent_at = timezone.now()
        notification.last_error = ""
    notification.save(update_fields=["last_error", "sent_at"])
    return notification.sent_at is not None
