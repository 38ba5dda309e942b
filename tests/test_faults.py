"""Load and faults against the production stack: gunicorn as `make serve` runs it, a real
background worker, and a PostgreSQL server of the tests' own, which they stop and start.
Each test ends by checking that nothing was lost and nothing was left behind: every file
sent has been checked, every rebuilt copy matches its row and checksum, no original is left
in quarantine, no row lacks its file, no file lacks its row, and no upload remains.

Run alone with `pytest -m faults`.
"""

import email
import email.policy
import hashlib
import json
import os
import random
import socket
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis as redis_py
from aiosmtpd.controller import Controller

from cancerfax.cache_outage import RESTING_SECONDS

from .sample_files import large_pdf, pdf_bytes
from .servers import (
    GUIDES,
    Family,
    PostgresServer,
    RedisServer,
    free_port,
    manage,
    postgres_for_the_site,
    prepare,
    start_gunicorn,
    start_worker,
    worker_pids,
)

pytestmark = pytest.mark.faults


def redis_client(url: str) -> redis_py.Redis:
    return redis_py.Redis.from_url(url, socket_timeout=2)


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
    worker: subprocess.Popen
    smtp_port: int
    stack: ExitStack

    def rows(self, query: str, *params) -> list[tuple]:
        with psycopg.connect(self.postgres.url("cancerfax")) as connection:
            return connection.execute(query, params).fetchall()

    def inquiry_count(self) -> int:
        return self.rows("SELECT count(*) FROM inquiries_inquiry")[0][0]

    def states(self, reference: str | None = None) -> list[str]:
        query = (
            "SELECT d.state FROM inquiries_document d "
            "JOIN inquiries_inquiry i ON i.id = d.inquiry_id"
        )
        if reference:
            return [state for (state,) in self.rows(query + " WHERE i.reference = %s", reference)]
        return [state for (state,) in self.rows(query)]

    def wait_until_checked(self, seconds: float = 120) -> None:
        deadline = time.monotonic() + seconds
        while {"received", "checking"} & set(self.states()):
            assert time.monotonic() < deadline, f"documents still unchecked: {self.states()}"
            time.sleep(0.3)

    def uploads_left(self) -> list[Path]:
        folder = self.data_dir / "uploads-in-progress"
        return [p for p in folder.rglob("*") if p.is_file()]

    def assert_nothing_lost_or_left(self) -> None:
        self.wait_until_checked()
        documents = self.data_dir / "documents"
        query = "SELECT file, sha256 FROM inquiries_document WHERE state = 'accepted'"
        for name, sha256 in self.rows(query):
            assert hashlib.sha256((documents / name).read_bytes()).hexdigest() == sha256
        assert self.rows("SELECT count(*) FROM inquiries_document WHERE quarantine_name <> ''") == [
            (0,)
        ]
        quarantine = self.data_dir / "quarantine"
        assert [p for p in quarantine.rglob("*") if p.is_file()] == []
        orphans = manage(self.env, "find_orphans", "--grace-minutes", "0")
        assert orphans.returncode == 0, orphans.stdout + orphans.stderr
        assert self.uploads_left() == []


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faults")
    with ExitStack() as stack:
        postgres = postgres_for_the_site(stack)
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
        prepare(env, ["migrate", "-v0"], ["collectstatic", "--noinput", "-v0"])
        url, gunicorn = start_gunicorn(stack, env, folder / "gunicorn.log")
        worker = start_worker(stack, env, folder / "worker.log")
        yield Site(url, env, folder / "data", postgres, gunicorn, worker, smtp_port, stack)


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
    site.wait_until_checked()
    counts = site.rows(
        "SELECT count(*), count(DISTINCT inquiry_id) FROM inquiries_document d JOIN "
        "inquiries_inquiry i ON i.id = d.inquiry_id WHERE i.id IN (SELECT id FROM "
        "inquiries_inquiry ORDER BY id DESC LIMIT 50) AND d.state = 'accepted'"
    )
    assert counts == [(50, 50)]
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


def small_disk(folder: Path):
    """A 1 MB disk mounted over `folder` (as root), or the test is skipped."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(folder)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small disk here: {mounted.stderr.decode().strip()}")
    # About 200 KB left.
    (folder / "filler").write_bytes(b"\0" * (1024 * 1024 - 200 * 1024))


def test_a_full_disk_while_a_file_arrives_stores_nothing(site, tmp_path):
    quarantine = site.data_dir / "quarantine"
    before = site.inquiry_count()
    small_disk(quarantine)
    try:
        report = large_pdf(tmp_path / "scan.pdf", size_mb=1).read_bytes()
        response = Family(site.url).send([("scan.pdf", report)])
        assert response.status == 503
        assert b"nothing was stored" in response.data
        assert sorted(p.name for p in quarantine.rglob("*") if p.is_file()) == ["filler"]
    finally:
        subprocess.run(["umount", str(quarantine)], check=True)
    assert site.inquiry_count() == before
    assert site.uploads_left() == []


def test_a_full_store_while_the_worker_writes_the_copy_is_waited_out(site):
    documents = site.data_dir / "documents"
    small_disk(documents)
    try:
        family = Family(site.url)
        # Four pages of random pixels make a rebuilt copy larger than the room left.
        assert family.send([("scan.pdf", noisy_pdf(pages=4))]).status == 302
        reference = family.reference()
        deadline = time.monotonic() + 30
        log = site.data_dir.parent / "worker.log"
        while "put back: OSError" not in log.read_text():
            assert time.monotonic() < deadline, "the worker met the full disk"
            time.sleep(0.2)
        assert site.states(reference) in (["received"], ["checking"])
    finally:
        subprocess.run(["umount", str(documents)], check=True)
    # Room again: the worker tries again by itself, and the copy is stored.
    site.wait_until_checked(60)
    assert site.states(reference) == ["accepted"]
    site.assert_nothing_lost_or_left()


def test_a_web_worker_killed_mid_upload_leaves_no_file(site):
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
    for _ in range(2 * 1024 * 1024 // len(marker)):
        connection.sendall(marker)
    # The upload goes to a file with no name in the uploads folder: only the worker that
    # receives it holds it open.
    uploads = str(site.data_dir / "uploads-in-progress")
    holder = None
    for _ in range(100):
        holder = next((pid for pid in worker_pids(site.gunicorn) if holds(pid, uploads)), None)
        if holder:
            break
        time.sleep(0.1)
    assert holder, "a worker is receiving the upload into the uploads folder"
    assert site.uploads_left() == []

    subprocess.run(["kill", "-KILL", str(holder)], check=True)
    connection.close()
    assert site.uploads_left() == []
    # The master started another worker, and the site goes on.
    assert Family(site.url).send(small_pdf()).status == 302
    site.assert_nothing_lost_or_left()


def holds(pid: int, folder: str) -> bool:
    try:
        targets = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return any(target.startswith(folder) for target in targets)


def noisy_pdf(pages: int) -> bytes:
    """Pages of random pixels, slow to render and large once rebuilt."""
    import io

    from PIL import Image

    rng = random.Random(11)  # noqa: S311 - the same test file every run
    pictures = [
        Image.frombytes("L", (600, 800), rng.randbytes(600 * 800)).convert("RGB")
        for _ in range(pages)
    ]
    buffer = io.BytesIO()
    pictures[0].save(buffer, "PDF", save_all=True, append_images=pictures[1:], resolution=72)
    return buffer.getvalue()


UNSENT_FOR_REFERENCE = (
    "SELECT n.kind FROM inquiries_notification n JOIN inquiries_inquiry i "
    "ON n.inquiry_id = i.id WHERE i.reference = %s AND n.sent_at IS NULL"
)
UNSENT_AND_TRIED = UNSENT_FOR_REFERENCE + " AND n.attempts > 0"


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
    site.wait_until_checked()
    deadline = time.monotonic() + 30
    while len(site.rows(UNSENT_AND_TRIED, reference)) < 2:
        assert time.monotonic() < deadline, "the worker tried to send both emails"
        time.sleep(0.2)
    # the family's acknowledgement and the coordinators' alert wait for the mail server.
    assert len(site.rows(UNSENT_FOR_REFERENCE, reference)) == 2

    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=site.smtp_port)
    controller.start()
    try:
        # The worker tries again by itself, waiting a little longer each time.
        deadline = time.monotonic() + 60
        while site.rows(UNSENT_FOR_REFERENCE, reference):
            assert time.monotonic() < deadline, "the emails went out once the server was back"
            time.sleep(0.5)
    finally:
        controller.stop()
    delivered = [m for m in mailbox.messages if reference.encode() in m]
    assert len(delivered) == 2
    site.assert_nothing_lost_or_left()


def test_a_worker_killed_in_the_middle_of_a_check_is_taken_over(site, tmp_path):
    family = Family(site.url)
    assert family.send([("scan.pdf", noisy_pdf(pages=40))]).status == 302
    reference = family.reference()
    deadline = time.monotonic() + 30
    while site.states(reference) != ["checking"]:
        assert time.monotonic() < deadline, "the worker started the check"
        time.sleep(0.05)
    site.worker.kill()
    site.worker.wait()
    with ExitStack() as stack:
        # Another worker, on this machine or any other, takes the check over once the dead
        # one's heartbeat is stale.
        start_worker(stack, site.env, tmp_path / "second-worker.log")
        site.wait_until_checked(120)
        assert site.states(reference) == ["accepted"]
        attempts = site.rows(
            "SELECT check_attempts FROM inquiries_document d JOIN inquiries_inquiry i ON "
            "i.id = d.inquiry_id WHERE i.reference = %s",
            reference,
        )
        assert attempts == [(2,)]
        site.assert_nothing_lost_or_left()
    # The site's own worker again, for the tests that follow.
    site.worker = start_worker(site.stack, site.env, tmp_path / "worker-again.log")


def test_the_database_gone_while_files_wait_and_while_one_is_checked(site):
    family = Family(site.url)
    assert family.send([("scan.pdf", noisy_pdf(pages=20))]).status == 302
    reference = family.reference()
    deadline = time.monotonic() + 30
    while site.states(reference) != ["checking"]:
        assert time.monotonic() < deadline, "the worker started the check"
        time.sleep(0.05)
    site.postgres.stop()  # mid-check: the check ends with nowhere to record it
    time.sleep(6)
    site.postgres.start()
    site.wait_until_checked(120)
    assert site.states(reference) == ["accepted"]
    site.assert_nothing_lost_or_left()


def test_a_publication_shows_at_once_on_every_worker(site):
    """Four workers, each a process of its own, reading the page from the cache they share
    (files, or Redis): a revision published anywhere, here by another process altogether,
    reaches every one of them at once."""
    prepare(site.env, *GUIDES)
    guide = "/guides/gene-therapy-for-leukemia/"
    reader = Family(site.url)
    for _ in range(12):  # every worker reads the page into the cache
        assert reader.get(guide).status == 200
    lead = "Checked again by the editor, in another process."
    edit = (
        "from django.contrib.auth.models import User; from guides.models import Guide;"
        " g = Guide.objects.get(slug='gene-therapy-for-leukemia');"
        f" g.lead = {lead!r}; g.save();"
        " g.publish(User.objects.get(username='approver'), kind='correction', summary='Again.')"
    )
    result = manage(site.env, "shell", "-c", edit)
    assert result.returncode == 0, result.stderr
    pages = [reader.get(guide).data.decode() for _ in range(12)]
    assert all(lead in page for page in pages)


def test_redis_stopped_or_frozen_while_readers_and_families_come(site, tmp_path):
    """Redis keeps the current guide pages for a minute and the rate-limit counts, nothing
    else: while it is gone or hangs, readers still get the guide (from the database) and
    families' reports are stored; when it is back, pages are kept there again, without
    restarting anything."""
    prepare(site.env, *GUIDES)
    guide = "/guides/gene-therapy-for-leukemia/"
    with ExitStack() as stack:
        redis = RedisServer(stack, tmp_path)
        env = {**site.env, "REDIS_URL": redis.url, "WEB_CONCURRENCY": "2"}
        url, _ = start_gunicorn(stack, env, tmp_path / "gunicorn-redis.log")
        reader, family = Family(url), Family(url)
        etag = reader.get(guide).headers["ETag"]
        kept = redis_client(redis.url)
        assert kept.keys("*guide-page*")
        before = site.inquiry_count()

        def answers_while_redis_is_out() -> None:
            started = time.monotonic()
            for _ in range(6):
                page = reader.get(guide)
                assert page.status == 200
                assert b"What this means for patients" in page.data
                assert page.headers["ETag"] == etag  # the same revision, from the database
            # Each of the 2 workers waits out the one-second timeout once, then leaves Redis
            # alone for a while (cancerfax/cache_outage.py).
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
        # Kept there again once the workers' ten seconds of rest are over, with no restart.
        deadline = time.monotonic() + 20
        kept = redis_client(redis.url)
        while not kept.keys("*guide-page*"):
            assert reader.get(guide).status == 200
            assert time.monotonic() < deadline, "pages were not kept in Redis again"
            time.sleep(0.5)
        assert family.send(small_pdf()).status == 302
    assert site.inquiry_count() == before + 3
    site.assert_nothing_lost_or_left()


# The case page, under load and with the mail server down.

MAKE_CASES = """
import json, uuid
from django.utils import timezone
from inquiries.models import CaseLink, Inquiry
tokens = {}
for n in range(%d):
    inquiry = Inquiry.objects.create(
        submission_id=uuid.uuid4(), writer="patient", patient_name=f"Fictional Patient {n}",
        birth_year=1980, country="GB", email=f"family{n}@example.org", diagnosis="b-all",
        treatment_so_far="Chemotherapy.", question="Is CAR-T possible?", language="en",
        consent_version="test", consent_text="test", consent_given_at=timezone.now(),
        documents_checked_at=timezone.now(),
    )
    tokens[inquiry.reference] = CaseLink.issue(inquiry, "asked")[1]
print(json.dumps(tokens))
"""


def cases_with_links(site, count: int) -> dict[str, str]:
    """Inquiries as the form leaves them, each with a link to its case page."""
    made = manage(site.env, "shell", "-c", MAKE_CASES % count)
    assert made.returncode == 0, made.stderr
    return json.loads(made.stdout.strip().splitlines()[-1])


def open_case(site, token: str) -> Family:
    family = Family(site.url)
    assert family.get(f"/inquiries/case/open/?key={token}").status == 200
    assert family.post("/inquiries/case/open/", [("key", token)]).status == 302
    return family


def test_fifty_families_send_documents_to_their_case_pages_at_once(site, tmp_path):
    tokens = cases_with_links(site, 50)
    reports = {
        reference: large_pdf(tmp_path / f"later-{n}.pdf", size_mb=1, seed=100 + n).read_bytes()
        for n, reference in enumerate(tokens)
    }
    families = {reference: open_case(site, token) for reference, token in tokens.items()}

    def send(reference: str) -> int:
        fields = [
            ("text", "Here is the report you asked for."),
            ("submission_id", str(uuid.uuid4())),
            ("documents", ("marrow-report.pdf", reports[reference], "application/pdf")),
        ]
        return families[reference].post("/inquiries/case/", fields).status

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(send, list(tokens)))
    assert statuses == [302] * 50
    site.wait_until_checked()
    rows = site.rows(
        "SELECT i.reference, d.state, d.sha256, d.received_size FROM inquiries_document d "
        "JOIN inquiries_inquiry i ON i.id = d.inquiry_id WHERE i.reference = ANY(%s)",
        list(tokens),
    )
    # Each file stored once, on its own case, and accepted.
    assert sorted(reference for reference, *_ in rows) == sorted(tokens)
    assert {state for _, state, _, _ in rows} == {"accepted"}
    assert all(size == len(reports[reference]) for reference, _, _, size in rows)
    messages = site.rows(
        "SELECT count(*) FROM inquiries_message m JOIN inquiries_inquiry i "
        "ON i.id = m.inquiry_id WHERE m.sender = 'family' AND i.reference = ANY(%s)",
        list(tokens),
    )
    assert messages == [(50,)]
    site.assert_nothing_lost_or_left()


NOTIFY = """
from django.db import transaction
from inquiries.models import Inquiry, Message
inquiry = Inquiry.objects.get(reference=%r)
with transaction.atomic():
    Message.objects.create(inquiry=inquiry, sender="coordinator", text="Could you send the CD?")
    inquiry.notify_family()
"""


def test_mail_server_down_while_a_coordinator_writes(site):
    [reference] = cases_with_links(site, 1)
    # What the admin does when a coordinator saves a message (inquiries/admin.py).
    wrote = manage(site.env, "shell", "-c", NOTIFY % reference)
    assert wrote.returncode == 0, wrote.stderr
    unsent = (
        "SELECT n.attempts FROM inquiries_notification n JOIN inquiries_inquiry i "
        "ON i.id = n.inquiry_id WHERE i.reference = %s AND n.kind = 'notice' "
        "AND n.sent_at IS NULL"
    )
    deadline = time.monotonic() + 30
    while not any(attempts for (attempts,) in site.rows(unsent, reference)):
        assert time.monotonic() < deadline, "the worker tried to send the notice"
        time.sleep(0.2)
    stored = "SELECT text FROM inquiries_message m JOIN inquiries_inquiry i ON i.id = m.inquiry_id"
    assert ("Could you send the CD?",) in site.rows(stored)

    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=site.smtp_port)
    controller.start()
    try:
        deadline = time.monotonic() + 60
        while site.rows(unsent, reference):
            assert time.monotonic() < deadline, "the notice went out once the server was back"
            time.sleep(0.5)
    finally:
        controller.stop()
    [notice] = [
        email.message_from_bytes(m, policy=email.policy.default)
        for m in mailbox.messages
        if reference.encode() in m
    ]
    assert notice["Subject"] == f"There is a new message about {reference}"
    body = notice.get_content()
    assert "/inquiries/case/open/?key=" in body and "Could you send the CD" not in body
    # The links of the attempts that failed were removed; the one sent works.
    links = site.rows(
        "SELECT count(*) FROM inquiries_caselink l JOIN inquiries_inquiry i "
        "ON i.id = l.inquiry_id WHERE i.reference = %s AND l.purpose = 'notice'",
        reference,
    )
    assert links == [(1,)]
