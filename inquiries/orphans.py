"""Files with no row and rows with no file, in the documents storage (local or S3).

A document's file is written before its row is committed, so a file younger than the grace
period may belong to an inquiry still being saved: it is left out, never called a stray.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from .models import Document, documents_storage


@dataclass
class Orphans:
    stray_files: list[str]  # in the storage, but no document row names them
    missing_files: list[Document]  # document rows whose file is not in the storage

    def __bool__(self) -> bool:
        return bool(self.stray_files or self.missing_files)


def stored_names(folder: str = "") -> Iterator[str]:
    folders, files = documents_storage.listdir(folder)
    for name in files:
        yield f"{folder}{name}"
    for sub in folders:
        yield from stored_names(f"{folder}{sub}/")


def find_orphans(grace: timedelta = timedelta(hours=1)) -> Orphans:
    cutoff = timezone.now() - grace
    # Files first, rows after: a row committed in between then counts as known.
    names = [n for n in stored_names() if documents_storage.get_modified_time(n) < cutoff]
    known = set(Document.objects.values_list("file", flat=True))
    stray = sorted(name for name in names if name not in known)
    missing = [
        document
        for document in Document.objects.select_related("inquiry").order_by("pk").iterator()
        if not documents_storage.exists(document.file.name)
    ]
    # A row erased meanwhile (its file goes after the row) is not missing anything.
    still_there = set(
        Document.objects.filter(pk__in=[d.pk for d in missing]).values_list("pk", flat=True)
    )
    return Orphans(stray_files=stray, missing_files=[d for d in missing if d.pk in still_there])
