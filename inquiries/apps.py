from pathlib import Path

from django.apps import AppConfig
from django.conf import settings


class InquiriesConfig(AppConfig):
    name = "inquiries"
    verbose_name = "Inquiries"

    def ready(self) -> None:
        # Uploads are written here while they arrive; Django needs the folder to exist, and
        # nobody but the server's user may read it, nor the folders it creates around it.
        folder = Path(settings.FILE_UPLOAD_TEMP_DIR)
        missing = [path for path in (folder, *folder.parents) if not path.exists()]
        for path in reversed(missing):
            path.mkdir(mode=0o700, exist_ok=True)
