"""The worker's side of a document: claimed, opened in the sandbox, rebuilt, stored, and its
inquiry's emails sent once every document of it has been checked.

Every step is a row, so that a worker that dies, a database that goes away or a full disk
loses nothing: a check that did not end is taken up again (`recover`, which each worker
runs every WORKER_RECOVERY_SECONDS), at most DOCUMENT_CHECK_ATTEMPTS times for a file that
keeps killing its worker, and a check that met a passing fault (the store, the database)
is simply put back. The original bytes are deleted once the check has ended, whichever way.
"""

import contextlib
import fcntl
import hashlib
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import IO, TYPE_CHECKING

from botocore.exceptions import ClientError
from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage
from django.db import DatabaseError, connection, transaction
from django.db.models import F, Q
from django.tasks import TaskResultStatus, task
from django.tasks.exceptions import TaskResultDoesNotExist
from django.utils import timezone

from ..models import (
    STORAGE_ERRORS,
    Document,
    HeldFile,
    Inquiry,
    Notification,
    Series,
    document_path,
    documents_storage,
    quarantine_storage,
    stored_path,
)
from . import dicom, images, pdf, sandbox
from .messages import REFUSALS

if TYPE_CHECKING:
    from .unpacking import Unpacking

logger = logging.getLogger(__name__)

# A passing fault: the file is checked again once it has gone.
PASSING_FAULTS = (*STORAGE_ERRORS, DatabaseError)
State = Document.State


@dataclass
class Rebuilt:
    content: IO[bytes]
    content_type: str
    extension: str
    pages: int | None = None
    # For a scan: its series, as the sandbox read it from the header.
    series: dict | None = None
    # For a PDF: the files attached to it, in quarantine, to be checked on their own.
    attachments: "Unpacking | None" = None
    # A small JPEG of the photo or of the first page, for coordinators to look at in place.
    preview: bytes | None = None

    def discard(self) -> None:
        self.content.close()
        if self.attachments is not None:
            self.attachments.discard()


def limits(
    memory_mb: int | None = None, cpu_seconds: int | None = None, wall_seconds: int | None = None
) -> sandbox.Limits:
    return sandbox.Limits(
        memory_mb=memory_mb or settings.DOCUMENT_CHECK_MEMORY_MB,
        cpu_seconds=cpu_seconds or settings.DOCUMENT_CHECK_CPU_SECONDS,
        wall_seconds=wall_seconds or settings.DOCUMENT_CHECK_WALL_SECONDS,
        open_files=settings.DOCUMENT_CHECK_OPEN_FILES,
        isolate=settings.DOCUMENT_CHECK_ISOLATED,
        # Where fewer files are opened at once than the machine has cores, they keep to the
        # last cores, away from the web servers.
        cpus=settings.DOCUMENT_CHECKS_AT_ONCE
        if settings.DOCUMENT_CHECKS_AT_ONCE < (os.cpu_count() or 1)
        else 0,
    )


def scratch() -> IO[bytes]:
    # Anonymous: gone when closed, or if the worker dies.
    return tempfile.TemporaryFile(dir=settings.FILE_UPLOAD_TEMP_DIR)


class TryLater(Exception):
    """A fault of this machine, not of the file: the check is put back and done again."""


def rebuild(kind: str, source: IO[bytes], take_out: bool = False) -> Rebuilt:
    """The copy of `source` (a file of `kind`, as its first bytes said) that coordinators
    may open; with `take_out`, a PDF's attachments too, stored in quarantine. Raises
    sandbox.Refused with the reason the family is told, or TryLater."""
    try:
        if kind in ("pdf", "tiff"):
            return _rebuilt_pages(kind, source, take_out=take_out)
        if kind == "dicom":
            return _rebuilt_dicom(source)
        return _rebuilt_image(kind, source)
    except sandbox.SandboxFailed as failed:
        logger.info("Sandbox ended without a result (%s), a %s file", failed.reason, kind)
        if failed.reason in ("setup", "starved"):
            raise TryLater(failed.reason) from None
        raise sandbox.Refused("damaged" if failed.reason == "crash" else "too_complex") from None
    except sandbox.Refused as refused:
        # Only the reasons a family can be told about come from a child.
        if refused.code not in REFUSALS:
            raise sandbox.Refused("damaged") from None
        raise
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError):
        # The child handed back something out of bounds: nothing of it is kept.
        logger.warning("Sandbox result out of bounds, a %s file", kind)
        raise sandbox.Refused("damaged") from None


def run_sandbox(
    kind: str, source: IO[bytes], options: dict, on_frame, max_payload: int, **limited
) -> dict:
    with _machine_slot():
        return sandbox.run(
            kind, source, options, limits(**limited), on_frame, max_payload=max_payload
        )


@contextlib.contextmanager
def _machine_slot():
    """One of DOCUMENT_CHECKS_AT_ONCE places on this machine, however many workers run on
    it: a file being opened may take a whole core, and a reader must always find one. Each
    place is a lock on a file, which the kernel releases if the worker dies."""
    folder = settings.DATA_DIR / "run"
    folder.mkdir(mode=0o700, exist_ok=True)
    while True:
        for number in range(settings.DOCUMENT_CHECKS_AT_ONCE):
            with open(folder / f"check-{number}.lock", "a") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                yield
                return
        time.sleep(0.2)


def _rebuilt_pages(kind: str, source: IO[bytes], take_out: bool = False) -> Rebuilt:
    """A PDF, or a TIFF scan of several pages: a new PDF of the pages' pictures; and, with
    `take_out`, the files attached to a PDF, each stored in quarantine as it arrives."""
    from .unpacking import Unpacking

    page_pixels = settings.DOCUMENT_PDF_MAX_PAGE_PIXELS
    assembler = pdf.Assembler(
        max_page_pixels=page_pixels,
        max_bytes=settings.DOCUMENT_REBUILT_MAX_BYTES,
        made_on=timezone.localdate(),
    )
    options = {
        "dpi": settings.DOCUMENT_PDF_DPI,
        "max_pages": settings.DOCUMENT_PDF_MAX_PAGES,
        "max_page_pixels": page_pixels,
        "max_pixels": settings.DOCUMENT_IMAGE_MAX_PIXELS,
        "attachments": take_out,
        "max_attachments": settings.DOCUMENT_MAX_FILES * 2,
        "max_attachment_bytes": settings.DOCUMENT_MAX_BYTES,
        # All of them together: a small PDF can carry gigabytes of attachments that
        # compress to nothing.
        "max_attachments_bytes": settings.DOCUMENT_MAX_BYTES,
    }
    attachments = Unpacking(
        max_member_bytes=settings.DOCUMENT_MAX_BYTES,
        max_total_bytes=settings.DOCUMENT_MAX_BYTES,
        rewritten_scans=False,
    )

    def on_frame(header: dict, payload: bytes) -> None:
        if "member" in header:
            attachments.add(header, payload)
        else:
            assembler.add(header, payload)

    try:
        run_sandbox(kind, source, options, on_frame, page_pixels * 3)
        if attachments.part is not None:
            raise ValueError("an attachment cut short")
        out = scratch()
        try:
            pages = assembler.save(out)
        except BaseException:
            out.close()
            raise
    except BaseException:
        attachments.discard()
        raise
    taken_out = attachments if attachments.members else None
    return Rebuilt(
        out, "application/pdf", "pdf", pages, attachments=taken_out, preview=assembler.preview
    )


def _rebuilt_image(kind: str, source: IO[bytes]) -> Rebuilt:
    max_pixels = settings.DOCUMENT_IMAGE_MAX_STORED_PIXELS
    frames: list[tuple[dict, bytes]] = []
    options = {"max_pixels": settings.DOCUMENT_IMAGE_MAX_PIXELS, "max_stored_pixels": max_pixels}
    # A phone's largest photos take twice the memory of anything else to open.
    memory = settings.DOCUMENT_PHOTO_CHECK_MEMORY_MB
    run_sandbox(kind, source, options, _one_frame(frames), max_pixels * 4, memory_mb=memory)
    if not frames:
        raise sandbox.Refused("damaged")
    out = scratch()
    try:
        content_type, extension, preview = images.encode(
            kind, *frames[0], out, max_pixels=max_pixels
        )
    except BaseException:
        out.close()
        raise
    return Rebuilt(out, content_type, extension, preview=preview)


def _rebuilt_dicom(source: IO[bytes]) -> Rebuilt:
    size = source.seek(0, 2)
    frames: list[tuple[dict, bytes]] = []
    # A deflated scan may inflate to a quarter of the sandbox's memory, no more.
    options = {"max_inflated": settings.DOCUMENT_CHECK_MEMORY_MB * 1024 * 1024 // 4}
    run_sandbox("dicom", source, options, _one_frame(frames), size + 128 * 1024)
    if not frames:
        raise sandbox.Refused("damaged")
    header, payload = frames[0]
    out = scratch()
    try:
        out.write(payload)
        out.seek(0)
        if header.get("pdf_inside"):
            # A PDF wrapped in DICOM is a PDF: rebuilt as one, in a sandbox of its own.
            return _rebuilt_pages("pdf", out)  # attachments of a wrapped PDF stay in it
        dicom.check_rebuilt(payload, size)
    except BaseException:
        out.close()
        raise
    return Rebuilt(out, "application/dicom", "dcm", series=Series.from_header(header))


def _one_frame(frames: list):
    def keep(header: dict, payload: bytes) -> None:
        if frames:
            raise ValueError("more than one picture")
        frames.append((header, payload))

    return keep


# The task


@task(queue_name="documents")
def check_document(document_id: int) -> None:
    check(document_id)


def check(document_id: int) -> None:
    document = claim(document_id)
    if document is None:
        return  # checked already, or by another worker now
    if document.check_attempts > settings.DOCUMENT_CHECK_ATTEMPTS:
        logger.warning(
            "Document %s refused after %d tries", document.pk, document.check_attempts - 1
        )
        _refuse(document, "check_failed")
        return
    try:
        with _heartbeat(document):
            if document.detected_type == "zip":
                from .unpacking import unpack

                refusal = unpack(document)
                if refusal == "":
                    _inquiry_checked(document)
                    return
            else:
                refusal, rebuilt = _rebuild_original(document)
                if rebuilt is not None:
                    try:
                        _store(document, rebuilt)
                    except BaseException:
                        rebuilt.discard()
                        raise
                    rebuilt.content.close()
    except (TryLater, *PASSING_FAULTS) as error:
        put_back(document, error)
        return
    if refusal:
        _refuse(document, refusal)


def _rebuild_original(document: Document) -> tuple[str, Rebuilt | None]:
    """("", the rebuilt copy), or (the reason it is refused, None)."""
    try:
        with original(document) as source:
            # A PDF the family sent gives up its attachments; one taken out of a ZIP file
            # or of another PDF keeps its own, which bounds what one file can make of
            # itself (a disc of PDFs of attachments…).
            take_out = document.parent_id is None
            return "", rebuild(document.detected_type, source, take_out=take_out)
    except sandbox.Refused as refused:
        logger.info("Document %s refused (%s)", document.pk, refused.code)
        return refused.code, None
    except OriginalMissing:
        # Nothing to check: the family is asked to send it again.
        logger.error("Document %s: its original is missing from the quarantine", document.pk)
        return "check_failed", None


class OriginalMissing(Exception):
    pass


def claim(document_id: int) -> Document | None:
    """Takes the document for this worker: one waiting, or one whose worker stopped beating.
    Each claim counts an attempt."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.DOCUMENT_STALE_SECONDS)
    claimed = (
        Document.objects.filter(pk=document_id)
        .filter(Q(state=State.RECEIVED) | Q(state=State.CHECKING, heartbeat_at__lt=stale))
        .update(state=State.CHECKING, check_attempts=F("check_attempts") + 1, heartbeat_at=now)
    )
    return Document.objects.get(pk=document_id) if claimed else None


def _mine(document: Document):
    """The document while it is still this worker's check."""
    return Document.objects.filter(
        pk=document.pk, state=State.CHECKING, check_attempts=document.check_attempts
    )


@contextlib.contextmanager
def _heartbeat(document: Document):
    """Renews the check's heartbeat every DOCUMENT_HEARTBEAT_SECONDS for as long as it lasts,
    whatever the worker is busy with (waiting for a place, the sandbox, the store)."""
    done = threading.Event()

    def beat() -> None:
        while not done.wait(settings.DOCUMENT_HEARTBEAT_SECONDS):
            try:
                _mine(document).update(heartbeat_at=timezone.now())
            except DatabaseError as error:
                # The check goes on; should the database still be away at its end, it is
                # put back.
                logger.warning(
                    "Heartbeat of document %s missed: %s", document.pk, type(error).__name__
                )
        connection.close()

    beating = threading.Thread(target=beat, name=f"heartbeat-{document.pk}", daemon=True)
    beating.start()
    try:
        yield
    finally:
        done.set()
        beating.join()


@contextlib.contextmanager
def original(document: Document):
    """The original bytes as a real file, for the sandbox's standard input."""
    try:
        if isinstance(quarantine_storage, FileSystemStorage):
            opened = open(quarantine_storage.path(document.quarantine_name), "rb")  # noqa: SIM115
        else:
            opened = scratch()
            with quarantine_storage.open(document.quarantine_name, "rb") as stored:
                for chunk in iter(lambda: stored.read(1024 * 1024), b""):
                    opened.write(chunk)
            opened.seek(0)
    except FileNotFoundError:
        raise OriginalMissing from None
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
            raise OriginalMissing from None
        raise
    with opened:
        yield opened


def _store(document: Document, rebuilt: Rebuilt) -> None:
    rebuilt.content.seek(0)
    digest, size = hashlib.sha256(), 0
    for chunk in iter(lambda: rebuilt.content.read(1024 * 1024), b""):
        digest.update(chunk)
        size += len(chunk)
    rebuilt.content.seek(0)
    document.extension = rebuilt.extension
    name = documents_storage.save(document_path(document, ""), File(rebuilt.content))
    preview = ""
    try:
        if rebuilt.preview:
            preview = documents_storage.save(
                f"previews/{stored_path('jpg')}", ContentFile(rebuilt.preview)
            )
        series = None
        if rebuilt.series:
            series = Series.objects.get_or_create(
                inquiry_id=document.inquiry_id,
                series_uid=rebuilt.series["series_uid"],
                defaults=rebuilt.series,
            )[0]
        with transaction.atomic():
            settled = settle(
                document,
                series=series,
                file=name,
                content_type=rebuilt.content_type,
                extension=rebuilt.extension,
                size=size,
                sha256=digest.hexdigest(),
                pages=rebuilt.pages,
                preview=preview,
            )
            if settled and rebuilt.attachments is not None:
                from .unpacking import add_members

                add_members(document, rebuilt.attachments)
    except BaseException:
        # The row was not changed: its copy must not stay.
        _delete_copies(name, preview)
        raise
    if not settled:
        _delete_copies(name, preview)
        if rebuilt.attachments is not None:
            rebuilt.attachments.discard()
        return
    _inquiry_checked(document)


def _delete_copies(*names: str) -> None:
    for name in names:
        if name:
            documents_storage.delete(name)


def _refuse(document: Document, refusal: str) -> None:
    try:
        settled = settle(document, refusal=refusal)
    except DatabaseError as error:
        put_back(document, error)
        return
    if settled:
        _inquiry_checked(document)


def settle(document: Document, *, refusal: str = "", **rebuilt) -> bool:
    """Ends this worker's check, accepted (with the rebuilt copy's fields) or refused;
    deletes the original once that is committed. False if the check was no longer ours."""
    fields = {
        "state": State.REFUSED if refusal else State.ACCEPTED,
        "refusal": refusal,
        "checked_at": timezone.now(),
        "heartbeat_at": None,
        "quarantine_name": "",
        **rebuilt,
    }
    with transaction.atomic():
        settled = _mine(document).update(**fields)
        if settled and document.quarantine_name:
            transaction.on_commit(partial(_delete_original, document.quarantine_name), robust=True)
    return bool(settled)


def _inquiry_checked(document: Document) -> None:
    try:
        settle_inquiry(document.inquiry_id)
    except DatabaseError as error:
        # The document's own end is committed; `recover` sends the emails later.
        logger.warning(
            "Inquiry of document %s left to recovery: %s", document.pk, type(error).__name__
        )


def _delete_original(name: str) -> None:
    quarantine_storage.delete(name)


def put_back(document: Document, error: Exception) -> None:
    """A passing fault: the document waits again, its attempt not counted, and is checked
    again after DOCUMENT_RETRY_SECONDS (or by `recover`, once the database is back); after
    DOCUMENT_CHECK_PUT_BACKS of them, it is refused rather than tried for ever."""
    logger.warning("Check of document %s put back: %s", document.pk, type(error).__name__)
    try:
        if document.check_put_backs >= settings.DOCUMENT_CHECK_PUT_BACKS:
            logger.error(
                "Document %s refused after %d put backs", document.pk, document.check_put_backs
            )
            if settle(document, refusal="check_failed"):
                _inquiry_checked(document)
            return
        put = _mine(document).update(
            state=State.RECEIVED,
            check_attempts=F("check_attempts") - 1,
            check_put_backs=F("check_put_backs") + 1,
            heartbeat_at=None,
        )
        if put:
            queue_check(document, delay=timedelta(seconds=settings.DOCUMENT_RETRY_SECONDS))
    except DatabaseError:
        pass  # `recover` finds it once the database is back


def _backend():
    return check_document.get_backend()


def queue_check(document: Document, delay: timedelta | None = None) -> None:
    if delay and not _backend().supports_defer:
        return  # an in-process backend would retry at once, forever: `recover` will
    checking = check_document.using(run_after=timezone.now() + delay) if delay else check_document
    result = checking.enqueue(document.pk)
    Document.objects.filter(pk=document.pk).update(check_task_id=result.id)


def queue_checks(inquiry: Inquiry) -> None:
    for document in inquiry.documents.filter(state=State.RECEIVED):
        queue_check(document)


def settle_inquiry(inquiry_id: int) -> None:
    """Once every document of the inquiry has been checked, its emails go out (once)."""
    if Document.objects.filter(inquiry_id=inquiry_id).unsettled().exists():
        return
    now = timezone.now()
    claimed = Inquiry.objects.filter(pk=inquiry_id, documents_checked_at__isnull=True).update(
        documents_checked_at=now
    )
    if claimed:
        for notification in Notification.objects.filter(inquiry_id=inquiry_id, sent_at=None):
            queue_email(notification)


def queue_email(notification: Notification, delay: timedelta | None = None) -> None:
    from ..tasks import send_notification

    if delay and not _backend().supports_defer:
        return
    sending = (
        send_notification.using(run_after=timezone.now() + delay) if delay else send_notification
    )
    result = sending.enqueue(notification.pk)
    Notification.objects.filter(pk=notification.pk).update(task_id=result.id)


# Recovery


def _pending(task_id: str, stale: timedelta, running: bool = True) -> bool:
    """Whether a task is waiting in the queue, or (with `running`) running and not left
    behind."""
    backend = _backend()
    if not task_id or not backend.supports_get_result:
        return False
    try:
        result = backend.get_result(task_id)
    except TaskResultDoesNotExist:
        return False
    if result.status == TaskResultStatus.READY:
        return True
    started = result.started_at
    return (
        running and result.status == TaskResultStatus.RUNNING and started > timezone.now() - stale
    )


def recover() -> int:
    """Queues again what no worker will otherwise do: documents waiting with no task for
    them, checks whose worker stopped beating, inquiries whose last check ended without
    their emails queued, and emails due again. Returns how many it queued. Files held for
    an unfinished sending past their hour are swept too."""
    HeldFile.sweep()
    now = timezone.now()
    stale = timedelta(seconds=settings.DOCUMENT_STALE_SECONDS)
    queued = 0
    waiting = Document.objects.filter(state=State.RECEIVED, received_at__lt=now - stale)
    for document in waiting.iterator():
        if not _pending(document.check_task_id, stale):
            queue_check(document)
            queued += 1
    for document in Document.objects.filter(state=State.CHECKING, heartbeat_at__lt=now - stale):
        logger.warning(
            "Check of document %s left behind by its worker: taken up again", document.pk
        )
        queue_check(document)
        queued += 1
    unsent = Inquiry.objects.filter(documents_checked_at__isnull=True, received_at__lt=now - stale)
    for inquiry_id in unsent.exclude(
        documents__state__in=[State.RECEIVED, State.CHECKING]
    ).values_list("pk", flat=True):
        settle_inquiry(inquiry_id)
    due = Notification.objects.due()
    for notification in due:
        last = notification.last_attempt_at or notification.created_at
        if last + notification.next_retry_after() <= now and not _pending(
            notification.task_id, stale
        ):
            queue_email(notification)
            queued += 1
    return queued
