"""Settings for CancerFax Guides, read from the environment.

Every variable is listed in the README. Defaults are safe for production: debug is off
unless asked for, and a secret key must then be given. A value that cannot be understood
stops start-up with a message that names the variable.
"""

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

from cancerfax.environment import (
    env_bool,
    env_database,
    env_documents_bucket,
    env_int,
    env_list,
    env_mailer,
    env_networks,
    env_rate,
)

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DJANGO_DEBUG", default=False)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off. "
            "For local development, set DJANGO_DEBUG=1 instead."
        )
    SECRET_KEY = "development-only-key-never-used-with-debug-off"  # noqa: S105

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])

# The public address of the site, used for canonical links, the sitemap and Open Graph
# tags, so that they never depend on the Host header a client sent.
SITE_URL = os.environ.get("SITE_URL", "http://127.0.0.1:8000").rstrip("/")
if not SITE_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured(f"SITE_URL must start with http:// or https:// (got {SITE_URL!r}).")

INSTALLED_APPS = [
    # Django's admin, with the coordinators' site (two-factor sign-in) as its default.
    "cancerfax.apps.CoordinationAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.sitemaps",
    "crispy_forms",
    "crispy_bootstrap5",
    "django_countries",
    "simple_history",
    "axes",
    "django_otp",
    "cancerfax.apps.AuthenticatorsConfig",
    "django_tasks_db",
    "guides",
    "inquiries",
]

MIDDLEWARE = [
    "cancerfax.logs.request_ids",
    "cancerfax.health.health_check_first",
    "django.middleware.security.SecurityMiddleware",
    # Django's CSP middleware, building a policy with no nonce once (cancerfax/middleware.py).
    "cancerfax.middleware.ContentSecurityPolicyMiddleware",
    "cancerfax.middleware.permissions_policy",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Tells whether this session also passed the second factor (request.user.is_verified()).
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    "cancerfax.middleware.ServiceUnavailableMiddleware",
    # Last, as django-axes asks: it turns a locked-out sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

# django-axes checks every sign-in first and locks a username at one address out after
# repeated failures; Django's own backend then checks the password.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = env_int("LOGIN_LOCKOUT_MINUTES", 30) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "admin/locked_out.html"
AXES_VERBOSE = False

# Staff sign in with a password and a six-digit code from an authenticator app (TOTP). On
# by default whenever debug is off; STAFF_TWO_FACTOR=0 turns it off for development only.
STAFF_TWO_FACTOR = env_bool("STAFF_TWO_FACTOR", default=not DEBUG)
# Setting up the authenticator app needs a link sent to the person's email address, valid
# this long; the password alone never shows the key.
AUTHENTICATOR_SETUP_LINK_HOURS = env_int("AUTHENTICATOR_SETUP_LINK_HOURS", 24)
# The name an authenticator app shows beside the codes.
OTP_TOTP_ISSUER = "CancerFax coordination"
# Authenticator keys are never shown again in the admin once set.
OTP_ADMIN_HIDE_SENSITIVE_DATA = True

ROOT_URLCONF = "cancerfax.urls"
WSGI_APPLICATION = "cancerfax.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",
                "cancerfax.context_processors.site",
                "cancerfax.context_processors.contact",
            ],
        },
    },
]

DATA_DIR = Path(os.environ.get("DATA_DIR", "").strip() or BASE_DIR / "var")
# The data folder holds the SQLite database (sessions, authenticator keys), documents, the
# cache and uploads: everything this process creates is private to the server's user, and
# so is the folder and what an earlier start may have left in it, whatever the umask the
# process was started with.
os.umask(0o077)
DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
DATA_DIR.chmod(0o700)
for _entry in DATA_DIR.iterdir():
    _entry.chmod(0o700 if _entry.is_dir() else 0o600)

DATABASES = {"default": env_database("DATABASE_URL", f"sqlite:///{DATA_DIR / 'db.sqlite3'}")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Argon2 first: new and changed passwords use it; older hashes are upgraded at next sign-in.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]

# Coordinators' sessions end after 30 minutes without a request: an unattended screen must
# not stay signed in to health data.
SESSION_COOKIE_AGE = 30 * 60
SESSION_SAVE_EVERY_REQUEST = True

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
# One date style everywhere, pages and admin alike: "16 April 2026".
FORMAT_MODULE_PATH = ["cancerfax.formats"]
TIME_ZONE = os.environ.get("DJANGO_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "documents": {
        # Django's file storage, which also removes a file whose writing failed midway.
        "BACKEND": "inquiries.storage.WholeFileSystemStorage",
        "OPTIONS": {
            "location": DATA_DIR / "documents",
            "base_url": None,
            "file_permissions_mode": 0o600,
            "directory_permissions_mode": 0o700,
        },
    },
    # What families sent, as it arrived, until a worker has checked it.
    "quarantine": {
        "BACKEND": "inquiries.storage.WholeFileSystemStorage",
        "OPTIONS": {
            "location": DATA_DIR / "quarantine",
            "base_url": None,
            "file_permissions_mode": 0o600,
            "directory_permissions_mode": 0o700,
        },
    },
    "staticfiles": {
        # Hashed names let browsers keep stylesheets for a year; compressed copies keep
        # the first visit on a slow phone connection small.
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage",
    },
}

# Several app servers need one place for documents: DOCUMENTS_BUCKET puts them in object
# storage instead of the private folder above.
if os.environ.get("DOCUMENTS_BUCKET", "").strip():
    STORAGES["documents"] = env_documents_bucket()
    STORAGES["quarantine"] = env_documents_bucket("quarantine")

MB = 1024 * 1024

# Files arrive in a private folder, each as an anonymous file that disappears with the
# process that received it; then they wait in the quarantine storage for a worker.
FILE_UPLOAD_TEMP_DIR = Path(
    os.environ.get("UPLOADS_IN_PROGRESS", "").strip() or DATA_DIR / "uploads-in-progress"
)
FILE_UPLOAD_PERMISSIONS = 0o600
FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o700
# Checks sizes while files arrive, and keeps nothing past a limit (inquiries/documents/).
FILE_UPLOAD_HANDLERS = ["inquiries.documents.uploads.QuarantineUploadHandler"]
DOCUMENT_MAX_FILES = env_int("DOCUMENT_MAX_FILES", 10)
DOCUMENT_MAX_BYTES = env_int("DOCUMENT_MAX_MB", 20) * MB
DOCUMENTS_MAX_TOTAL_BYTES = env_int("DOCUMENTS_MAX_TOTAL_MB", 100) * MB
# A scan disc comes as a ZIP file, or as a folder the browser sends file by file and the
# form packs into one ZIP file: larger, checked member by member by a worker.
DOCUMENT_ARCHIVE_MAX_BYTES = env_int("DOCUMENT_ARCHIVE_MAX_MB", 1024) * MB
DOCUMENT_ARCHIVE_MAX_MEMBERS = env_int("DOCUMENT_ARCHIVE_MAX_MEMBERS", 2000)
# Unpacked, the ZIP files of one inquiry together; and how much larger than itself a ZIP
# file may unpack to (scans compress to a half or a third; a zip bomb, a thousandth).
DOCUMENT_ARCHIVE_MAX_UNPACKED_BYTES = env_int("DOCUMENT_ARCHIVE_MAX_UNPACKED_MB", 1024) * MB
DOCUMENT_ARCHIVE_MAX_RATIO = env_int("DOCUMENT_ARCHIVE_MAX_RATIO", 100)
# A member larger than this is refused (a multi-frame scan may be hundreds of MB).
DOCUMENT_ARCHIVE_MEMBER_MAX_BYTES = env_int("DOCUMENT_ARCHIVE_MEMBER_MAX_MB", 256) * MB
# Opening a ZIP file checks every scan in it, in one sandbox with these limits.
DOCUMENT_ARCHIVE_CHECK_MEMORY_MB = env_int("DOCUMENT_ARCHIVE_CHECK_MEMORY_MB", 2048)
DOCUMENT_ARCHIVE_CHECK_CPU_SECONDS = env_int("DOCUMENT_ARCHIVE_CHECK_CPU_SECONDS", 600)
DOCUMENT_ARCHIVE_CHECK_WALL_SECONDS = env_int("DOCUMENT_ARCHIVE_CHECK_WALL_SECONDS", 1200)
DATA_UPLOAD_MAX_NUMBER_FILES = DOCUMENT_MAX_FILES * 3 + DOCUMENT_ARCHIVE_MAX_MEMBERS
# When the form comes back with a problem, the files that passed are kept this long with
# the unfinished sending, so that the family need not choose them again.
HELD_FILES_SECONDS = env_int("HELD_FILES_SECONDS", 3600)
# Past this much held in all (senders of junk, again and again), files are not held: the
# family chooses them again, as browsers make them do anyway.
HELD_FILES_MAX_BYTES = env_int("HELD_FILES_MAX_MB", 4096) * MB
# What one client address may have held at a time: one sending's worth.
HELD_FILES_PER_CLIENT_BYTES = env_int("HELD_FILES_PER_CLIENT_MB", 1200) * MB

# The sandbox in which a worker opens each file: a child process with these hard limits,
# no network and no filesystem. A file that needs more is refused, nothing else is harmed.
DOCUMENT_CHECK_MEMORY_MB = env_int("DOCUMENT_CHECK_MEMORY_MB", 1024)
DOCUMENT_PHOTO_CHECK_MEMORY_MB = env_int("DOCUMENT_PHOTO_CHECK_MEMORY_MB", 2048)
DOCUMENT_CHECK_CPU_SECONDS = env_int("DOCUMENT_CHECK_CPU_SECONDS", 60)
DOCUMENT_CHECK_WALL_SECONDS = env_int("DOCUMENT_CHECK_WALL_SECONDS", 120)
DOCUMENT_CHECK_OPEN_FILES = env_int("DOCUMENT_CHECK_OPEN_FILES", 16)
# Off only on a host that gives no Linux namespaces and isolates the worker itself (a
# container with no network and a read-only root); `check --deploy` warns.
DOCUMENT_CHECK_ISOLATED = env_bool("DOCUMENT_CHECK_ISOLATED", default=True)
# Files opened at once on one machine, however many workers run there: a file may take a
# whole core while it is opened, and readers must always find one free.
DOCUMENT_CHECKS_AT_ONCE = env_int("DOCUMENT_CHECKS_AT_ONCE", max(1, (os.cpu_count() or 1) - 1))
# A check whose worker died is tried again this many times in all, then refused.
DOCUMENT_CHECK_ATTEMPTS = env_int("DOCUMENT_CHECK_ATTEMPTS", 3)
# A check put back this many times after passing faults (a full store, say, for hours) is
# refused at last, so that the family hears of it.
DOCUMENT_CHECK_PUT_BACKS = env_int("DOCUMENT_CHECK_PUT_BACKS", 120)
# Pages are rendered at this resolution (150 dots an inch keeps a pathology report's small
# print legible), a page at most this many pixels, a PDF at most this many pages.
DOCUMENT_PDF_DPI = env_int("DOCUMENT_PDF_DPI", 150)
DOCUMENT_PDF_MAX_PAGE_PIXELS = env_int("DOCUMENT_PDF_MAX_PAGE_PIXELS", 12_000_000)
DOCUMENT_PDF_MAX_PAGES = env_int("DOCUMENT_PDF_MAX_PAGES", 300)
# A rebuilt copy is built in the worker's memory; one that would be larger is refused.
DOCUMENT_REBUILT_MAX_BYTES = env_int("DOCUMENT_REBUILT_MAX_MB", 200) * MB
# Images are decoded in the sandbox; this bounds a picture (about 4 bytes a pixel): a
# phone's 200-megapixel photo is opened, and kept at no more than the stored size.
DOCUMENT_IMAGE_MAX_PIXELS = env_int("DOCUMENT_IMAGE_MAX_PIXELS", 210_000_000)
DOCUMENT_IMAGE_MAX_STORED_PIXELS = env_int("DOCUMENT_IMAGE_MAX_STORED_PIXELS", 50_000_000)
# How often a worker looks for checks and emails left behind by a worker that died or a
# database that went away, and how old a heartbeat may be before its check is taken over.
WORKER_RECOVERY_SECONDS = env_int("WORKER_RECOVERY_SECONDS", 30)
DOCUMENT_HEARTBEAT_SECONDS = env_int("DOCUMENT_HEARTBEAT_SECONDS", 5)
DOCUMENT_STALE_SECONDS = env_int("DOCUMENT_STALE_SECONDS", 60)
# After a passing fault (the store or the database), a check is tried again this much later;
# an email that could not be sent, after this, then twice as long each time, up to an hour.
DOCUMENT_RETRY_SECONDS = env_int("DOCUMENT_RETRY_SECONDS", 60)
EMAIL_RETRY_SECONDS = env_int("EMAIL_RETRY_SECONDS", 60)

# Closed inquiries keep their documents this long, then `erase_closed_documents` removes them.
DOCUMENT_RETENTION_DAYS = env_int("DOCUMENT_RETENTION_DAYS", 365)

# Inquiries one client may send; answers to "Was this page useful?" one client may give.
INQUIRY_RATE_LIMIT = env_rate("INQUIRY_RATE_LIMIT", "5/h")
GUIDE_FEEDBACK_RATE_LIMIT = env_rate("GUIDE_FEEDBACK_RATE_LIMIT", "10/h")
CSRF_FAILURE_VIEW = "inquiries.views.csrf_failure"

# Files in DATA_DIR/cache by default, shared by every worker of one server (each gunicorn
# worker is a process: a cache in one process's memory would keep serving a guide page that
# an editor changed through another). With REDIS_URL (redis://host:6379/0), Django's own
# Redis backend, shared by every app server, so that cached pages and the rate limit hold
# across them.
REDIS_URL = os.environ.get("REDIS_URL", "").strip()
if REDIS_URL and not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured(
        f"REDIS_URL must start with redis:// or rediss:// (got {REDIS_URL[:10]!r})."
    )
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        # Redis answers in well under a millisecond; one that has not answered within a
        # second is down, and the site goes on without it (cancerfax/cache_outage.py) rather than
        # keeping every reader waiting.
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }
    if REDIS_URL
    else {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": DATA_DIR / "cache",
        # Django's 300 would soon evict pages and rate-limit counts at random.
        "OPTIONS": {"MAX_ENTRIES": 20_000},
    }
}
SILENCED_SYSTEM_CHECKS = [
    # django-ratelimit wants memcached or Redis for atomic counts; the file cache counts
    # well enough for one server, and REDIS_URL is the answer for several.
    "django_ratelimit.E003",
    "django_ratelimit.W001",
    # HSTS is sent (DJANGO_HTTPS) but not "preload": a request to be built into browsers
    # binds every subdomain for good, a decision for the domain's owner, not this code.
    "security.W021",
]

# History is for reading: a case is changed through its form, where every change is checked.
SIMPLE_HISTORY_REVERT_DISABLED = True

CRISPY_ALLOWED_TEMPLATE_PACKS = "bootstrap5"
CRISPY_TEMPLATE_PACK = "bootstrap5"

# Document checks and emails run in workers (`manage.py worker`), separate processes on any
# number of machines, that take their tasks from the database (django-tasks-db).
TASKS = {
    "default": {
        "BACKEND": "django_tasks_db.DatabaseBackend",
        "QUEUES": ["default", "documents"],
    }
}

# Email. EMAIL_URL is smtp+tls://user:password@host:587 (STARTTLS), smtps://…:465 (TLS),
# smtp://host:25 (no encryption: a relay on the same machine only), or console: to print
# messages instead of sending them (the default, for development).
MAILERS = {"default": env_mailer("EMAIL_URL", "console:")}
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "CancerFax <no-reply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Where alerts about new inquiries go: the coordinators' shared mailbox.
COORDINATORS_EMAIL = os.environ.get("COORDINATORS_EMAIL", "coordinators@localhost")

# How families reach a person: shown in the footer, on the thank-you and case pages and in
# every email; replies to our emails go to CONTACT_EMAIL. The defaults are for development
# only (the phone number is in a range kept for fiction): production must set all four, and
# `manage.py check --deploy` says so until it does.
CONTACT_EMAIL = os.environ.get("CONTACT_EMAIL", COORDINATORS_EMAIL)
CONTACT_PHONE = os.environ.get("CONTACT_PHONE", "+44 20 7946 0999")
CONTACT_HOURS = os.environ.get("CONTACT_HOURS", "Monday to Friday, 9:00 to 17:00 (UK time)")
CONTACT_ADDRESS = os.environ.get(
    "CONTACT_ADDRESS", "CancerFax, 1 Example Street, London, United Kingdom"
)

# The family's case page: a link in an email works once, for CASE_LINK_DAYS; the session it
# opens covers that one case and ends after SESSION_COOKIE_AGE (30 minutes) without a
# request. Asking for a new link, and sending from the case page, are rate-limited.
CASE_LINK_DAYS = env_int("CASE_LINK_DAYS", 7)
CASE_LINK_RATE_LIMIT = env_rate("CASE_LINK_RATE_LIMIT", "5/h")
CASE_SENDING_RATE_LIMIT = env_rate("CASE_SENDING_RATE_LIMIT", "30/h")
# One email to the coordinators per case in this time at most, however much the family sends.
FAMILY_ALERT_MINUTES = env_int("FAMILY_ALERT_MINUTES", 60)

# Security headers on every response. Scripts run only from our own files or with the
# request's nonce; nothing may frame the site; forms post only to it.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    # Bootstrap draws checkboxes and select arrows with data: SVG images.
    "img-src": [CSP.SELF, "data:"],
    "font-src": [CSP.SELF],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"

# Behind a load balancer that terminates TLS (DJANGO_HTTPS=1): trust its X-Forwarded-Proto,
# send every visitor to HTTPS for a year, subdomains included, and mark cookies Secure. The
# health check stays reachable over plain HTTP (it is answered before this applies).
HTTPS = env_bool("DJANGO_HTTPS", default=False)
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SECURE_HSTS_SECONDS = 365 * 24 * 60 * 60
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# Requests reach the site through nginx, and in production through the load balancer
# before it: the rate limit and the sign-in lockout count per visitor, by the address the
# nearest proxy we trust was given (cancerfax/middleware.py). FORWARDED_ALLOW_IPS lists the
# load balancer's addresses; nginx, on the same machine, is always trusted. The same
# variable tells gunicorn whom to trust.
RATELIMIT_IP_META_KEY = "cancerfax.middleware.client_address"
AXES_CLIENT_IP_CALLABLE = "cancerfax.middleware.client_address"
TRUSTED_PROXIES = env_networks("FORWARDED_ALLOW_IPS", "127.0.0.1")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "cancerfax.logs.JsonFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # Django's own console handler would print each of its messages a second time.
    "loggers": {
        "django": {"handlers": [], "propagate": True},
        # One line a task on every request would drown what matters.
        "django.tasks": {"level": "WARNING"},
    },
}
