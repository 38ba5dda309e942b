from django.contrib import admin
from django.contrib.sitemaps.views import sitemap
from django.urls import include, path

from guides import views as guide_views
from guides.sitemaps import sitemaps

urlpatterns = [
    path("", guide_views.home, name="home"),
    path("guides/", include("guides.urls")),
    path("inquiries/", include("inquiries.urls")),
    path("admin/", admin.site.urls),
    path(
        "sitemap.xml",
        sitemap,
        {"sitemaps": sitemaps},
        name="django.contrib.sitemaps.views.sitemap",
    ),
    path("robots.txt", guide_views.robots_txt, name="robots_txt"),
    path("favicon.ico", guide_views.favicon),
]
