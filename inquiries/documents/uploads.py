"""Receives the files of the form while they arrive, and nothing more.

Each file goes to an anonymous temporary file in the private uploads folder: it has no name
on disk, so it is gone the moment it is closed or the process dies, however it dies. Its
size and its first bytes are noted on the way. A file that passes its size
limit, or makes the files together pass theirs, is not kept at all: what arrives of it is
dropped, and the form is told why. The other fields of the form still arrive, so the
family keeps what they typed.
"""

import io
import tempfile

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler

from .types import HEAD_BYTES


class ReceivedFile(UploadedFile):
    def __init__(self, file, name: str, size: int, head: bytes, over: str = ""):
        super().__init__(file, name, "application/octet-stream", size)
        self.head = head
        # "too_large" or "too_large_total" when the file was not kept.
        self.over = over


class QuarantineUploadHandler(FileUploadHandler):
    def __init__(self, request=None):
        super().__init__(request)
        self.total = 0
        self.received: list[ReceivedFile] = []

    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        self.file = tempfile.TemporaryFile(dir=settings.FILE_UPLOAD_TEMP_DIR)
        self.size = 0
        self.head = b""
        self.over = ""

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        self.size += len(raw_data)
        self.total += len(raw_data)
        if not self.over and self.size > settings.DOCUMENT_MAX_BYTES:
            self.over = "too_large"
        elif not self.over and self.total > settings.DOCUMENTS_MAX_TOTAL_BYTES:
            self.over = "too_large_total"
        if self.over:
            if self.file is not None:
                self.file.close()
                self.file = None
            return None
        if len(self.head) < HEAD_BYTES:
            self.head += raw_data[: HEAD_BYTES - len(self.head)]
        self.file.write(raw_data)
        return None

    def file_complete(self, file_size: int) -> ReceivedFile:
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
