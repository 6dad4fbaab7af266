"""Roles (Segment viewers, Segment editors, Production editors) as Django groups, managed in the admin.

The names are copied here, not imported from segments_app.access: a migration must keep meaning what
it meant when it ran, whatever the code later calls its roles.
"""

from django.db import migrations

ROLES = ("Segment viewers", "Segment editors", "Production editors")


def create_roles(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name in ROLES:
        Group.objects.get_or_create(name=name)


def remove_roles(apps, schema_editor):
    # Only groups nobody was put in: undoing the migration must not silently take people's rights away.
    Group = apps.get_model("auth", "Group")
    Group.objects.filter(name__in=ROLES, user__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("segments_app", "0004_history_environment_index"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
