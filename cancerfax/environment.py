"""Reading settings from the environment: each helper reads one variable, and a value that
cannot be understood stops start-up with a message that names it."""

import ipaddress
import os
import re
from urllib.parse import unquote, urlsplit

import dj_database_url
from botocore.config import Config as BotoConfig
from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name} must be one of 1, 0, true, false, yes, no, on or off (got {value!r})."
    )


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise ImproperlyConfigured(f"{name} must be a whole number of 0 or more (got {value!r}).")
    return number


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return default
    items = [item.strip() for item in value.split(",") if item.strip()]
    if not items:
        raise ImproperlyConfigured(f"{name} must list at least one value, separated by commas.")
    return items


def env_rate(name: str, default: str) -> str:
    """A rate limit, e.g. "5/h" (five an hour), "20/d" or "10/30m"."""
    rate = os.environ.get(name, "").strip() or default
    if not re.fullmatch(r"\d+/\d*[smhd]", rate):
        raise ImproperlyConfigured(f"{name} must look like 5/h, 20/d or 10/30m (got {rate!r}).")
    return rate


def env_networks(name: str, default: str) -> list[str]:
    """Addresses or networks (10.0.0.0/8), separated by commas; * for any."""
    value = os.environ.get(name, "").strip() or default
    if value == "*":
        return ["0.0.0.0/0", "::/0"]
    try:
        return [
            str(ipaddress.ip_network(item.strip())) for item in value.split(",") if item.strip()
        ]
    except ValueError:
        raise ImproperlyConfigured(
            f"{name} must list addresses or networks such as 10.0.0.0/8, separated by commas, "
            f"or * (got {value!r})."
        ) from None


def env_database(name: str, default: str) -> dict:
    url = os.environ.get(name, "").strip() or default
    if not url.startswith(("sqlite:", "postgres:", "postgresql:")):
        raise ImproperlyConfigured(
            f"{name} must be a sqlite:/// or postgres:// URL (got a value starting {url[:12]!r})."
        )
    try:
        config = dj_database_url.parse(url, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60))
    except ValueError as error:
        raise ImproperlyConfigured(f"{name} could not be read: {error}") from None
    if not config.get("NAME"):
        raise ImproperlyConfigured(f"{name} must name a database.")
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # A request that waits a moment for another writer beats a "database is locked" error.
        config.setdefault("OPTIONS", {})["timeout"] = 20
        config["CONN_MAX_AGE"] = 0
    else:
        config["CONN_HEALTH_CHECKS"] = True
    return config


def env_mailer(name: str, default: str) -> dict:
    url = urlsplit(os.environ.get(name, "").strip() or default)
    if url.scheme == "console":
        return {"BACKEND": "django.core.mail.backends.console.EmailBackend"}
    if url.scheme not in {"smtp", "smtp+tls", "smtps"} or not url.hostname:
        raise ImproperlyConfigured(
            f"{name} must be smtp+tls://user:password@host:587, smtps://…, smtp://… or "
            f"console: (got a value starting {url.scheme!r})."
        )
    return {
        "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "OPTIONS": {
            "host": url.hostname,
            "port": url.port or {"smtps": 465, "smtp+tls": 587}.get(url.scheme, 25),
            "username": unquote(url.username or ""),
            "password": unquote(url.password or ""),
            "use_ssl": url.scheme == "smtps",
            "use_tls": url.scheme == "smtp+tls",
            "timeout": 10,
        },
    }


def env_documents_bucket(location: str = "documents") -> dict:
    """Documents in a private S3-compatible bucket (DOCUMENTS_BUCKET), shared by every app
    server, through django-storages. Coordinators still download them only through the
    admin's checked, audited view: objects carry no ACL of their own (the bucket is private
    and blocks public access) and no link to them is ever made."""
    endpoint = os.environ.get("DOCUMENTS_S3_ENDPOINT_URL", "").strip()
    if endpoint and not endpoint.startswith(("https://", "http://")):
        raise ImproperlyConfigured(
            f"DOCUMENTS_S3_ENDPOINT_URL must start with https:// (got {endpoint[:12]!r})."
        )
    kms_key = os.environ.get("DOCUMENTS_KMS_KEY_ID", "").strip()
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": os.environ["DOCUMENTS_BUCKET"].strip(),
            "location": location,
            # Empty for AWS itself; the address of any other S3-compatible service.
            "endpoint_url": endpoint or None,
            "region_name": os.environ.get("DOCUMENTS_S3_REGION", "").strip() or None,
            # Credentials come from boto3's usual sources: AWS_ACCESS_KEY_ID and
            # AWS_SECRET_ACCESS_KEY, or the server's instance role.
            "default_acl": None,
            # Encrypted at rest by the store, with its own key or a named KMS key.
            "object_parameters": {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key}
            if kms_key
            else {"ServerSideEncryption": "AES256"},
            # Every name is a new random UUID, never one in use: asking the store first
            # whether it is (a request for each of a disc's hundreds of scans) finds nothing.
            "file_overwrite": True,
            "querystring_expire": 60,
            # A download is read into a temporary file in the private uploads folder, not
            # held in memory.
            "max_memory_size": 1024 * 1024,
            # A store that cannot be reached or stops answering fails within about 25
            # seconds (two tries), not minutes: the family is told nothing was saved, the
            # coordinator to try again, and a gunicorn worker is not held for long.
            "client_config": BotoConfig(
                connect_timeout=3, read_timeout=10, retries={"mode": "standard", "max_attempts": 2}
            ),
        },
    }
