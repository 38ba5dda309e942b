"""Two groups for the guides, so that the four-eyes rule is the default: "Guide editors"
change drafts and preview them; "Clinical approvers" may also publish a draft (which the
server refuses to whoever changed it last). Editors do not publish by default."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

PARTS = ["guide", "development", "product", "keynumber", "balancepoint", "faq", "reference"]
EDITORS = [
    *(f"{action}_{model}" for model in PARTS for action in ("view", "add", "change", "delete")),
    "view_reviewer",
    "view_revision",
    "view_service",
    "change_service",
    "view_feedback",
]
APPROVERS = [*EDITORS, "publish_guide", "add_reviewer", "change_reviewer"]


def create_groups(apps, schema_editor):
    # Permissions are normally made after all migrations have run; make them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in (("Guide editors", EDITORS), ("Clinical approvers", APPROVERS)):
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.set(
            Permission.objects.filter(content_type__app_label="guides", codename__in=codenames)
        )


def remove_groups(apps, schema_editor):
    names = ["Guide editors", "Clinical approvers"]
    apps.get_model("auth", "Group").objects.filter(name__in=names).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("guides", "0002_revisions"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_groups, remove_groups)]
