from django.tasks import task

from .documents.pipeline import queue_email
from .emails import deliver
from .models import Notification


@task
def send_notification(notification_id: int) -> bool:
    notification = Notification.objects.select_related("inquiry").get(pk=notification_id)
    sent = deliver(notification)
    if not sent and notification.attempts < Notification.MAX_ATTEMPTS:
        queue_email(notification, delay=notification.next_retry_after())
    return sent
