"""The "Coordinators" group: exactly what triage needs, nothing more.

Coordinators read inquiries and change their handling (status, assignee, follow-up date),
add notes, download documents (each download recorded), and read the emails' state and the
history. They cannot add or delete inquiries, edit notes, or touch guides or accounts.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

PERMISSIONS = [
    "view_inquiry",
    "change_inquiry",
    "download_document",
    "view_historicalinquiry",
    "view_document",
    "view_note",
    "add_note",
    "view_documentdownload",
    "view_notification",
]


def create_group(apps, schema_editor):
    # Permissions are normally made after all migrations have run; make them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name="Coordinators")
    group.permissions.set(
        Permission.objects.filter(content_type__app_label="inquiries", codename__in=PERMISSIONS)
    )


def remove_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name="Coordinators").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("inquiries", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_group, remove_group)]
