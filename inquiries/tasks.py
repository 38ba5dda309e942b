from django.tasks import task

from .emails import deliver
from .models import Inquiry, Notification


@task
def send_notification(notification_id: int) -> bool:
    notification = Notification.objects.select_related("inquiry").get(pk=notification_id)
    return deliver(notification)


def queue_emails(inquiry: Inquiry) -> None:
    """Sends the emails a newly stored inquiry owes (their rows were stored with it)."""
    for notification in inquiry.notifications.all():
        send_notification.enqueue(notification.pk)
