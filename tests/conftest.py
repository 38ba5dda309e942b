import base64
import os
import tempfile
from datetime import date
from pathlib import Path

import boto3
import pytest
from django.core.cache import cache
from django.core.management import call_command
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice
from moto import mock_aws

import cancerfax.cache_outage
from cancerfax.environment import env_documents_bucket
from guides.models import (
    BalancePoint,
    Development,
    Faq,
    Guide,
    KeyNumber,
    Product,
    Reference,
    Reviewer,
    Service,
)

from .support import clinical_approver, publish

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"

# Playwright runs an event loop in the test thread; the ORM calls that browser tests make
# between page actions are still plain synchronous calls.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(autouse=True)
def _test_storage(settings, tmp_path):
    # The manifest storage needs `collectstatic` first; tests serve files from their sources.
    # Documents and uploads in progress go to this test's own folders, so a test can see
    # exactly which files were left behind.
    uploads = tmp_path / "uploads-in-progress"
    uploads.mkdir(mode=0o700)
    settings.FILE_UPLOAD_TEMP_DIR = uploads
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        **{
            alias: {
                **settings.STORAGES[alias],
                "OPTIONS": {**settings.STORAGES[alias]["OPTIONS"], "location": tmp_path / alias},
            }
            for alias in ("documents", "quarantine")
        },
    }


@pytest.fixture(autouse=True)
def _tasks_at_once(settings):
    # In-process tests run each task at once, in the request that queues it: a family's
    # files are checked (in the sandbox, as always) before the thank-you page. The worker,
    # its queue and its recovery have tests of their own, with real worker processes.
    settings.TASKS = {
        "default": {
            "BACKEND": "django.tasks.backends.immediate.ImmediateBackend",
            "QUEUES": ["default", "documents"],
        }
    }


@pytest.fixture(autouse=True)
def _fresh_cache(settings, tmp_path, monkeypatch):
    # The rate limit counts in the cache; every test starts with a clean count, in a cache
    # folder of its own, and with a cache that no earlier test has left resting.
    monkeypatch.setattr(cancerfax.cache_outage, "_resting_until", 0.0)
    if settings.CACHES["default"]["BACKEND"].endswith("FileBasedCache"):
        own = {**settings.CACHES["default"], "LOCATION": tmp_path / "cache"}
        settings.CACHES = {"default": own}
    cache.clear()


def sign_in_with_second_factor(client, user) -> TOTPDevice:
    """Signs a staff member in as production requires: a password session that has also
    passed a code from a confirmed authenticator (the sign-in steps have tests of their own)."""
    client.force_login(user)
    device = TOTPDevice.objects.create(user=user, name="Test phone", confirmed=True)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return device


def code_from_typed_key(typed_key: str) -> str:
    """What an authenticator app shows now, given the key typed into it by hand."""
    key = typed_key.replace(" ", "")
    return f"{TOTP(base64.b32decode(key + '=' * (-len(key) % 8))).token():06d}"


def _coordinators_group_again() -> None:
    import importlib

    from django.apps import apps

    for migration, function in [
        ("0002_coordinators_group", "create_group"),
        ("0004_scan_discs", "coordinators_see_series"),
        ("0009_case_page", "record_kinds_and_permissions"),
    ]:
        module = importlib.import_module(f"inquiries.migrations.{migration}")
        getattr(module, function)(apps, None)


@pytest.fixture
def coordinator(db):
    """A member of the Coordinators group, as the migration makes it."""
    from django.contrib.auth.models import Group, User

    user = User.objects.create_user(
        "casey", "casey@example.org", "a-long-fictional-pass", is_staff=True
    )
    if not Group.objects.filter(name="Coordinators").exists():
        # A transactional test before this one flushed what the migrations made.
        _coordinators_group_again()
    user.groups.add(Group.objects.get(name="Coordinators"))
    return user


@pytest.fixture
def coordinator_client(coordinator):
    """The coordinator's own browser, signed in with the second factor; `client` stays
    free for the family."""
    from django.test import Client

    browser = Client()
    sign_in_with_second_factor(browser, coordinator)
    return browser


@pytest.fixture
def admin_client(client, admin_user):
    sign_in_with_second_factor(client, admin_user)
    return client


@pytest.fixture
def documents_dir(settings) -> Path:
    return Path(settings.STORAGES["documents"]["OPTIONS"]["location"])


@pytest.fixture
def uploads_dir(settings) -> Path:
    return Path(settings.FILE_UPLOAD_TEMP_DIR)


@pytest.fixture
def quarantine_dir(settings) -> Path:
    return Path(settings.STORAGES["quarantine"]["OPTIONS"]["location"])


def files_in(folder: Path, previews: bool = False) -> list[Path]:
    """The files under `folder`; in the documents folder, the previews of documents are
    told apart (`previews=True` lists those only)."""
    if not folder.exists():
        return []
    files = (path for path in folder.rglob("*") if path.is_file())
    return sorted(p for p in files if (p.relative_to(folder).parts[0] == "previews") == previews)


@pytest.fixture
def leukemia_guide(db) -> Guide:
    """The real guide, exactly as `make run` loads and publishes it."""
    call_command("loaddata", ROOT / "fixtures" / "guides.json", verbosity=0)
    call_command("publish_first_revisions", approver=clinical_approver().username, verbosity=0)
    return Guide.objects.get(slug="gene-therapy-for-leukemia")


def build_guide(
    slug: str = "gene-therapy-for-myeloma", items: int = 2, published: bool = True, **fields
) -> Guide:
    """A complete fictional guide with `items` of every repeated part, published as its
    first revision unless `published` is False."""
    values = {
        "slug": slug,
        "title": "Gene therapy for myeloma",
        "category": "Gene therapy guide",
        "condition": "Multiple myeloma",
        "lead": "An editor’s test guide about myeloma [ref:test-1].",
        "summary": "A short summary of the test guide.",
        "at_a_glance": "First point\nSecond point",
        "cta_heading": "Could a myeloma trial apply to you?",
        "patients_text": "What the test guide means for patients.",
        "developments_intro": "",
        "products_intro": "",
        "products_note": "",
        "relevant_for": "People in the test.",
        "when_to_consider": "- When the test says so.",
        "medical_disclaimer": "For information only.",
    }
    values.update(fields)
    guide = Guide.objects.create(**values)
    reviewer, _ = Reviewer.objects.get_or_create(
        name="Dr Test Example",
        defaults={"role": "Test haematologist", "qualifications": "MD", "fictional": True},
    )
    guide.reviewers.add(reviewer)
    for n in range(1, items + 1):
        Reference.objects.create(guide=guide, number=n, key=f"test-{n}", citation=f"Source {n}")
        Development.objects.create(
            guide=guide, position=n, name=f"Development {n}", status="approved", summary="Text"
        )
        Product.objects.create(
            guide=guide,
            position=n,
            brand_name=f"Brand {n}",
            generic_name=f"generic-{n}",
            target="BCMA",
            disease="myeloma",
            first_approved=date(2021, 3, 26),
            indication="Myeloma",
            key_result=f"Result {n} [ref:test-{n}]",
        )
        KeyNumber.objects.create(
            guide=guide, position=n, figure=f"{n}%", label="Label", explanation="Why"
        )
        BalancePoint.objects.create(
            guide=guide, position=n, kind="benefit", title=f"Benefit {n}", text="Text"
        )
        BalancePoint.objects.create(
            guide=guide, position=n, kind="limitation", title=f"Limitation {n}", text="Text"
        )
        Faq.objects.create(guide=guide, position=n, question=f"Question {n}?", answer="Answer.")
        Service.objects.create(position=n, title=f"Service {n}", description="Help")
    if published:
        publish(guide)
    return guide


@pytest.fixture
def make_guide(db):
    return build_guide


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    # Debian's Chromium, never a browser downloaded by Playwright; without these flags it
    # tries to reach the network and stalls on this machine.
    return {
        **browser_type_launch_args,
        "executable_path": os.environ.get("CHROMIUM", "/usr/bin/chromium"),
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-dev-shm-usage",
        ],
    }


@pytest.fixture
def new_context(browser):
    """Opens browser contexts that are closed when the test ends, passed or failed, so that a
    failing test leaves no page talking to the next test's server."""
    contexts = []

    def open_context(**options):
        context = browser.new_context(**options)
        contexts.append(context)
        return context

    yield open_context
    for context in contexts:
        context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


TEST_BUCKET = "cancerfax-documents-test"


@pytest.fixture
def s3(settings, monkeypatch):
    """A bucket in moto's in-process S3, configured exactly as DOCUMENTS_BUCKET does."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "fictional-test-key",
        "AWS_SECRET_ACCESS_KEY": "fictional-test-secret",
        "DOCUMENTS_BUCKET": TEST_BUCKET,
        "DOCUMENTS_S3_REGION": "eu-west-2",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("s3", region_name="eu-west-2")
        client.create_bucket(
            Bucket=TEST_BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-2"}
        )
        settings.STORAGES = {
            **settings.STORAGES,
            "documents": env_documents_bucket(),
            "quarantine": env_documents_bucket("quarantine"),
        }
        yield client


def rebuild_bytes(kind: str, data: bytes):
    """The copy a coordinator would get of `data` (a file of `kind`), rebuilt in the real
    sandbox; raises sandbox.Refused as the worker would record it."""
    from inquiries.documents.pipeline import rebuild

    with tempfile.TemporaryFile() as source:
        source.write(data)
        source.flush()
        return rebuild(kind, source)


def rebuilt_bytes(kind: str, data: bytes) -> bytes:
    result = rebuild_bytes(kind, data)
    with result.content:
        result.content.seek(0)
        return result.content.read()


def refusal_code(kind: str, data: bytes) -> str:
    from inquiries.documents.sandbox import Refused

    with pytest.raises(Refused) as refused:
        rebuild_bytes(kind, data).content.close()
    return refused.value.code
