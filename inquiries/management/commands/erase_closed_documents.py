from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils import timezone

from inquiries.models import Document, Inquiry, Series


class Command(BaseCommand):
    help = (
        "Erases the documents (files and rows) of inquiries closed more than "
        "DOCUMENT_RETENTION_DAYS days ago. The inquiries themselves are kept."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--days",
            type=int,
            default=settings.DOCUMENT_RETENTION_DAYS,
            help="Retention in days (default: the DOCUMENT_RETENTION_DAYS setting).",
        )

    def handle(self, *args, days: int, **options) -> None:
        cutoff = timezone.now() - timedelta(days=days)
        expired = Inquiry.objects.closed_before(cutoff)
        # A ZIP file's members go with it; the series they made, described by their headers,
        # go once they are empty.
        documents = Document.objects.filter(inquiry__in=expired, parent=None)
        count = 0
        for document in documents.iterator():
            document.erase()
            count += 1
        Series.objects.filter(inquiry__in=expired).delete()
        self.stdout.write(f"Erased {count} documents of inquiries closed before {cutoff:%Y-%m-%d}.")
