from django.contrib.admin.apps import AdminConfig


class CoordinationAdminConfig(AdminConfig):
    """Django's admin, whose default site is the coordinators' site: every model registered
    with `admin.site` is then behind its two-factor sign-in."""

    default_site = "cancerfax.admin.CoordinationSite"

    def ready(self) -> None:
        super().ready()
        from . import checks  # noqa: F401  (registers the deployment checks)
