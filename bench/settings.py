"""`make bench` only: the site's settings, with bench/urls.py as the address book."""

import os

from cancerfax.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"

# BENCH_CACHE=none: the site with no cache configured at all.
if os.environ.get("BENCH_CACHE") == "none":
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
