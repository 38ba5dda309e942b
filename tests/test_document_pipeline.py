"""A file's way from the form to the coordinator: received into quarantine, checked by a
worker in the sandbox, then accepted as a rebuilt copy or refused with a reason. Every
state is a row; a check that did not end is taken up again; nothing is lost."""

import socket
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from inquiries.documents import pipeline, sandbox
from inquiries.models import Document, Inquiry, quarantine_storage

from .conftest import ROOT, files_in, rebuild_bytes, refusal_code
from .sample_files import jpeg_bytes, pdf_bytes, progressive_jpeg_with_scans
from .servers import form_data

pytestmark = pytest.mark.django_db

FORM_URL = "/inquiries/new/"


def send_files(client: Client, *files: tuple[str, bytes]):
    from django.core.files.uploadedfile import SimpleUploadedFile

    documents = [SimpleUploadedFile(name, data) for name, data in files]
    return client.post(FORM_URL, {**form_data(), "documents": documents})


@pytest.fixture
def no_worker(monkeypatch):
    """As if no worker were running: the files wait in quarantine."""
    monkeypatch.setattr("inquiries.views.queue_checks", lambda inquiry: None)


def test_nothing_is_opened_in_the_request_the_files_wait_in_quarantine(
    client, no_worker, quarantine_dir, documents_dir
):
    original = pdf_bytes(pages=2)
    assert send_files(client, ("report.pdf", original)).status_code == 302
    document = Document.objects.get()
    assert (document.state, document.detected_type, document.received_size) == (
        "received",
        "pdf",
        len(original),
    )
    assert document.pages is None and not document.file
    assert [path.read_bytes() for path in files_in(quarantine_dir)] == [original]
    assert files_in(documents_dir) == []
    # No email before the files are checked: the receipt says how many were accepted.
    assert mail.outbox == []


def test_the_thank_you_page_refreshes_itself_while_files_are_checked(client, no_worker):
    response = send_files(client, ("report.pdf", pdf_bytes()))
    page = client.get(response.url).content.decode()
    assert '<meta http-equiv="refresh" content="5">' in page
    assert "Being checked" in page
    assert '<a href="?refresh=off">Stop updating automatically</a>' in page
    quiet = client.get(response.url + "?refresh=off").content.decode()
    assert 'http-equiv="refresh"' not in quiet and "Check again" in quiet
    # Once checked, it stops refreshing and says how it ended.
    pipeline.check(Document.objects.get().pk)
    done = client.get(response.url).content.decode()
    assert 'http-equiv="refresh"' not in done
    assert "Every file has been checked and received safely." in done


def test_a_check_taking_far_too_long_stops_the_refreshing(client, no_worker):
    response = send_files(client, ("report.pdf", pdf_bytes()))
    Inquiry.objects.update(received_at=timezone.now() - timedelta(minutes=11))
    page = client.get(response.url).content.decode()
    assert 'http-equiv="refresh"' not in page
    assert "Checking is taking longer than usual" in page


def test_coordinators_see_only_accepted_copies_and_the_rest_as_being_checked(
    client, coordinator_client, no_worker
):
    send_files(client, ("report.pdf", pdf_bytes()), ("photo.jpg", jpeg_bytes()))
    inquiry = Inquiry.objects.get()
    report, photo = inquiry.documents.order_by("pk")
    pipeline.check(photo.pk)
    page = coordinator_client.get(f"/admin/inquiries/inquiry/{inquiry.pk}/change/").content
    page = page.decode()
    assert page.count(">Download</a>") == 1
    assert "Being checked" in page or "Received, waiting to be checked" in page
    listing = coordinator_client.get("/admin/inquiries/inquiry/?cases=all").content.decode()
    assert "1 (1 being checked)" in listing
    # Never the original, whatever address is tried.
    url = f"/admin/inquiries/inquiry/document/{report.pk}/download/"
    assert coordinator_client.get(url).status_code == 404


def test_a_refused_file_is_named_with_its_reason_for_coordinators(
    client, coordinator_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        send_files(client, ("locked.pdf", pdf_bytes(encrypted=True)))
    document = Document.objects.get()
    assert (document.state, document.refusal) == ("refused", "encrypted")
    assert document.quarantine_name == ""
    page = coordinator_client.get(f"/admin/inquiries/inquiry/{document.inquiry.pk}/change/")
    assert "“locked.pdf” asks for a password before it opens." in page.content.decode()
    url = f"/admin/inquiries/inquiry/document/{document.pk}/download/"
    assert coordinator_client.get(url).status_code == 404


def test_a_check_left_behind_by_a_dead_worker_is_taken_up_again(client, no_worker, settings):
    send_files(client, ("report.pdf", pdf_bytes()))
    document = Document.objects.get()
    # A worker claimed it, then died: its heartbeat stopped a while ago.
    stale = timezone.now() - timedelta(seconds=settings.DOCUMENT_STALE_SECONDS + 1)
    Document.objects.update(state="checking", check_attempts=1, heartbeat_at=stale)
    assert pipeline.recover() == 1
    document.refresh_from_db()
    assert (document.state, document.check_attempts, document.pages) == ("accepted", 2, 1)


def test_a_file_that_keeps_killing_its_worker_is_refused_after_the_last_attempt(
    client, no_worker, settings
):
    settings.DOCUMENT_CHECK_ATTEMPTS = 3
    send_files(client, ("report.pdf", pdf_bytes()))
    stale = timezone.now() - timedelta(seconds=settings.DOCUMENT_STALE_SECONDS + 1)
    Document.objects.update(state="checking", check_attempts=3, heartbeat_at=stale)
    pipeline.recover()
    document = Document.objects.get()
    assert (document.state, document.refusal) == ("refused", "check_failed")
    assert "We could not finish checking “report.pdf”" in document.refusal_message
    # Its inquiry is settled, and the family hears how many files arrived.
    assert len(mail.outbox) == 2


def test_a_file_waiting_with_no_task_for_it_is_queued_by_recovery(client, no_worker, settings):
    send_files(client, ("report.pdf", pdf_bytes()))
    Document.objects.update(
        received_at=timezone.now() - timedelta(seconds=settings.DOCUMENT_STALE_SECONDS + 1)
    )
    assert pipeline.recover() == 1
    assert Document.objects.get().state == "accepted"
    assert pipeline.recover() == 0


def test_a_store_that_fails_while_the_copy_is_written_puts_the_check_back(
    client, no_worker, monkeypatch, documents_dir, quarantine_dir
):
    send_files(client, ("report.pdf", pdf_bytes()))
    document = Document.objects.get()

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("inquiries.documents.pipeline.documents_storage.save", full)
    pipeline.check(document.pk)
    document.refresh_from_db()
    # Waiting again, the attempt not counted, the original kept, nothing half-stored.
    assert (document.state, document.check_attempts) == ("received", 0)
    assert len(files_in(quarantine_dir)) == 1 and files_in(documents_dir) == []
    monkeypatch.undo()
    pipeline.check(document.pk)
    document.refresh_from_db()
    assert document.state == "accepted" and len(files_in(documents_dir)) == 1


def test_a_check_another_worker_took_over_cannot_be_ended_by_the_first(client, no_worker):
    send_files(client, ("report.pdf", pdf_bytes()))
    first = pipeline.claim(Document.objects.get().pk)
    Document.objects.update(check_attempts=2)  # taken over meanwhile
    assert pipeline.settle(first, refusal="damaged") is False
    assert Document.objects.get().state == "checking"
    assert quarantine_storage.exists(first.quarantine_name)


def test_the_receipt_counts_the_files_and_never_names_them(
    client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        send_files(
            client,
            ("HIV test Ada.pdf", pdf_bytes()),
            ("scan.jpg", jpeg_bytes()),
            ("locked.pdf", pdf_bytes(encrypted=True)),
        )
    receipt = next(m for m in mail.outbox if m.to == ["sam.example@example.org"])
    assert "2 were received safely and 1 could not be accepted" in receipt.body
    for name in ("HIV", "scan.jpg", "locked"):
        assert name not in receipt.body
    alert = next(m for m in mail.outbox if m is not receipt)
    assert "Documents: 2 accepted, 1 refused" in alert.body


# The sandbox itself


def run_isolated(code: str, tmp_path, user_namespace: bool | None = None):
    """`code` run after the sandbox's own isolation, as a decoder would run."""
    root = tmp_path / "root"
    root.mkdir()
    root.chmod(0o755)
    # What an exploited decoder would have: the modules already loaded, then isolation.
    program = (
        f"import os, socket, sys; sys.path.insert(0, {str(ROOT)!r})\n"
        "from inquiries.documents import sandbox\n"
        f"sandbox._isolate({str(root)!r}, {user_namespace!r})\n"
    ) + code
    return subprocess.run(
        [sys.executable, "-I", "-c", program], capture_output=True, text=True, timeout=60
    )


def test_the_sandbox_reaches_no_network(tmp_path):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        reached = run_isolated(
            "try:\n"
            f"    socket.socket().connect(('127.0.0.1', {port})); print('reached')\n"
            "except OSError as error: print('refused', error.errno)\n",
            tmp_path,
        )
    assert reached.stdout.startswith("refused"), reached.stdout + reached.stderr


def test_the_sandbox_sees_no_file_of_the_machine(tmp_path):
    secret = tmp_path / "db.sqlite3"
    secret.write_text("sessions and authenticator keys")
    seen = run_isolated(
        f"print(os.path.exists({str(secret)!r}), os.path.exists('/etc/passwd'), os.listdir('/'))\n",
        tmp_path,
    )
    assert seen.stdout.strip() == "False False []", seen.stderr


def slow_photo() -> bytes:
    """A real, if odd, photo that takes seconds of CPU to decode: a large progressive JPEG
    of 450 scans, under the number refused at once."""
    return progressive_jpeg_with_scans(450, size=4096)


def test_a_child_past_its_wall_time_is_stopped(settings, tmp_path):
    settings.DOCUMENT_CHECK_WALL_SECONDS = 1
    settings.DOCUMENT_CHECK_CPU_SECONDS = 60
    with (tmp_path / "slow.jpg").open("w+b") as source:
        source.write(slow_photo())
        with pytest.raises(sandbox.SandboxFailed) as failed:
            sandbox.run("jpeg", source, {"max_pixels": 50_000_000}, pipeline.limits(),
                        lambda header, payload: None, max_payload=10**9)  # fmt: skip
    assert failed.value.reason == "time"


def test_a_child_that_sends_more_than_it_may_is_stopped(tmp_path):
    with (tmp_path / "photo.jpg").open("w+b") as source:
        source.write(jpeg_bytes())
        with pytest.raises(sandbox.SandboxFailed):
            sandbox.run("jpeg", source, {"max_pixels": 50_000_000}, pipeline.limits(),
                        lambda header, payload: None, max_payload=100)  # fmt: skip


def test_the_memory_limit_is_the_setting(settings):
    from .sample_files import deflated_dicom_bomb

    bomb = deflated_dicom_bomb(megabytes=256)
    settings.DOCUMENT_CHECK_MEMORY_MB = 300
    assert refusal_code("dicom", bomb) == "too_complex"
    # With room enough, the same scan is read, and rewritten without its private element.
    settings.DOCUMENT_CHECK_MEMORY_MB = 2048
    assert rebuild_bytes("dicom", bomb).content_type == "application/dicom"


def test_the_cpu_limit_is_the_setting(settings):
    settings.DOCUMENT_CHECK_CPU_SECONDS = 1
    assert refusal_code("jpeg", slow_photo()) == "too_complex"
    settings.DOCUMENT_CHECK_CPU_SECONDS = 60
    assert rebuild_bytes("jpeg", slow_photo()).content_type == "image/jpeg"


def test_a_jpeg_of_thousands_of_scans_is_refused_before_it_is_decoded(settings):
    settings.DOCUMENT_CHECK_CPU_SECONDS = 60
    started = time.monotonic()
    assert refusal_code("jpeg", progressive_jpeg_with_scans(5000)) == "too_complex"
    assert time.monotonic() - started < 2
    # An ordinary progressive photo has a handful of scans.
    assert rebuild_bytes("jpeg", progressive_jpeg_with_scans(0)).content_type == "image/jpeg"


def test_a_worker_refuses_to_start_where_the_sandbox_cannot_isolate(monkeypatch, settings):
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    monkeypatch.setattr(sandbox, "probe", lambda limits: "unshare: Operation not permitted")
    with pytest.raises(CommandError, match="cannot be opened in the sandbox"):
        call_command("worker")


# What the review of the pipeline found, each kept from coming back


def test_a_database_error_after_the_copy_is_recorded_keeps_the_copy(
    client, no_worker, monkeypatch, documents_dir, django_capture_on_commit_callbacks
):
    from django.db import OperationalError

    send_files(client, ("report.pdf", pdf_bytes()))
    document = Document.objects.get()

    def gone(inquiry_id):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(pipeline, "settle_inquiry", gone)
    with django_capture_on_commit_callbacks(execute=True):
        pipeline.check(document.pk)
    document.refresh_from_db()
    assert document.state == "accepted"
    assert [p.name for p in files_in(documents_dir)] == [document.file.name.rsplit("/", 1)[1]]
    # The emails are left to the workers' recovery, which finds the inquiry checked.
    monkeypatch.undo()
    Inquiry.objects.update(received_at=timezone.now() - timedelta(minutes=5))
    pipeline.recover()
    assert len(mail.outbox) == 2


def test_a_file_missing_from_quarantine_is_refused_not_tried_for_ever(
    client, no_worker, quarantine_dir
):
    send_files(client, ("report.pdf", pdf_bytes()))
    document = Document.objects.get()
    (quarantine_dir / document.quarantine_name).unlink()
    pipeline.check(document.pk)
    document.refresh_from_db()
    assert (document.state, document.refusal) == ("refused", "check_failed")


@pytest.mark.parametrize("size", [(1, 40_000), (200_000, 1)], ids=["tall", "wide"])
def test_a_page_of_an_absurd_shape_is_refused_without_taking_the_workers_memory(size):
    from .sample_files import CATALOG, PAGES, pdf_from_objects

    page = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] >>" % size
    started = time.monotonic()
    assert refusal_code("pdf", pdf_from_objects(CATALOG, PAGES, page)) == "too_complex"
    assert time.monotonic() - started < 10


def test_a_check_the_machine_could_not_set_up_is_put_back_not_refused(client, no_worker, settings):
    send_files(client, ("report.pdf", pdf_bytes()))
    settings.DOCUMENT_CHECK_MEMORY_MB = 8  # too little for the child even to start
    pipeline.check(Document.objects.get().pk)
    document = Document.objects.get()
    assert (document.state, document.check_attempts, document.check_put_backs) == (
        "received",
        0,
        1,
    )
    settings.DOCUMENT_CHECK_MEMORY_MB = 1024
    pipeline.check(document.pk)
    assert Document.objects.get().state == "accepted"


def test_a_check_put_back_too_often_is_refused_at_last(client, no_worker, settings):
    settings.DOCUMENT_CHECK_PUT_BACKS = 2
    send_files(client, ("report.pdf", pdf_bytes()))
    settings.DOCUMENT_CHECK_MEMORY_MB = 8
    for _ in range(3):
        pipeline.check(Document.objects.get().pk)
    document = Document.objects.get()
    assert (document.state, document.refusal) == ("refused", "check_failed")


def test_a_child_starved_of_the_cpu_is_put_back_not_refused(settings, tmp_path):
    import os
    import signal
    import threading

    from .servers import sandbox_children

    settings.DOCUMENT_CHECK_WALL_SECONDS = 2

    def stop_it() -> None:
        # As if the machine gave it no CPU at all: the child, and the processes it became.
        for _ in range(200):
            children = sandbox_children()
            if len(children) >= 3:
                for pid in children:
                    os.kill(pid, signal.SIGSTOP)
                return
            time.sleep(0.02)

    threading.Thread(target=stop_it, daemon=True).start()
    with (tmp_path / "slow.jpg").open("w+b") as source:
        source.write(slow_photo())
        with pytest.raises(pipeline.TryLater):
            pipeline.rebuild("jpeg", source)


def test_scans_keep_no_binary_data_but_their_own_image(tmp_path):
    import io as bytes_io

    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from .sample_files import WINDOWS_EXE, dicom_dataset, dicom_from

    dataset = dicom_dataset()
    icon = Dataset()
    icon.Rows = icon.Columns = 8
    icon.SamplesPerPixel, icon.BitsAllocated = 1, 8
    icon.PixelData = WINDOWS_EXE[:64]
    dataset.IconImageSequence = Sequence([icon])
    dataset.add_new(0x60003000, "OW", WINDOWS_EXE[:64])  # Overlay Data
    dataset.add_new(0x7FE00008, "OF", WINDOWS_EXE[:64])  # Float Pixel Data
    stored = pipeline_bytes("dicom", dicom_from(dataset))
    assert WINDOWS_EXE[:16] not in stored
    rebuilt = pydicom.dcmread(bytes_io.BytesIO(stored))
    assert "PixelData" not in rebuilt.IconImageSequence[0]
    assert 0x60003000 not in rebuilt and 0x7FE00008 not in rebuilt
    assert rebuilt.PixelData == bytes(range(64))


def pipeline_bytes(kind: str, data: bytes) -> bytes:
    rebuilt = rebuild_bytes(kind, data)
    with rebuilt.content:
        rebuilt.content.seek(0)
        return rebuilt.content.read()


@pytest.mark.parametrize("user_namespace", [False, True], ids=["as-root", "user-namespace"])
def test_the_sandbox_cannot_be_climbed_out_of(tmp_path, user_namespace):
    climb = run_isolated(
        "import os\n"
        "found = []\n"
        "for attempt in ('chroot', 'nested'):\n"
        "    try:\n"
        "        if attempt == 'nested':\n"
        "            os.unshare(os.CLONE_NEWUSER | os.CLONE_NEWNS)\n"
        "        os.mkdir('/x')\n"
        "        os.chroot('/x')\n"
        "        for _ in range(40):\n"
        "            os.chdir('..')\n"
        "        os.chroot('.')\n"
        "    except OSError as error:\n"
        "        found.append(error.errno)\n"
        "    found.append(os.path.exists('/etc/passwd'))\n"
        "print(found)\n",
        tmp_path,
        user_namespace=user_namespace,
    )
    assert "True" not in climb.stdout and climb.stdout.startswith("["), climb.stdout + climb.stderr


def test_a_fork_bomb_in_the_sandbox_stops_at_a_few_processes(tmp_path):
    bomb = run_isolated(
        "import os, sys\n"
        "started = 0\n"
        "try:\n"
        "    for _ in range(200):\n"
        "        if os.fork() == 0:\n"
        "            __import__('time').sleep(5)\n"
        "            os._exit(0)\n"
        "        started += 1\n"
        "except OSError:\n"
        "    pass\n"
        "print(started)\n",
        tmp_path,
    )
    assert bomb.stdout.strip() and int(bomb.stdout.strip()) <= 40, bomb.stdout + bomb.stderr


def test_a_process_left_in_the_sandbox_can_reach_no_other_process(tmp_path):
    import os

    outside = os.getpid()
    reach = run_isolated(
        "import os, signal\n"
        "try:\n"
        f"    os.kill({outside}, 0); print('reached')\n"
        "except ProcessLookupError:\n"
        "    print('not there')\n"
        "print(os.getpid())\n",
        tmp_path,
    )
    assert reach.stdout.split() == ["not", "there", "2"], reach.stdout + reach.stderr


def test_what_a_sandbox_starts_ends_with_it(tmp_path):
    from pathlib import Path

    marker = "left-behind-by-a-sandbox"
    left = run_isolated(
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        f"    time.sleep(30)  # {marker}\n"
        "    os._exit(0)\n"
        "print('started one')\n",
        tmp_path,
    )
    assert left.stdout.strip() == "started one", left.stderr
    time.sleep(0.5)
    still = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            still += [cmdline] if marker.encode() in cmdline.read_bytes() else []
        except OSError:
            continue  # ended meanwhile
    assert still == []
