"""Emails the guide editors about guides whose clinical review falls due in the next 30
days, or is overdue. For cron, once a day or once a week."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage
from django.core.management.base import BaseCommand
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from guides.models import Guide

EDITOR_GROUPS = ["Guide editors", "Clinical approvers"]


class Command(BaseCommand):
    help = "Emails editors about guides due for review within 30 days, and overdue ones."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--days", type=int, default=30, help="How far ahead to look.")

    def handle(self, *args, days: int, **options) -> None:
        today = timezone.localdate()
        due = list(Guide.objects.due_for_review(days, today).order_by("next_review_due"))
        if not due:
            self.stdout.write("No guide is due for review.")
            return
        editors = (
            get_user_model()
            .objects.filter(is_active=True, groups__name__in=EDITOR_GROUPS)
            .exclude(email="")
            .values_list("email", flat=True)
            .distinct()
        )
        recipients = sorted(set(editors)) or [settings.COORDINATORS_EMAIL]
        context = {
            "overdue": [guide for guide in due if guide.next_review_due < today],
            "soon": [guide for guide in due if guide.next_review_due >= today],
            "days": days,
            "admin_url": settings.SITE_URL + reverse("admin:guides_guide_changelist"),
        }
        subject = f"Guides due for clinical review: {len(due)}"
        body = render_to_string("guides/email/review_reminder.txt", context)
        # One email to each editor, so that nobody sees the others' addresses.
        for recipient in recipients:
            EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, [recipient]).send()
        self.stdout.write(f"Reminded {len(recipients)} editors about {len(due)} guides.")
