"""Load and faults against the production stack: gunicorn as `make serve` runs it, and a
PostgreSQL server of the tests' own, which they stop and start. Each test ends by checking
that nothing was lost and nothing was left behind: every stored file matches its row and
checksum, no row lacks its file, no file lacks its row, and no upload in progress remains.

Run alone with `pytest -m faults`.
"""

import hashlib
import json
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from aiosmtpd.controller import Controller

from cancerfax.caches import RESTING_SECONDS

from .sample_files import large_pdf, pdf_bytes
from .servers import (
    Family,
    PostgresServer,
    RedisServer,
    free_port,
    manage,
    start_gunicorn,
    worker_pids,
)

pytestmark = pytest.mark.faults

NOTHING_SAVED = (
    b"nothing was stored",  # the form's own answer when saving fails
    b"nothing was saved",  # the site's 503 page when the database is down
)


@dataclass
class Site:
    url: str
    env: dict
    data_dir: Path
    postgres: PostgresServer
    gunicorn: subprocess.Popen
    smtp_port: int

    def rows(self, query: str, *params) -> list[tuple]:
        with psycopg.connect(self.postgres.url("cancerfax")) as connection:
            return connection.execute(query, params).fetchall()

    def inquiry_count(self) -> int:
        return self.rows("SELECT count(*) FROM inquiries_inquiry")[0][0]

    def uploads_left(self) -> list[Path]:
        # Each running worker holds a .lock in its folder (gunicorn.conf.py); nothing else.
        folder = self.data_dir / "uploads-in-progress"
        return [p for p in folder.rglob("*") if p.is_file() and p.name != ".lock"]

    def assert_nothing_lost_or_left(self) -> None:
        documents = self.data_dir / "documents"
        for name, sha256 in self.rows("SELECT file, sha256 FROM inquiries_document"):
            assert hashlib.sha256((documents / name).read_bytes()).hexdigest() == sha256
        orphans = manage(self.env, "find_orphans", "--grace-minutes", "0")
        assert orphans.returncode == 0, orphans.stdout + orphans.stderr
        assert self.uploads_left() == []


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faults")
    postgres = PostgresServer()
    with ExitStack() as stack:
        stack.callback(postgres.remove)
        with psycopg.connect(postgres.url(), autocommit=True) as connection:
            connection.execute("CREATE DATABASE cancerfax")
        smtp_port = free_port()
        env = {
            "PATH": "/usr/bin:/bin",
            "DJANGO_SECRET_KEY": "faults-test-key-not-secret",
            "DJANGO_DEBUG": "0",
            "DATABASE_URL": postgres.url("cancerfax"),
            "DATA_DIR": str(folder / "data"),
            "EMAIL_URL": f"smtp://127.0.0.1:{smtp_port}",
            "INQUIRY_RATE_LIMIT": "10000/h",
            "WEB_CONCURRENCY": "4",
        }
        for command in (["migrate", "-v0"], ["collectstatic", "--noinput", "-v0"]):
            result = manage(env, *command)
            assert result.returncode == 0, result.stderr
        url, gunicorn = start_gunicorn(stack, env, folder / "gunicorn.log")
        yield Site(url, env, folder / "data", postgres, gunicorn, smtp_port)


def small_pdf() -> list[tuple[str, bytes]]:
    return [("pathology-report.pdf", pdf_bytes(pages=2))]


def test_fifty_concurrent_submissions_are_each_stored_once(site, tmp_path):
    before = site.inquiry_count()
    reports = [
        large_pdf(tmp_path / f"scan-{n}.pdf", size_mb=1, seed=n).read_bytes() for n in range(50)
    ]

    def send(report: bytes) -> int:
        return Family(site.url).send([("scan.pdf", report)]).status

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(send, reports))

    assert statuses == [302] * 50
    assert site.inquiry_count() == before + 50
    stored = site.rows("SELECT d.sha256, count(*) FROM inquiries_document d GROUP BY d.sha256")
    sent = {hashlib.sha256(report).hexdigest() for report in reports}
    assert sent <= {sha256 for sha256, _ in stored}
    assert all(count == 1 for sha256, count in stored if sha256 in sent)
    site.assert_nothing_lost_or_left()


def test_postgresql_stopped_while_submissions_come_in(site):
    before = site.inquiry_count()
    answers: list[tuple[int, bytes]] = []
    stop = threading.Event()

    def keep_sending() -> None:
        while not stop.is_set():
            response = Family(site.url).send(small_pdf())
            answers.append((response.status, response.data))

    senders = [threading.Thread(target=keep_sending) for _ in range(4)]
    for sender in senders:
        sender.start()
    try:
        time.sleep(1)
        site.postgres.stop()
        time.sleep(3)
    finally:
        site.postgres.start()
        stop.set()
        for sender in senders:
            sender.join(60)
    assert not any(sender.is_alive() for sender in senders)

    refused = [body for status, body in answers if status != 302]
    # A submission stored just before PostgreSQL stopped is still thanked, not refused.
    assert refused, "some submissions arrived while PostgreSQL was down"
    assert {status for status, _ in answers} <= {302, 503}
    for body in refused:
        assert any(words in body for words in NOTHING_SAVED), body[:500]
    # Back without restarting the app: the next submissions are stored.
    after_outage = [Family(site.url).send(small_pdf()).status for _ in range(3)]
    assert after_outage == [302, 302, 302]
    stored = sum(1 for status, _ in answers if status == 302) + 3
    assert site.inquiry_count() == before + stored
    site.assert_nothing_lost_or_left()


def test_a_full_disk_while_a_document_is_written(site, tmp_path):
    documents = site.data_dir / "documents"
    documents.mkdir(exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(documents)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small disk here: {mounted.stderr.decode().strip()}")
    before = site.inquiry_count()
    try:
        # The disk has about 200 KB left; the report is 1 MB.
        (documents / "filler").write_bytes(b"\0" * (1024 * 1024 - 200 * 1024))
        report = large_pdf(tmp_path / "scan.pdf", size_mb=1).read_bytes()
        response = Family(site.url).send([("scan.pdf", report)])
        assert response.status == 503
        assert b"nothing was stored" in response.data
        assert sorted(p.name for p in documents.rglob("*") if p.is_file()) == ["filler"]
    finally:
        subprocess.run(["umount", str(documents)], check=True)
    assert site.inquiry_count() == before
    assert site.uploads_left() == []


def test_a_worker_killed_mid_upload_leaves_no_temporary_file(site):
    family = Family(site.url)
    family.get("/inquiries/new/")
    marker = b"MID-UPLOAD-MARKER-" * 64
    body_start = (
        b'--cut\r\nContent-Disposition: form-data; name="csrfmiddlewaretoken"\r\n\r\n'
        + family.cookies["csrftoken"].encode()
        + b'\r\n--cut\r\nContent-Disposition: form-data; name="documents"; '
        b'filename="scan.pdf"\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.7\n'
    )
    promised = 8 * 1024 * 1024
    connection = socket.create_connection(("127.0.0.1", int(site.url.rsplit(":", 1)[1])))
    connection.sendall(
        b"POST /inquiries/new/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Cookie: csrftoken=" + family.cookies["csrftoken"].encode() + b"\r\n"
        b"Content-Type: multipart/form-data; boundary=cut\r\n"
        b"Content-Length: %d\r\n\r\n" % promised + body_start
    )
    # Two megabytes, more than is ever kept in memory: the worker writes them to disk.
    for _ in range(2 * 1024 * 1024 // len(marker)):
        connection.sendall(marker)
    holding = []
    for _ in range(100):
        holding = [p for p in site.uploads_left() if marker in p.read_bytes()[:1_000_000]]
        if holding:
            break
        time.sleep(0.1)
    assert holding, "the upload is being written to the uploads-in-progress folder"
    worker = int(holding[0].parent.name.removeprefix("worker-"))
    assert worker in worker_pids(site.gunicorn)

    subprocess.run(["kill", "-KILL", str(worker)], check=True)
    for _ in range(100):
        if not holding[0].exists():
            break
        time.sleep(0.1)
    connection.close()
    assert not any(marker in p.read_bytes() for p in site.uploads_left())
    assert not holding[0].parent.exists()
    # The master started another worker, and the site goes on.
    assert Family(site.url).send(small_pdf()).status == 302
    site.assert_nothing_lost_or_left()


UNSENT_FOR_REFERENCE = (
    "SELECT n.kind FROM inquiries_notification n JOIN inquiries_inquiry i "
    "ON n.inquiry_id = i.id WHERE i.reference = %s AND n.sent_at IS NULL"
)


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        self.messages.append(envelope.content)
        return "250 Message accepted for delivery"


def test_mail_server_down_then_back(site):
    family = Family(site.url)
    assert family.send(small_pdf()).status == 302
    reference = family.reference()
    undelivered = site.rows(UNSENT_FOR_REFERENCE, reference)
    assert len(undelivered) == 2  # the family's acknowledgement and the coordinators' alert

    # The first retry is due a minute after the failed try: let that minute pass.
    with psycopg.connect(site.postgres.url("cancerfax")) as connection:
        connection.execute(
            "UPDATE inquiries_notification SET last_attempt_at = last_attempt_at - "
            "interval '2 minutes' WHERE sent_at IS NULL"
        )
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=site.smtp_port)
    controller.start()
    try:
        result = manage(site.env, "send_notifications")
        assert result.returncode == 0, result.stderr
        assert result.stdout.endswith(" sent, 0 still failing\n")
    finally:
        controller.stop()
    delivered = [m for m in mailbox.messages if reference.encode() in m]
    assert len(delivered) == 2
    assert site.rows(UNSENT_FOR_REFERENCE, reference) == []
    site.assert_nothing_lost_or_left()


def test_an_edit_shows_at_once_on_every_worker(site):
    """Four workers, each a process of its own: the cache they share (files, or Redis)
    must carry an edit made anywhere, here by another process altogether."""
    assert manage(site.env, "loaddata", "fixtures/guides.json").returncode == 0
    guide = "/guides/gene-therapy-for-leukemia/"
    reader = Family(site.url)
    for _ in range(12):  # every worker renders or reads the page into the cache
        assert reader.get(guide).status == 200
    lead = "Checked again by the editor, in another process."
    edit = (
        "from guides.models import Guide; g = Guide.objects.get(slug='gene-therapy-for-leukemia');"
        f" g.lead = {lead!r}; g.save()"
    )
    result = manage(site.env, "shell", "-c", edit)
    assert result.returncode == 0, result.stderr
    pages = [reader.get(guide).data.decode() for _ in range(12)]
    assert all(lead in page for page in pages)


def test_redis_stopped_or_frozen_while_readers_and_families_come(site, tmp_path):
    """Redis keeps cached pages and the rate-limit counts, nothing else: while it is gone or
    hangs, readers still get the guide and families' reports are stored; when it is back,
    pages are cached again, without restarting anything."""
    assert manage(site.env, "loaddata", "fixtures/guides.json").returncode == 0
    guide = "/guides/gene-therapy-for-leukemia/"
    with ExitStack() as stack:
        redis = RedisServer(stack, tmp_path)
        env = {**site.env, "REDIS_URL": redis.url, "WEB_CONCURRENCY": "2"}
        url, _ = start_gunicorn(stack, env, tmp_path / "gunicorn-redis.log")
        reader, family = Family(url), Family(url)
        assert "ETag" in reader.get(guide).headers
        before = site.inquiry_count()

        def answers_while_redis_is_out() -> None:
            started = time.monotonic()
            for _ in range(6):
                page = reader.get(guide)
                assert page.status == 200
                assert b"What this means for patients" in page.data
                assert "ETag" not in page.headers
            # Each of the 2 workers waits out the one-second timeout once, then leaves Redis
            # alone for a while (cancerfax/caches.py).
            assert time.monotonic() - started < 4
            assert family.send(small_pdf()).status == 302
            health = reader.get("/healthz")
            assert health.status == 503
            assert json.loads(health.data)["cache"] == "down"

        log = tmp_path / "gunicorn-redis.log"
        redis.freeze()  # takes connections, never answers
        try:
            answers_while_redis_is_out()
        finally:
            redis.thaw()
        assert f"without the cache for {RESTING_SECONDS} s: TimeoutError" in log.read_text()
        redis.stop()
        time.sleep(RESTING_SECONDS + 0.5)  # the workers try Redis again, and find it gone
        answers_while_redis_is_out()
        assert f"without the cache for {RESTING_SECONDS} s: ConnectionError" in log.read_text()

        redis.start()
        assert reader.get("/healthz").status == 200
        # Cached again once the workers' ten seconds of rest are over, with no restart.
        deadline = time.monotonic() + 20
        while "ETag" not in reader.get(guide).headers:
            assert time.monotonic() < deadline, "pages were not cached again"
            time.sleep(0.5)
        assert family.send(small_pdf()).status == 302
    assert site.inquiry_count() == before + 3
    site.assert_nothing_lost_or_left()
