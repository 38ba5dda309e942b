"""Files with no row and rows with no file, in the documents and quarantine storages (local
or S3).

A file is written before its row is committed, so a file younger than the grace period may
belong to an inquiry still being saved or a check still ending: it is left out, never
called a stray.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from .models import Document, HeldFile, NamedStorage, documents_storage, quarantine_storage


@dataclass
class Orphans:
    stray_files: list[tuple[NamedStorage, str]]  # in a storage, but no document row names them
    missing_files: list[Document]  # document rows whose file is not in its storage

    def __bool__(self) -> bool:
        return bool(self.stray_files or self.missing_files)


def stored_names(storage: NamedStorage, folder: str = "") -> Iterator[str]:
    try:
        folders, files = storage.listdir(folder)
    except FileNotFoundError:
        return  # nothing stored there yet
    for name in files:
        yield f"{folder}{name}"
    for sub in folders:
        yield from stored_names(storage, f"{folder}{sub}/")


def _unsettled() -> Q:
    return Q(state__in=[Document.State.RECEIVED, Document.State.CHECKING])


def find_orphans(grace: timedelta = timedelta(hours=1)) -> Orphans:
    cutoff = timezone.now() - grace
    # Files first, rows after: a row committed in between then counts as known.
    found = {
        storage: [n for n in stored_names(storage) if storage.get_modified_time(n) < cutoff]
        for storage in (documents_storage, quarantine_storage)
    }
    known = {
        documents_storage: set(Document.objects.values_list("file", flat=True))
        | set(Document.objects.values_list("preview", flat=True)),
        quarantine_storage: set(Document.objects.values_list("quarantine_name", flat=True))
        | set(HeldFile.objects.values_list("quarantine_name", flat=True)),
    }
    stray = [
        (storage, name)
        for storage, names in found.items()
        for name in sorted(names)
        if name not in known[storage]
    ]
    # An unpacked ZIP file has no copy of its own: its members have theirs.
    rows = Document.objects.filter(Q(state=Document.State.ACCEPTED) | _unsettled()).exclude(
        state=Document.State.ACCEPTED, detected_type="zip"
    )
    missing = [
        document
        for document in rows.select_related("inquiry").order_by("pk").iterator()
        if not (
            documents_storage.exists(document.file.name)
            if document.state == Document.State.ACCEPTED
            else quarantine_storage.exists(document.quarantine_name)
        )
    ]
    # A row erased or settled meanwhile (its original goes after the row) is not missing
    # anything.
    still = Document.objects.filter(pk__in=[d.pk for d in missing]).values_list("pk", "state")
    still = dict(still)
    return Orphans(
        stray_files=stray,
        missing_files=[d for d in missing if still.get(d.pk) == d.state],
    )
