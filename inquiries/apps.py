from pathlib import Path

from django.apps import AppConfig
from django.conf import settings


class InquiriesConfig(AppConfig):
    name = "inquiries"
    verbose_name = "Inquiries"

    def ready(self) -> None:
        # Uploads are written here while they arrive; Django needs the folder to exist, and
        # nobody but the server's user may read it.
        Path(settings.FILE_UPLOAD_TEMP_DIR).mkdir(mode=0o700, parents=True, exist_ok=True)
