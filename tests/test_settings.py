"""Start-up reads its configuration from the environment and refuses values it cannot use."""

import json
import os
import stat
import subprocess
import sys

import pytest

from .conftest import ROOT

SHOW_SETTINGS = """
import json, django
from django.conf import settings
django.setup()
db = settings.DATABASES["default"]
print(json.dumps({"debug": settings.DEBUG, "engine": db["ENGINE"], "name": str(db["NAME"]),
                  "host": db.get("HOST"), "port": db.get("PORT"), "hosts": settings.ALLOWED_HOSTS,
                  "cache": settings.CACHES["default"]["BACKEND"],
                  "two_factor": settings.STAFF_TWO_FACTOR,
                  "documents": settings.STORAGES["documents"]["BACKEND"],
                  "client_address": [getattr(settings, "RATELIMIT_IP_META_KEY", None),
                                     getattr(settings, "AXES_CLIENT_IP_CALLABLE", None)]}))
"""

BASE_ENV = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "cancerfax.settings"}


def start(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", SHOW_SETTINGS],
        cwd=ROOT,
        env={**BASE_ENV, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def settings_with(**env: str) -> dict:
    result = start(**env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_debug_is_off_and_sqlite_is_used_when_nothing_is_set():
    shown = settings_with(DJANGO_SECRET_KEY="k")
    assert shown["debug"] is False
    assert shown["engine"] == "django.db.backends.sqlite3"
    assert shown["name"] == str(ROOT / "var" / "db.sqlite3")
    assert shown["hosts"] == ["localhost", "127.0.0.1", "[::1]"]


def test_a_secret_key_is_required_when_debug_is_off():
    result = start()
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off" in result.stderr


def test_debug_runs_without_a_secret_key():
    assert settings_with(DJANGO_DEBUG="1")["debug"] is True


def test_behind_nginx_and_the_load_balancer_limits_and_lockouts_count_per_visitor():
    for https in ("0", "1"):
        shown = settings_with(DJANGO_SECRET_KEY="k", DJANGO_HTTPS=https)
        assert shown["client_address"] == ["cancerfax.middleware.client_address"] * 2


def test_staff_need_a_second_factor_unless_debug_is_on_or_it_is_switched_off():
    assert settings_with(DJANGO_SECRET_KEY="k")["two_factor"] is True
    assert settings_with(DJANGO_DEBUG="1")["two_factor"] is False
    assert settings_with(DJANGO_SECRET_KEY="k", STAFF_TWO_FACTOR="0")["two_factor"] is False


def test_database_url_selects_postgresql():
    shown = settings_with(
        DJANGO_SECRET_KEY="k", DATABASE_URL="postgres://guide:pw@db.example:6543/cancerfax"
    )
    assert shown["engine"] == "django.db.backends.postgresql"
    assert (shown["name"], shown["host"], shown["port"]) == ("cancerfax", "db.example", 6543)


def test_cache_is_shared_files_unless_redis_url_is_set():
    assert settings_with(DJANGO_SECRET_KEY="k")["cache"].endswith("FileBasedCache")
    shown = settings_with(DJANGO_SECRET_KEY="k", REDIS_URL="redis://cache.internal:6379/0")
    assert shown["cache"] == "django.core.cache.backends.redis.RedisCache"


def test_documents_stay_on_local_disk_unless_a_bucket_is_named():
    assert settings_with(DJANGO_SECRET_KEY="k")["documents"].endswith("FileSystemStorage")
    shown = settings_with(DJANGO_SECRET_KEY="k", DOCUMENTS_BUCKET="cancerfax-documents")
    assert shown["documents"] == "storages.backends.s3.S3Storage"


def test_a_bad_object_store_address_stops_start_up():
    result = start(
        DJANGO_SECRET_KEY="k", DOCUMENTS_BUCKET="docs", DOCUMENTS_S3_ENDPOINT_URL="minio:9000"
    )
    assert "DOCUMENTS_S3_ENDPOINT_URL must start with https://" in result.stderr


def test_allowed_hosts_are_read_as_a_comma_separated_list():
    shown = settings_with(DJANGO_SECRET_KEY="k", DJANGO_ALLOWED_HOSTS="guides.example, www.example")
    assert shown["hosts"] == ["guides.example", "www.example"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DJANGO_DEBUG", "maybe"),
        ("DATABASE_URL", "mysql://root@localhost/cancerfax"),
        ("DATABASE_URL", "postgres://localhost"),
        ("DJANGO_ALLOWED_HOSTS", " , "),
        ("DATABASE_CONN_MAX_AGE", "soon"),
        ("SITE_URL", "guides.example"),
        ("INQUIRY_RATE_LIMIT", "lots"),
        ("EMAIL_URL", "imap://mail.example"),
        ("DOCUMENT_MAX_MB", "-3"),
        ("REDIS_URL", "memcached://cache"),
        ("FORWARDED_ALLOW_IPS", "the load balancer"),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_variable(variable, value):
    result = start(DJANGO_SECRET_KEY="k", **{variable: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert variable in result.stderr.strip().splitlines()[-1]


PRODUCTION_ENV = {
    "DJANGO_SECRET_KEY": "k" * 20 + "production-like-secret-for-the-check-only-0123456789",
    "DJANGO_HTTPS": "1",
    "DJANGO_ALLOWED_HOSTS": "guides.cancerfax.example",
    "SITE_URL": "https://guides.cancerfax.example",
    "EMAIL_URL": "smtp+tls://mailer:secret@smtp.example:587",
    "DATABASE_URL": "postgres://cancerfax:secret@db.internal:5432/cancerfax",
    "REDIS_URL": "redis://cache.internal:6379/0",
    "DOCUMENTS_BUCKET": "cancerfax-documents",
    "DOCUMENTS_S3_REGION": "eu-west-2",
    "FORWARDED_ALLOW_IPS": "10.0.0.2",
    "CONTACT_EMAIL": "care@cancerfax.example",
    "CONTACT_PHONE": "+44 20 7946 0123",
    "CONTACT_HOURS": "Monday to Friday, 9:00 to 17:00 (UK time)",
    "CONTACT_ADDRESS": "CancerFax, 1 Example Street, London",
}


def test_deploy_check_passes_with_the_production_environment_of_the_readme(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={**BASE_ENV, **PRODUCTION_ENV, "DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.parametrize(
    ("variable", "value", "warning"),
    [
        ("STAFF_TWO_FACTOR", "0", "cancerfax.W001"),
        ("EMAIL_URL", "console:", "cancerfax.W002"),
        ("SITE_URL", "http://guides.cancerfax.example", "cancerfax.W003"),
    ],
)
def test_deploy_check_fails_on_a_setting_meant_for_a_laptop(tmp_path, variable, value, warning):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={**BASE_ENV, **PRODUCTION_ENV, "DATA_DIR": str(tmp_path), variable: value},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert warning in result.stderr


def test_the_data_folder_and_everything_in_it_are_private_whatever_the_umask(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    # What an earlier start under a lax umask may have left.
    (data / "db.sqlite3").touch(mode=0o644)
    cache_and_write = (
        "import django; django.setup(); from django.core.cache import cache; cache.set('k', 1)"
    )
    env = {**BASE_ENV, "DATA_DIR": str(data), "DJANGO_DEBUG": "1"}
    for command in (["manage.py", "migrate", "-v0"], ["-c", cache_and_write]):
        subprocess.run(
            [sys.executable, *command],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=120,
            preexec_fn=lambda: os.umask(0o022),
        )
    modes = {
        str(path.relative_to(tmp_path)): stat.S_IMODE(path.stat().st_mode)
        for path in [data, *data.rglob("*")]
    }
    assert modes["data"] == 0o700 and modes["data/db.sqlite3"] == 0o600
    assert any(name.startswith("data/cache/") for name in modes)
    assert {mode for mode in modes.values()} <= {0o700, 0o600}
    for name, mode in modes.items():
        assert mode == (0o700 if (tmp_path / name).is_dir() else 0o600), name
