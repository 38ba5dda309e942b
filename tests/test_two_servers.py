"""Scaling out: two gunicorn servers, as `make serve` runs them, sharing one PostgreSQL, one
Redis and one S3-compatible object store, and nothing else. Whatever a family or an editor
does through one server, the other must see at once.

Runs in the PostgreSQL pass of `make test`. It starts Redis (Debian's redis-server) and an
S3 server (moto's standalone server) on loopback, a database of its own on the PostgreSQL
server the suite was given, and stops and removes them all afterwards.
"""

import io
import os
import re
import sys
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import psycopg
import pytest
from playwright.sync_api import expect
from pypdf import PdfReader

from .conftest import code_from_typed_key
from .sample_files import pdf_bytes
from .servers import (
    GUIDES,
    RedisServer,
    free_port,
    manage,
    prepare,
    start,
    start_gunicorn,
    start_worker,
    wait_for_port,
)
from .support import fill_in

DATABASE_URL = os.environ.get("DATABASE_URL", "")

pytestmark = [
    pytest.mark.scale_out,
    pytest.mark.skipif(
        not DATABASE_URL.startswith(("postgres://", "postgresql://")),
        reason="needs PostgreSQL: runs in the PostgreSQL pass of make test",
    ),
]

BUCKET = "cancerfax-documents"
EDITOR = ("editor", "a-long-fictional-pass")
# Low enough to reach in a few sendings; each server alone would never reach it.
RATE_LIMIT = 3


@dataclass
class Cluster:
    a: str
    b: str
    s3: object
    data_dirs: list[Path]
    setup_link: str
    # For manage.py on a machine of its own, sharing the database, Redis and the bucket.
    env: dict


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    folder = tmp_path_factory.mktemp("two-servers")
    with ExitStack() as stack:
        redis = RedisServer(stack, folder)

        # The object store, with a private bucket that blocks public access, as production's.
        s3_port = free_port()
        moto = start(
            stack,
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)],
            folder / "s3.log",
        )
        wait_for_port(s3_port, moto, folder / "s3.log")
        credentials = {
            "AWS_ACCESS_KEY_ID": "fictional-test-key",
            "AWS_SECRET_ACCESS_KEY": "fictional-test-secret",
        }
        s3 = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{s3_port}",
            region_name="us-east-1",
            aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
        )
        s3.create_bucket(Bucket=BUCKET)
        s3.put_public_access_block(
            Bucket=BUCKET,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )

        # A database of its own on the suite's PostgreSQL server, removed afterwards.
        name = f"cancerfax_two_servers_{uuid.uuid4().hex[:8]}"
        admin_url = re.sub(r"/[^/]*$", "/postgres", DATABASE_URL)
        with psycopg.connect(admin_url, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')

        def drop_database() -> None:
            with psycopg.connect(admin_url, autocommit=True) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        stack.callback(drop_database)

        shared = {
            "PATH": os.environ["PATH"],
            "DJANGO_SECRET_KEY": "two-servers-test-key-shared-by-both-servers",
            "DJANGO_DEBUG": "0",
            "DATABASE_URL": re.sub(r"/[^/]*$", f"/{name}", DATABASE_URL),
            "REDIS_URL": redis.url,
            "DOCUMENTS_BUCKET": BUCKET,
            "DOCUMENTS_S3_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
            "DOCUMENTS_S3_REGION": "us-east-1",
            "INQUIRY_RATE_LIMIT": f"{RATE_LIMIT}/h",
            "WEB_CONCURRENCY": "2",
            **credentials,
        }
        setup = {
            **shared,
            "DATA_DIR": str(folder / "setup"),
            "DJANGO_SUPERUSER_PASSWORD": EDITOR[1],
        }
        prepare(
            setup,
            ["migrate", "-v0"],
            *GUIDES,
            ["collectstatic", "--noinput", "-v0"],
            ["createsuperuser", "--noinput", "--username", EDITOR[0], "--email", "e@example.org"],
        )
        printed = manage(setup, "authenticator_link", EDITOR[0])
        assert printed.returncode == 0, printed.stderr

        # Two app servers, each with a local folder of its own that must stay empty.
        urls, data_dirs = [], []
        for server in ("a", "b"):
            data_dir = folder / f"server-{server}"
            data_dir.mkdir()
            env = {**shared, "DATA_DIR": str(data_dir)}
            url, _ = start_gunicorn(stack, env, folder / f"server-{server}.log")
            urls.append(url)
            data_dirs.append(data_dir)
        # A worker on a machine of its own, sharing only the database and the bucket.
        worker_dir = folder / "worker"
        worker_dir.mkdir()
        start_worker(stack, {**shared, "DATA_DIR": str(worker_dir)}, folder / "worker.log")
        yield Cluster(
            a=urls[0],
            b=urls[1],
            s3=s3,
            data_dirs=data_dirs,
            setup_link=printed.stdout.strip(),
            env=setup,
        )


def send_inquiry(page, server: str, report: Path) -> None:
    page.goto(server + "/inquiries/new/")
    fill_in(page)
    page.get_by_label("Choose the files").set_input_files(report)
    page.get_by_label("I agree that CancerFax may store").check()
    page.get_by_role("button", name="Send my inquiry").click()


def sign_in_to_the_admin(page, server: str, setup_link: str) -> None:
    # The first sign-in of the first superuser: the link the operator printed, then the password.
    address = urlsplit(setup_link)
    page.goto(f"{server}{address.path}?{address.query}")
    page.get_by_label("Username").fill(EDITOR[0])
    page.get_by_label("Password").fill(EDITOR[1])
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Set up your authenticator app")).to_be_visible()
    typed_key = page.locator(".two-factor-key").inner_text()
    page.get_by_label("Six-digit code").fill(code_from_typed_key(typed_key))
    page.get_by_role("button", name="Confirm and sign in").click()
    expect(page.get_by_role("heading", name="Administration")).to_be_visible()


def test_two_servers_share_inquiries_documents_guide_edits_and_the_rate_limit(
    cluster, new_context, tmp_path, artifacts
):
    report = tmp_path / "marrow-biopsy.pdf"
    report.write_bytes(pdf_bytes(pages=3))
    family = new_context(viewport={"width": 375, "height": 812}).new_page()
    desk = new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True).new_page()

    # Each server finds the database, the cache and the document store.
    probe = new_context().request
    for server in (cluster.a, cluster.b):
        health = probe.get(server + "/healthz")
        assert health.status == 200
        assert health.json() == {"status": "ok", "database": "ok", "cache": "ok", "storage": "ok"}

    # 1. A family sends a report through server A...
    send_inquiry(family, cluster.a, report)
    expect(family.get_by_role("heading", name="We have received your inquiry")).to_be_visible()
    reference = family.locator(".reference").inner_text()

    # ...a worker elsewhere checks it, and the page shows it received safely...
    expect(family.get_by_text("Every file has been checked and received safely.")).to_be_visible(
        timeout=60_000
    )

    # ...and a coordinator on server B finds it and downloads the rebuilt copy.
    sign_in_to_the_admin(desk, cluster.b, cluster.setup_link)
    desk.goto(cluster.b + "/admin/inquiries/inquiry/?cases=all")
    desk.get_by_role("link", name=reference).click()
    with desk.expect_download() as download_info:
        desk.get_by_role("link", name="Download").first.click()
    download = download_info.value
    assert download.suggested_filename == "marrow-biopsy.pdf"
    rebuilt = Path(download.path()).read_bytes()
    assert len(PdfReader(io.BytesIO(rebuilt)).pages) == 3
    desk.reload()
    desk.screenshot(path=artifacts / "two-servers-admin-b.png", full_page=True)

    # The signed-in session, code included, holds on server A too: no sticky sessions needed.
    desk.goto(cluster.a + "/admin/inquiries/inquiry/?cases=all")
    expect(desk.get_by_role("link", name=reference)).to_be_visible()

    # The copy is in the bucket, encrypted, with no public grant; the original is gone from
    # quarantine; nothing is on either server.
    objects = cluster.s3.list_objects_v2(Bucket=BUCKET)["Contents"]
    # The copy, and the small preview the worker made of it.
    assert sorted(o["Key"].split("/")[:2][-1] == "previews" for o in objects) == [False, True]
    assert {o["Key"].split("/")[0] for o in objects} == {"documents"}
    key = next(o["Key"] for o in objects if not o["Key"].startswith("documents/previews/"))
    assert cluster.s3.head_object(Bucket=BUCKET, Key=key)["ServerSideEncryption"] == "AES256"
    grants = cluster.s3.get_object_acl(Bucket=BUCKET, Key=key)["Grants"]
    assert [grant["Permission"] for grant in grants] == ["FULL_CONTROL"]
    body = cluster.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert body == rebuilt
    for data_dir in cluster.data_dirs:
        assert [p for p in data_dir.rglob("*") if p.is_file()] == []

    # 2. A reader has the guide from server A's cache; an editor changes the draft on server
    # B, and a clinical approver publishes it from a third machine: server A's next reader
    # gets it at once.
    guide = "/guides/gene-therapy-for-leukemia/"
    reader = new_context().new_page()
    reader.goto(cluster.a + guide)
    reader.goto(cluster.a + guide)  # the second visit is served from the shared cache
    new_lead = f"Checked again by the editor on server B ({uuid.uuid4().hex[:6]})."
    expect(reader.get_by_text(new_lead)).to_have_count(0)
    desk.goto(cluster.b + "/admin/guides/guide/")
    desk.get_by_role("link", name="Gene therapy for leukemia").click()
    desk.locator("textarea[name=lead]").fill(new_lead)
    desk.get_by_role("button", name="Save", exact=True).first.click()
    expect(desk.locator(".messagelist")).to_contain_text("was changed successfully")
    reader.goto(cluster.a + guide)
    expect(reader.get_by_text(new_lead)).to_have_count(0)  # a draft, until it is published
    published = manage(
        cluster.env,
        "shell",
        "-c",
        "from django.contrib.auth.models import User; from guides.models import Guide; "
        "Guide.objects.get(slug='gene-therapy-for-leukemia').publish("
        "User.objects.get(username='approver'), kind='correction', summary='Checked again.')",
    )
    assert published.returncode == 0, published.stderr
    reader.goto(cluster.a + guide)
    expect(reader.get_by_text(new_lead)).to_be_visible()

    # 3. The rate limit counts sendings to both servers together: one sent above through A,
    # then B, A, and the fourth is refused, though each server alone has seen only two.
    for server in (cluster.b, cluster.a):
        send_inquiry(family, server, report)
        expect(family.get_by_role("heading", name="We have received your inquiry")).to_be_visible()
    send_inquiry(family, cluster.b, report)
    expect(
        family.get_by_role("heading", name="Please wait a little before sending again")
    ).to_be_visible()

    # Each stored inquiry's file arrived in quarantine and was checked by the worker; the
    # refused sending's file is held in quarantine for its hour, for the family to send.
    def stored(prefix: str) -> list:
        contents = cluster.s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
        # The copies, not the previews made beside them.
        return [
            o
            for o in contents
            if o["Key"].startswith(prefix) and not o["Key"].startswith("documents/previews/")
        ]

    deadline = time.monotonic() + 60
    while len(stored("documents/")) != RATE_LIMIT or len(stored("quarantine/")) != 1:
        assert time.monotonic() < deadline, "the worker checked every stored inquiry's file"
        time.sleep(0.5)
