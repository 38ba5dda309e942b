from django.conf import settings
from django.http import HttpRequest


def site(request: HttpRequest) -> dict:
    return {"SITE_URL": settings.SITE_URL}


def contact(request: HttpRequest) -> dict:
    """How to reach a person, for the footer of every page."""
    return {"contact": contact_details()}


def contact_details() -> dict:
    return {
        "email": settings.CONTACT_EMAIL,
        "phone": settings.CONTACT_PHONE,
        "hours": settings.CONTACT_HOURS,
        "address": settings.CONTACT_ADDRESS,
    }
