import contextlib
import os

from django.core.files.storage import FileSystemStorage


class WholeFileSystemStorage(FileSystemStorage):
    """Django's file storage, except that a write that stops midway (a full or failing disk,
    a worker stopped by gunicorn's timeout) removes the part already written: a document is
    stored whole or not at all."""

    def _save(self, name: str, content) -> str:
        path = self.path(name)
        existed = os.path.lexists(path)
        try:
            return super()._save(name, content)
        except BaseException as error:
            # Only a file this call created: names are random, and another file of the same
            # name (which Django would have written around) is never touched.
            if not existed and not isinstance(error, FileExistsError):
                with contextlib.suppress(OSError):
                    os.remove(path)
            raise
