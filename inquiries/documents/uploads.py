"""Receives the files of the form while they arrive, and nothing more.

Each file goes to an anonymous temporary file in the private uploads folder: it has no name
on disk, so it is gone the moment it is closed or the process dies, however it dies. Its
size and its first bytes are noted on the way. A file that passes its size limit, or makes
the files together pass theirs, is not kept at all: what arrives of it is dropped, and the
form is told why. The other fields of the form still arrive, so the family keeps what they
typed.

A folder (a copy of a scan disc, chosen with the folder picker) arrives as hundreds of
files: they are written one after the other into a single ZIP file, without being read,
which is then checked like a ZIP file the family made.
"""

import io
import tempfile
import zipfile

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler

from .types import HEAD_BYTES, ZIP_STARTS, sanitise_filename

FOLDER_FIELD = "folder"


class ReceivedFile(UploadedFile):
    def __init__(self, file, name: str, size: int, head: bytes, over: str = ""):
        super().__init__(file, name, "application/octet-stream", size)
        self.head = head
        # "too_large", "too_large_archive" or "too_large_total" when it was not kept.
        self.over = over


class FolderArchive:
    """The files of a chosen folder, written as they arrive into one ZIP file."""

    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile(dir=settings.FILE_UPLOAD_TEMP_DIR)
        self.zip = zipfile.ZipFile(self.file, "w", zipfile.ZIP_STORED, allowZip64=True)
        self.members = 0
        self.size = 0
        self.over = ""
        self.writing = None

    def start(self, name: str) -> None:
        self.members += 1
        if self.members > settings.DOCUMENT_ARCHIVE_MAX_MEMBERS:
            self.over = "archive_too_many"
        if self.over:
            return
        # Numbered, as a disc holds many files of the same name in different folders.
        member = zipfile.ZipInfo(f"{self.members:05d}-{sanitise_filename(name)}")
        self.writing = self.zip.open(member, "w", force_zip64=True)

    def write(self, data: bytes, over_all: int) -> None:
        self.size += len(data)
        if not self.over and over_all > settings.DOCUMENT_ARCHIVE_MAX_BYTES:
            self.over = "too_large_archive"
        if self.over:
            self.end_member()
            return
        self.writing.write(data)

    def end_member(self) -> None:
        if self.writing is not None:
            self.writing.close()
            self.writing = None

    def received(self) -> ReceivedFile:
        """The ZIP file, complete, as if the family had sent it."""
        if self.over:
            self.close()
            kept = io.BytesIO()
        else:
            self.zip.close()
            kept = self.file
            kept.seek(0)
        head = kept.read(HEAD_BYTES)
        kept.seek(0)
        name = f"Folder of {self.members:,} files"
        return ReceivedFile(kept, name, self.size, head, self.over)

    def close(self) -> None:
        """Drops the ZIP file (closed first, so that nothing is left to close it later)."""
        try:
            self.end_member()
            self.zip.close()
        except (ValueError, OSError):
            pass  # a file the disk could not take: it is dropped all the same
        self.file.close()


class FolderMember(UploadedFile):
    """A file of a chosen folder: its bytes are in the folder's ZIP file."""

    def __init__(self, archive: FolderArchive, name: str) -> None:
        super().__init__(io.BytesIO(), name, "application/octet-stream", 0)
        self.archive = archive


class QuarantineUploadHandler(FileUploadHandler):
    def __init__(self, request=None):
        super().__init__(request)
        self.total = 0
        self.archives_total = 0
        self.received: list[ReceivedFile] = []
        self.folder: FolderArchive | None = None

    def new_file(self, field_name, *args, **kwargs) -> None:
        super().new_file(field_name, *args, **kwargs)
        self.size = 0
        self.head = b""
        self.over = ""
        if field_name == FOLDER_FIELD:
            self.folder = self.folder or FolderArchive()
            self.folder.start(self.file_name)
            self.file = None
        else:
            self.file = tempfile.TemporaryFile(dir=settings.FILE_UPLOAD_TEMP_DIR)

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        if self.field_name == FOLDER_FIELD:
            # A folder is a ZIP file too, and counts with the others.
            self.archives_total += len(raw_data)
            self.folder.write(raw_data, over_all=self.archives_total)
            return None
        if len(self.head) < HEAD_BYTES:
            self.head += raw_data[: HEAD_BYTES - len(self.head)]
        # A ZIP file (a scan disc) has limits of its own.
        archive = self.head.startswith(ZIP_STARTS)
        self.size += len(raw_data)
        if archive:
            self.archives_total += len(raw_data)
        else:
            self.total += len(raw_data)
        if self.over:
            pass
        elif archive and self.archives_total > settings.DOCUMENT_ARCHIVE_MAX_BYTES:
            self.over = "too_large_archive"
        elif not archive and self.size > settings.DOCUMENT_MAX_BYTES:
            self.over = "too_large"
        elif not archive and self.total > settings.DOCUMENTS_MAX_TOTAL_BYTES:
            self.over = "too_large_total"
        if self.over:
            if self.file is not None:
                self.file.close()
                self.file = None
            return None
        self.file.write(raw_data)
        return None

    def file_complete(self, file_size: int) -> UploadedFile:
        if self.field_name == FOLDER_FIELD:
            self.folder.end_member()
            return FolderMember(self.folder, self.file_name)
        if self.file is not None:
            self.file.seek(0)
        kept = self.file if self.file is not None else io.BytesIO()
        received = ReceivedFile(kept, self.file_name, self.size, self.head, self.over)
        self.received.append(received)
        return received

    def upload_interrupted(self) -> None:
        # A sending broken off midway: nothing of it is kept.
        for received in self.received:
            received.close()
        if getattr(self, "file", None) is not None:
            self.file.close()
        if self.folder is not None:
            self.folder.close()
