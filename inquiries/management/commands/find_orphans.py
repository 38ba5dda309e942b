from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from inquiries.orphans import find_orphans

SAFE_GRACE_MINUTES = 10  # far longer than any request may last (GUNICORN_TIMEOUT)


class Command(BaseCommand):
    help = (
        "Finds files, rebuilt or in quarantine, that no row names (left by a crash) and "
        "document rows whose file is gone. Exits with status 1 when it finds any, so that "
        "cron can alert."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--grace-minutes",
            type=int,
            default=60,
            help="Leave out files younger than this: their inquiry may still be being saved.",
        )
        parser.add_argument(
            "--remove-stray-files",
            action="store_true",
            help="Delete the files that no row names. Rows without a file are only reported.",
        )

    def handle(self, *args, grace_minutes: int, remove_stray_files: bool, **options) -> None:
        if grace_minutes < 0:
            raise CommandError("--grace-minutes cannot be negative.")
        if remove_stray_files and grace_minutes < SAFE_GRACE_MINUTES:
            # A younger file may be a document whose inquiry is being saved right now.
            raise CommandError(
                f"--remove-stray-files needs --grace-minutes of {SAFE_GRACE_MINUTES} or more."
            )
        found = find_orphans(timedelta(minutes=grace_minutes))
        # Stored names are random and carry nothing about the family; references identify
        # the case for the coordinators without naming anyone.
        for storage, name in found.stray_files:
            self.stdout.write(f"File with no row: {storage.alias}/{name}")
            if remove_stray_files:
                storage.delete(name)
        for document in found.missing_files:
            self.stdout.write(
                f"Row with no file: document {document.pk} of inquiry {document.inquiry.reference}"
            )
        removed = " (removed)" if remove_stray_files and found.stray_files else ""
        summary = (
            f"{len(found.stray_files)} file(s) with no row{removed}, "
            f"{len(found.missing_files)} row(s) with no file."
        )
        if found:
            raise CommandError(summary)
        self.stdout.write(summary)
