"""`make bench` only: the site's settings, with bench/urls.py as the address book."""

from cancerfax.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
