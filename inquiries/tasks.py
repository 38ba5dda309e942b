from django.tasks import task

from .emails import deliver
from .models import Notification


@task
def send_notification(notification_id: int) -> bool:
    notification = Notification.objects.select_related("inquiry").get(pk=notification_id)
    return deliver(notification)
