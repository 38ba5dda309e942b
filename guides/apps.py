from django.apps import AppConfig


class GuidesConfig(AppConfig):
    name = "guides"
    verbose_name = "Guides"

    def ready(self) -> None:
        # Rendered guide pages are cached; any save or delete of guide content, from the
        # admin, a fixture or a shell, must make the next reader see the change. Signals
        # are the one place all of those pass through.
        from django.db.models.signals import post_delete, post_save

        from .models import content_changed

        for model in self.get_models():
            post_save.connect(content_changed, sender=model, dispatch_uid=f"{model}-saved")
            post_delete.connect(content_changed, sender=model, dispatch_uid=f"{model}-deleted")
