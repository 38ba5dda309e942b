"""Setting up an authenticator app needs more than the password: a link sent to the
person's own inbox. Otherwise whoever learnt the password first, before its owner ever
signed in or after their phone was reset, would own the second factor too."""

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.core.cache import cache
from django.core.mail import EmailMessage
from django.tasks import task
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.crypto import constant_time_compare, salted_hmac
from django.utils.http import urlencode
from django_otp.plugins.otp_totp.models import TOTPDevice

from .cache_outage import CACHE_ERRORS, cache_failed

logger = logging.getLogger(__name__)

SETUP_SALT = "cancerfax.admin.authenticator-setup"
# A person who clicks twice gets one email; someone with the password cannot flood the inbox.
SETUP_LINK_PAUSE = 5 * 60


def setup_state(user) -> str:
    """Changes when the user's password changes or an authenticator is confirmed, so that a
    set-up link ends once it has been used, and never works after the password it was sent
    for was changed."""
    confirmed = sorted(
        TOTPDevice.objects.filter(user=user, confirmed=True).values_list("pk", flat=True)
    )
    state = f"{user.pk}:{user.password}:{confirmed}"
    return salted_hmac(SETUP_SALT, state, algorithm="sha256").hexdigest()


def setup_link(user) -> str:
    """A link that lets one browser set up the user's authenticator."""
    token = signing.dumps({"user": user.pk, "state": setup_state(user)}, salt=SETUP_SALT)
    # In the query string, which no access log records, rather than the path.
    query = urlencode({"token": token})
    return f"{settings.SITE_URL}{reverse('admin:authenticator_setup')}?{query}"


def user_for_setup_token(token: str):
    try:
        data = signing.loads(
            token, salt=SETUP_SALT, max_age=settings.AUTHENTICATOR_SETUP_LINK_HOURS * 3600
        )
    except signing.BadSignature:
        return None
    user = get_user_model().objects.filter(pk=data.get("user"), is_active=True, is_staff=True)
    user = user.first()
    if user is None or not constant_time_compare(data.get("state", ""), setup_state(user)):
        return None
    return user


@task
def send_authenticator_setup_link(user_id: int) -> None:
    # The link is made when the email goes, so that it is never stored with the task.
    user = get_user_model().objects.get(pk=user_id)
    context = {"link": setup_link(user), "hours": settings.AUTHENTICATOR_SETUP_LINK_HOURS}
    EmailMessage(
        "Set up your authenticator app for CancerFax coordination",
        render_to_string("admin/email/authenticator_setup.txt", context),
        to=[user.email],
    ).send()


def send_setup_link(user) -> str:
    """Emails the set-up link to the person's own address, at most once every few minutes;
    returns what to tell them."""
    if not user.email:
        return (
            "Your account has no email address, so we cannot send you a link. Please ask the "
            "person who manages CancerFax accounts for one."
        )
    try:
        fresh = cache.add(f"authenticator-setup-link:{user.pk}", True, SETUP_LINK_PAUSE)
    except CACHE_ERRORS as error:
        cache_failed(error, "Set-up link sent")
        fresh = True
    if fresh:
        send_authenticator_setup_link.enqueue(user.pk)
        logger.info("Staff member %s asked for an authenticator set-up link", user.pk)
    return (
        "We have sent a set-up link to the email address of your account. Open it in this "
        f"browser within {settings.AUTHENTICATOR_SETUP_LINK_HOURS} hours. It may take a few "
        "minutes to arrive; please look in your spam folder too."
    )
