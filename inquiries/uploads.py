from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, SkipFile

from .files import sanitise_filename


class LimitedUploadHandler(FileUploadHandler):
    """Stops keeping a file as soon as it passes its size limit, or the files together pass
    theirs, so that an oversized upload never fills the disk. The other fields of the form
    still arrive, so the person keeps what they typed; what went wrong is left on the
    request for the form to say (`request.upload_problems`)."""

    def __init__(self, request=None):
        super().__init__(request)
        self.total = 0
        self.size = 0
        if request is not None:
            request.upload_problems = []

    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        self.size = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.size += len(raw_data)
        self.total += len(raw_data)
        name = sanitise_filename(self.file_name or "")
        if self.size > settings.DOCUMENT_MAX_BYTES:
            self._problem(
                f"“{name}” is larger than {settings.DOCUMENT_MAX_BYTES // (1024 * 1024)} MB. "
                "Please send a smaller copy, for example a PDF saved at a lower quality."
            )
        if self.total > settings.DOCUMENTS_MAX_TOTAL_BYTES:
            self._problem(
                f"Together your files are larger than "
                f"{settings.DOCUMENTS_MAX_TOTAL_BYTES // (1024 * 1024)} MB, so “{name}” was not "
                "received. Please send fewer files now; we can ask for the rest later."
            )
        return raw_data

    def _problem(self, message: str) -> None:
        if self.request is not None:
            self.request.upload_problems.append(message)
        raise SkipFile

    def file_complete(self, file_size: int):
        return None
