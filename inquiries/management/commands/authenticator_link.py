from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from cancerfax.authenticator_setup import setup_link


class Command(BaseCommand):
    help = (
        "Prints a one-time link with which a staff member sets up their authenticator app, "
        "for the first superuser or anyone whose account has no email address. Hand it over "
        "in person: with the password, it opens the admin."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")

    def handle(self, *args, username: str, **options) -> None:
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None or not user.is_staff:
            raise CommandError(f"No active staff account is called {username!r}.")
        self.stdout.write(setup_link(user))
