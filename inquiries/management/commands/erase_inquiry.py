from django.core.management.base import BaseCommand, CommandError

from inquiries.models import Inquiry


class Command(BaseCommand):
    help = (
        "Erases one inquiry completely at the family's request (right to erasure): its "
        "details, documents (files included), notes, download records, emails and history."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("reference", help="The inquiry's reference, e.g. CF-7K3M-9Q2P.")
        parser.add_argument(
            "--yes", action="store_true", help="Do not ask for confirmation (for scripts)."
        )

    def handle(self, *args, reference: str, yes: bool, **options) -> None:
        reference = reference.strip().upper()
        try:
            inquiry = Inquiry.objects.get(reference=reference)
        except Inquiry.DoesNotExist:
            raise CommandError(f"No inquiry has the reference {reference}.") from None
        documents = inquiry.documents.count()
        if not yes:
            answer = input(
                f"Erase inquiry {reference} and its {documents} documents for good? Type yes: "
            )
            if answer.strip().lower() != "yes":
                raise CommandError("Nothing was erased.")
        inquiry.erase()
        self.stdout.write(f"Erased inquiry {reference} and its {documents} documents.")
