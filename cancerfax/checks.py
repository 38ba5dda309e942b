"""Deployment checks (`manage.py check --deploy`) for what Django's own checks cannot know:
settings that are right for a laptop and wrong for the public site."""

import os

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def production_settings(app_configs, **kwargs) -> list[Warning]:
    problems = []
    if not settings.STAFF_TWO_FACTOR:
        problems.append(
            Warning(
                "Staff sign in with a password alone.",
                hint="Remove STAFF_TWO_FACTOR=0: production needs an authenticator code too.",
                id="cancerfax.W001",
            )
        )
    if settings.MAILERS["default"]["BACKEND"].endswith("console.EmailBackend"):
        problems.append(
            Warning(
                "Emails to coordinators and families are printed, not sent.",
                hint="Set EMAIL_URL to the SMTP server (smtp+tls://user:password@host:587).",
                id="cancerfax.W002",
            )
        )
    if not settings.SITE_URL.startswith("https://"):
        problems.append(
            Warning(
                f"SITE_URL is {settings.SITE_URL}: links in the sitemap and emails need the "
                "public HTTPS address.",
                hint="Set SITE_URL to https://<the site's domain>.",
                id="cancerfax.W003",
            )
        )
    if not settings.DOCUMENT_CHECK_ISOLATED:
        problems.append(
            Warning(
                "Families' files are opened in a sandbox with limits but with the network and "
                "the filesystem of the worker.",
                hint="Remove DOCUMENT_CHECK_ISOLATED=0 unless the worker's container has no "
                "network and a read-only root.",
                id="cancerfax.W004",
            )
        )
    unset = [name for name in CONTACT_SETTINGS if name not in os.environ]
    if unset:
        problems.append(
            Warning(
                f"{', '.join(unset)} {'is' if len(unset) == 1 else 'are'} not set: families "
                "are shown the development defaults as the way to reach a person.",
                hint="Set CONTACT_EMAIL, CONTACT_PHONE, CONTACT_HOURS and CONTACT_ADDRESS.",
                id="cancerfax.W005",
            )
        )
    return problems


CONTACT_SETTINGS = ["CONTACT_EMAIL", "CONTACT_PHONE", "CONTACT_HOURS", "CONTACT_ADDRESS"]
