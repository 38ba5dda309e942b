from django.core.management.base import BaseCommand

from inquiries.emails import retry_due


class Command(BaseCommand):
    help = (
        "Sends the inquiry emails that could not be sent yet (mail server down). Run it every "
        "few minutes, e.g. from cron."
    )

    def handle(self, *args, **options) -> None:
        sent, failing = retry_due()
        self.stdout.write(f"{sent} sent, {failing} still failing")
