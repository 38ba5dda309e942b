from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.sitemaps import Sitemap
from django.urls import reverse

from .models import Guide


class SiteSitemap(Sitemap):
    """Addresses built from SITE_URL, never from the Host header of the request."""

    protocol = urlsplit(settings.SITE_URL).scheme

    def get_domain(self, site=None) -> str:
        return urlsplit(settings.SITE_URL).netloc


class GuideSitemap(SiteSitemap):
    changefreq = "monthly"

    def items(self):
        return Guide.objects.published().order_by("slug")

    def lastmod(self, guide: Guide):
        return guide.updated  # the current revision's publication


class PageSitemap(SiteSitemap):
    def items(self) -> list[str]:
        return ["home", "guides:list"]

    def location(self, name: str) -> str:
        return reverse(name)


sitemaps = {"pages": PageSitemap, "guides": GuideSitemap}
