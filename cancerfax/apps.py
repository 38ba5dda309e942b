from django.contrib.admin.apps import AdminConfig
from django_otp.plugins.otp_totp.apps import DefaultConfig as TOTPConfig


class CoordinationAdminConfig(AdminConfig):
    """Django's admin, whose default site is the coordinators' site: every model registered
    with `admin.site` is then behind its two-factor sign-in."""

    default_site = "cancerfax.admin.CoordinationSite"

    def ready(self) -> None:
        super().ready()
        from . import checks  # noqa: F401  (registers the deployment checks)


class AuthenticatorsConfig(TOTPConfig):
    """django-otp's TOTP devices, under a heading coordinators' managers understand: this is
    where a lost phone's authenticator is deleted."""

    verbose_name = "Two-factor sign-in"
