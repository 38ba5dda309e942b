"""A ZIP file of documents, made while it is sent: what a coordinator downloads for a whole
scan series. Nothing is compressed (scans barely shrink, and the CPU is the readers'), and
only a part of one image is in memory at a time."""

import hashlib
import logging
import zipfile
from collections.abc import Iterator

from .models import STORAGE_ERRORS, Document

logger = logging.getLogger(__name__)

CHUNK = 1024 * 1024


class _Sink:
    """A file zipfile writes to, which hands on what it was given: it cannot seek, so
    zipfile writes each member's sizes after its data."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.offset = 0

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        self.offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self.offset

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        return data


def _verified(document: Document) -> bool:
    """Whether the stored copy is the one checked; False too if it cannot be read now."""
    digest = hashlib.sha256()
    try:
        with document.file.storage.open(document.file.name, "rb") as stored:
            for chunk in iter(lambda: stored.read(CHUNK), b""):
                digest.update(chunk)
    except STORAGE_ERRORS as error:
        logger.error("Document %s could not be read (%s)", document.pk, type(error).__name__)
        return False
    return digest.hexdigest() == document.sha256


def zipped(documents: list[Document], folder: str) -> Iterator[bytes]:
    """The documents as one ZIP file, under `folder`, in pieces. A document that fails its
    checksum is left out and named in a note inside, never sent."""
    sink = _Sink()
    failed = []
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for number, document in enumerate(documents, 1):
            name = f"{folder}/{number:04d} {document.download_name}"
            if not _verified(document):
                logger.error("Document %s not verified; left out of a series", document.pk)
                failed.append(document.download_name)
                continue
            info = zipfile.ZipInfo(name, date_time=document.received_at.timetuple()[:6])
            with (
                archive.open(info, "w", force_zip64=True) as member,
                document.file.storage.open(document.file.name, "rb") as stored,
            ):
                for chunk in iter(lambda: stored.read(CHUNK), b""):
                    member.write(chunk)
                    yield sink.take()
            yield sink.take()
        if failed:
            note = "These images could not be verified and were left out:\n" + "\n".join(failed)
            archive.writestr(f"{folder}/NOT INCLUDED.txt", note)
    yield sink.take()
