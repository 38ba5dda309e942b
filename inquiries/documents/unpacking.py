"""The worker's side of a ZIP file (a scan disc, or a folder the form packed): unpacked in
the sandbox (archives.py), each member stored under a generated name as it arrives, then
every member's row written with the archive's end, all at once or not at all.

Scans come back checked and rewritten, and are stored with their series; PDFs and photos
come back as they were, wait in quarantine like any file sent alone, and are checked in
sandboxes of their own. What is no record is only named. A crash of the unpacking child
leads to a second unpacking that checks no scan itself, so that one scan that brings its
decoder down costs that scan alone.
"""

import hashlib
import io
import logging
from collections import defaultdict
from dataclasses import dataclass, field

from django.conf import settings
from django.core.files import File
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from ..models import (
    Document,
    Series,
    documents_storage,
    quarantine_path,
    quarantine_storage,
    stored_path,
)
from . import dicom, pipeline, sandbox
from .archives import PART_BYTES
from .messages import REFUSALS

logger = logging.getLogger(__name__)

# What is checked on its own once it has been taken out of a ZIP file.
CHECKED_ALONE = {"pdf", "jpeg", "png", "heic", "tiff", "dicom"}
# How many names of each kind of member left out are kept, for coordinators and the family.
NAMES_KEPT = 50


@dataclass
class Member:
    name: str
    kind: str
    received_size: int = 0
    refusal: str = ""
    # Accepted scans: the rewritten copy; PDFs and photos: the original, in quarantine.
    file: str = ""
    quarantine_name: str = ""
    sha256: str = ""
    size: int = 0
    series: dict | None = None


@dataclass
class Unpacking:
    max_member_bytes: int
    # What all the members together may come to; for a PDF's attachments, which come as
    # they are and are checked later, a scan rewritten by the child is never taken.
    max_total_bytes: int | None = None
    rewritten_scans: bool = True
    total: int = 0
    members: list[Member] = field(default_factory=list)
    left_out: dict = field(default_factory=lambda: defaultdict(list))
    counts: dict = field(default_factory=lambda: defaultdict(int))
    # (storage, name) of every file stored so far, deleted should the unpacking not end well.
    stored: list = field(default_factory=list)
    last_index: int = -1
    part: dict | None = None
    # Bytes the members unpack to, as the archive's directory declares them.
    unpacked: int = 0

    def add(self, header: dict, payload: bytes) -> None:
        """One frame from the child (see archives.py); raises ValueError for one out of
        bounds, which refuses the whole archive."""
        index, name = int(header["member"]), str(header["name"])[:255]
        in_progress = self.part is not None and self.part["index"] == index
        if not in_progress and (index <= self.last_index or self.part is not None):
            raise ValueError("a member out of order")
        self.last_index = index
        if "left_out" in header:
            why = str(header["left_out"])[:20]
            self.counts[why] += 1
            if len(self.left_out[why]) < NAMES_KEPT:
                self.left_out[why].append(name)
        elif "refused" in header:
            code = str(header["refused"])
            kind = str(header.get("kind") or "")[:10]
            self.members.append(Member(name, kind, refusal=code if code in REFUSALS else "damaged"))
        else:
            self._add_part(index, name, header, payload)

    def _add_part(self, index: int, name: str, header: dict, payload: bytes) -> None:
        size, kind = int(header["size"]), str(header["kind"])
        if not 0 < size <= self.max_member_bytes + 128 * 1024 or kind not in CHECKED_ALONE:
            raise ValueError("a member out of bounds")
        if header.get("dicom") and not self.rewritten_scans:
            raise ValueError("a rewritten scan where only originals may come")
        if len(payload) > PART_BYTES:
            raise ValueError("a part out of bounds")
        if self.part is None:
            self.part = {
                "index": index,
                "size": size,
                "received": 0,
                # A member that comes whole in one part (most scans) is stored from
                # memory: a scratch file each was a tenth of a disc's time.
                "file": io.BytesIO() if header.get("last") else pipeline.scratch(),
                "digest": hashlib.sha256(),
            }
        part = self.part
        part["file"].write(payload)
        part["digest"].update(payload)
        part["received"] += len(payload)
        self.total += len(payload)
        if part["received"] > size or part["size"] != size:
            raise ValueError("a member longer than it said")
        if self.max_total_bytes is not None and self.total > self.max_total_bytes:
            raise ValueError("members larger together than allowed")
        if not header.get("last"):
            return
        self.part = None
        with part["file"] as content:
            if part["received"] != size:
                raise ValueError("a member cut short")
            content.seek(0)
            if header.get("dicom"):
                dicom.check_rebuilt(content.read(132), size)
                content.seek(0)
                stored = documents_storage.save(stored_path("dcm"), File(content))
                self.stored.append((documents_storage, stored))
                self.members.append(
                    Member(
                        name,
                        "dicom",
                        received_size=size,
                        file=stored,
                        sha256=part["digest"].hexdigest(),
                        size=size,
                        series=Series.from_header(header["dicom"]),
                    )
                )
            else:
                stored = quarantine_storage.save(quarantine_path(), File(content))
                self.stored.append((quarantine_storage, stored))
                self.members.append(Member(name, kind, received_size=size, quarantine_name=stored))

    def discard(self) -> None:
        if self.part is not None:
            self.part["file"].close()
            self.part = None
        for storage, name in self.stored:
            try:
                storage.delete(name)
            except Exception as error:  # the orphan sweep finds it later
                logger.warning("A member of an archive stayed (%s)", type(error).__name__)
        self.stored.clear()


def unpack(document: Document) -> str | None:
    """Unpacks the ZIP file `document`, stores its members and settles it; returns "" once
    done, the reason it is refused, or None if its check was taken over by another worker.
    Raises TryLater or a passing fault as a check does."""
    try:
        with pipeline.original(document) as source:
            try:
                unpacking = _unpack(document, source, check_scans=True)
            except sandbox.SandboxFailed as failed:
                if failed.reason in ("setup", "starved"):
                    raise pipeline.TryLater(failed.reason) from None
                logger.warning(
                    "Archive %s: unpacking ended (%s), unpacked again, each scan alone",
                    document.pk,
                    failed.reason,
                )
                unpacking = _unpack(document, source, check_scans=False)
    except sandbox.SandboxFailed as failed:
        if failed.reason in ("setup", "starved"):
            raise pipeline.TryLater(failed.reason) from None
        return "archive_damaged" if failed.reason == "crash" else "too_complex"
    except sandbox.Refused as refused:
        logger.info("Archive %s refused (%s)", document.pk, refused.code)
        return refused.code if refused.code in REFUSALS else "archive_damaged"
    except pipeline.OriginalMissing:
        logger.error("Archive %s: its original is missing from the quarantine", document.pk)
        return "check_failed"
    if not unpacking.members:
        unpacking.discard()
        return "archive_nothing"
    try:
        _settle(document, unpacking)
    except NotOurs:
        unpacking.discard()
        return None
    except BaseException:
        unpacking.discard()
        raise
    return ""


def _unpack(document: Document, source, *, check_scans: bool) -> Unpacking:
    already = (
        Document.objects.filter(inquiry_id=document.inquiry_id, detected_type="zip")
        .exclude(pk=document.pk)
        .accepted()
        .aggregate(total=Sum("size"))["total"]
        or 0
    )
    member_limit = settings.DOCUMENT_ARCHIVE_MEMBER_MAX_BYTES
    options = {
        "max_members": settings.DOCUMENT_ARCHIVE_MAX_MEMBERS,
        "max_unpacked": max(0, settings.DOCUMENT_ARCHIVE_MAX_UNPACKED_BYTES - already),
        "max_ratio": settings.DOCUMENT_ARCHIVE_MAX_RATIO,
        "max_member_bytes": member_limit,
        "check_scans": check_scans,
        "max_inflated": settings.DOCUMENT_ARCHIVE_CHECK_MEMORY_MB * 1024 * 1024 // 4,
    }
    unpacking = Unpacking(max_member_bytes=member_limit)
    try:
        result = pipeline.run_sandbox(
            "zip",
            source,
            options,
            unpacking.add,
            PART_BYTES,
            memory_mb=settings.DOCUMENT_ARCHIVE_CHECK_MEMORY_MB,
            cpu_seconds=settings.DOCUMENT_ARCHIVE_CHECK_CPU_SECONDS,
            wall_seconds=settings.DOCUMENT_ARCHIVE_CHECK_WALL_SECONDS,
        )
        if unpacking.part is not None:
            raise ValueError("a member cut short")
        unpacking.unpacked = int(result.get("unpacked", 0))
    except (ValueError, KeyError, TypeError, OverflowError):
        unpacking.discard()
        logger.warning("Archive %s: the sandbox's result was out of bounds", document.pk)
        raise sandbox.Refused("archive_damaged") from None
    except BaseException:
        unpacking.discard()
        raise
    return unpacking


def _settle(document: Document, unpacking: Unpacking) -> None:
    left_out = {why: names for why, names in unpacking.left_out.items()}
    left_out["counts"] = dict(unpacking.counts)
    with transaction.atomic():
        if not pipeline.settle(document, left_out=left_out, size=unpacking.unpacked):
            raise NotOurs
        add_members(document, unpacking)


def add_members(document: Document, unpacking: Unpacking) -> None:
    """The rows of what was taken out of `document` (in the caller's transaction); those
    waiting in quarantine are queued for their checks once it is committed."""
    with transaction.atomic():
        series = {}
        rows = []
        now = timezone.now()
        for member in unpacking.members:
            row = Document(
                inquiry_id=document.inquiry_id,
                parent=document,
                original_name=member.name,
                detected_type=member.kind,
                received_size=member.received_size,
            )
            if member.refusal:
                row.state, row.refusal = Document.State.REFUSED, member.refusal
            elif member.file:
                uid = member.series["series_uid"]
                if uid not in series:
                    series[uid] = Series.objects.get_or_create(
                        inquiry_id=document.inquiry_id, series_uid=uid, defaults=member.series
                    )[0]
                row.state, row.series = Document.State.ACCEPTED, series[uid]
                row.file, row.sha256, row.size = member.file, member.sha256, member.size
                row.content_type, row.extension = "application/dicom", "dcm"
                row.checked_at = now
            else:
                row.quarantine_name = member.quarantine_name
            rows.append(row)
        created = Document.objects.bulk_create(rows, batch_size=500)
        waiting = [row.pk for row in created if row.quarantine_name]
        transaction.on_commit(lambda: _queue(waiting), robust=True)


def _queue(document_ids: list[int]) -> None:
    for document in Document.objects.filter(pk__in=document_ids):
        pipeline.queue_check(document)


class NotOurs(Exception):
    """The archive's check was taken over by another worker: its members are theirs."""
