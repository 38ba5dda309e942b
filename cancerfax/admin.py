"""The coordinators' admin site: a password, then a six-digit code from an authenticator app.

A stolen or guessed password alone must not open families' medical records, so with
STAFF_TWO_FACTOR (on whenever debug is off) the admin lets a staff member in only once this
session has also passed a TOTP code (django-otp). The first sign-in sets the app up.
"""

import base64
import io
import logging
import math
import re

import django_otp
import segno
from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth import logout as auth_logout
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.cache import never_cache
from django_otp.plugins.otp_totp.models import TOTPDevice

from .authenticator_setup import send_setup_link, setup_state, user_for_setup_token

logger = logging.getLogger(__name__)


def awaits_second_factor(request: HttpRequest) -> bool:
    """Signed in with a password, as staff, but not yet with a code."""
    user = request.user
    # OTPMiddleware gives the user is_verified(); a user signed in during this very request
    # has not met the middleware, and has passed no code yet.
    verified = getattr(user, "is_verified", lambda: False)()
    return settings.STAFF_TWO_FACTOR and user.is_active and user.is_staff and not verified


class SecondFactorForm(forms.Form):
    # Rendered by hand in admin/two_factor.html, for the one-time-code hints phones use.
    code = forms.CharField(label="Six-digit code", max_length=20)

    def __init__(self, device: TOTPDevice, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.device = device

    def clean_code(self) -> str:
        # Apps show the code as "123 456"; people type it either way.
        code = re.sub(r"[\s-]", "", self.cleaned_data["code"])
        if not re.fullmatch(r"\d{6}", code):
            raise ValidationError("Please type the six digits your app shows, with no letters.")
        # Locked, so that two requests cannot both spend the same code or both escape the
        # pause that follows wrong codes; committed before any error, so a wrong code counts.
        with transaction.atomic():
            device = TOTPDevice.objects.select_for_update().get(pk=self.device.pk)
            allowed, why = device.verify_is_allowed()
            matched = allowed and device.verify_token(code)
        if not allowed:
            wait = (why or {}).get("locked_until", timezone.now()) - timezone.now()
            seconds = max(1, math.ceil(wait.total_seconds()))
            raise ValidationError(
                f"There were several wrong codes, so please wait {seconds} "
                f"second{'' if seconds == 1 else 's'}, "
                "then type the code your app shows at that moment."
            )
        if not matched:
            raise ValidationError(
                "That code did not match. Codes change every 30 seconds: please type the one "
                "your app shows now. If it still fails, check that the phone's clock is right."
            )
        self.device = device
        return code


PENDING_KEY = "pending_authenticator"
SETUP_PERMIT_KEY = "authenticator_setup_permit"


def may_set_up(request: HttpRequest) -> bool:
    permit = request.session.get(SETUP_PERMIT_KEY) or {}
    return permit.get("user") == request.user.pk and constant_time_compare(
        permit.get("state", ""), setup_state(request.user)
    )


def authenticator_for(request: HttpRequest) -> tuple[TOTPDevice | None, bool]:
    """The user's confirmed authenticator, or the one this session is setting up (and True);
    (None, True) when there is none and this session may not set one up.

    A key being set up belongs to one session, opened through the set-up link: someone else
    who signs in with the same password sees no key at all."""
    user = request.user
    confirmed = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    if confirmed:
        return confirmed, False
    if not may_set_up(request):
        return None, True
    pending = TOTPDevice.objects.filter(
        pk=request.session.get(PENDING_KEY), user=user, confirmed=False
    ).first()
    if pending is None:
        with transaction.atomic():
            # One at a time per user, so that two first visits cannot leave two keys.
            get_user_model().objects.select_for_update().get(pk=user.pk)
            TOTPDevice.objects.filter(user=user, confirmed=False).delete()
            pending = TOTPDevice.objects.create(
                user=user, name="Authenticator app", confirmed=False
            )
        request.session[PENDING_KEY] = pending.pk
    return pending, True


def qr_code_svg(device: TOTPDevice) -> str:
    out = io.BytesIO()
    # A white border and background, so that phones read it in the admin's dark theme too.
    segno.make(device.config_url, error="m").save(
        out, kind="svg", xmldecl=False, omitsize=True, scale=5, border=4, light="#fff", dark="#000"
    )
    return out.getvalue().decode().strip()


def key_for_typing(device: TOTPDevice) -> str:
    """The secret as authenticator apps take it by hand: base32, in groups of four."""
    key = base64.b32encode(device.bin_key).decode().rstrip("=")
    return " ".join(key[i : i + 4] for i in range(0, len(key), 4))


class CoordinationSite(admin.AdminSite):
    site_header = "CancerFax coordination"
    site_title = "CancerFax admin"
    index_title = "Administration"
    # The sidebar only repeats the few links of the index, and costs the lists their width.
    enable_nav_sidebar = False

    def has_permission(self, request: HttpRequest) -> bool:
        return super().has_permission(request) and not awaits_second_factor(request)

    def _next_url(self, request: HttpRequest) -> str:
        wanted = request.POST.get("next") or request.GET.get("next") or ""
        if url_has_allowed_host_and_scheme(
            wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            return wanted
        return reverse("admin:index", current_app=self.name)

    def _to_second_factor(self, request: HttpRequest) -> HttpResponseRedirect:
        url = reverse("admin:two_factor", current_app=self.name)
        return HttpResponseRedirect(f"{url}?{urlencode({'next': self._next_url(request)})}")

    @method_decorator(never_cache)
    def login(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        # A half-signed-in visitor is sent on to the code, but may still sign in afresh,
        # as someone else, by sending the form.
        if request.method != "POST" and awaits_second_factor(request):
            return self._to_second_factor(request)
        response = super().login(request, extra_context)
        if request.method == "POST" and awaits_second_factor(request):
            # The password was right: the code comes next, on its own page.
            return self._to_second_factor(request)
        return response

    def get_urls(self):
        return [
            path("two-factor/", never_cache(self.second_factor), name="two_factor"),
            path(
                "two-factor/set-up/",
                never_cache(self.authenticator_setup),
                name="authenticator_setup",
            ),
            # Before Django's own logout, which is only for those fully signed in.
            path("logout/", never_cache(self.sign_out), name="logout"),
            *super().get_urls(),
        ]

    def sign_out(self, request: HttpRequest) -> HttpResponse:
        """Signing out must work between the password and the code too: a coordinator at a
        shared computer who stops there must not leave a half-open session behind."""
        if request.method == "POST" and awaits_second_factor(request):
            auth_logout(request)
            return HttpResponseRedirect(reverse("admin:login", current_app=self.name))
        return self.admin_view(self.logout)(request)

    def second_factor(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if not (user.is_active and user.is_staff):
            return HttpResponseRedirect(reverse("admin:login", current_app=self.name))
        if not awaits_second_factor(request):
            return HttpResponseRedirect(self._next_url(request))
        device, setting_up = authenticator_for(request)
        if device is None:
            return self._needs_setup_link(request)
        form = SecondFactorForm(device, request.POST or None)
        if request.method == "POST" and form.is_valid():
            if setting_up:
                form.device.confirmed = True
                form.device.save(update_fields=["confirmed"])
                TOTPDevice.objects.filter(user=user, confirmed=False).delete()
                del request.session[PENDING_KEY]
                request.session.pop(SETUP_PERMIT_KEY, None)
            # A new session key for the more trusted session, as Django does at sign-in.
            request.session.cycle_key()
            django_otp.login(request, form.device)
            logger.info(
                "Staff member %s passed the second factor%s",
                user.pk,
                " and set up an authenticator" if setting_up else "",
            )
            return HttpResponseRedirect(self._next_url(request))
        context = {
            **self.each_context(request),
            "title": "Set up your authenticator app" if setting_up else "Type your code",
            "form": form,
            "setting_up": setting_up,
            "next": self._next_url(request),
        }
        if setting_up:
            context |= {"qr_code": qr_code_svg(device), "typed_key": key_for_typing(device)}
        return TemplateResponse(request, "admin/two_factor.html", context)

    def _needs_setup_link(self, request: HttpRequest) -> HttpResponse:
        sent = None
        if request.method == "POST" and "send_link" in request.POST:
            sent = send_setup_link(request.user)
        context = {
            **self.each_context(request),
            "title": "Set up your authenticator app",
            "needs_link": True,
            "sent": sent,
            "next": self._next_url(request),
        }
        return TemplateResponse(request, "admin/two_factor.html", context)

    def authenticator_setup(self, request: HttpRequest) -> HttpResponse:
        """The link from the email: this browser may now set up the authenticator, once the
        password has been typed here too (before or after opening the link)."""
        user = user_for_setup_token(request.GET.get("token", ""))
        if user is None:
            context = {
                **self.each_context(request),
                "title": "This link no longer works",
                "hours": f"{settings.AUTHENTICATOR_SETUP_LINK_HOURS} hours",
            }
            return TemplateResponse(
                request, "admin/authenticator_link_expired.html", context, status=400
            )
        request.session[SETUP_PERMIT_KEY] = {"user": user.pk, "state": setup_state(user)}
        if request.user.is_authenticated and request.user.pk == user.pk:
            return HttpResponseRedirect(reverse("admin:two_factor", current_app=self.name))
        return HttpResponseRedirect(reverse("admin:login", current_app=self.name))
