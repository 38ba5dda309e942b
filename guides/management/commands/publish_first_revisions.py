"""Publishes, as its first revision, every guide that has none and that nobody has changed
in the admin: for a new site, whose content comes from fixtures/guides.json. A guide already
published is left as it is, so running it again (as `make run` does each time) changes
nothing; a draft someone wrote in the admin waits for a second person to publish it there."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from guides.models import Guide, PublishRefused, Revision


class Command(BaseCommand):
    help = "Publishes every guide that has no revision yet as its first (a full review)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--approver",
            required=True,
            help="The username of the clinical approver who publishes them.",
        )

    def handle(self, *args, approver: str, **options) -> None:
        try:
            user = get_user_model().objects.get(username=approver, is_active=True)
        except get_user_model().DoesNotExist:
            raise CommandError(f"No active account named “{approver}”.") from None
        published = 0
        for guide in Guide.objects.filter(revisions__isnull=True, last_edited_by__isnull=True):
            try:
                guide.publish(user, kind=Revision.Kind.REVIEW, summary="First published.")
            except PublishRefused as refused:
                raise CommandError(f"{guide}: {refused}") from None
            published += 1
        self.stdout.write(f"Guides published for the first time: {published}.")
