import contextlib
import os

from django.core.files.storage import FileSystemStorage


class PrivateFileSystemStorage(FileSystemStorage):
    """Django's file storage, except that a write that fails midway (a full disk, a failing
    one) removes the part already written: a document is stored whole or not at all."""

    def _save(self, name: str, content) -> str:
        try:
            return super()._save(name, content)
        except FileExistsError:
            raise
        except OSError:
            # Names are random (inquiries.models.document_path), so the file at `name` is
            # the one this call created.
            with contextlib.suppress(OSError):
                os.remove(self.path(name))
            raise
