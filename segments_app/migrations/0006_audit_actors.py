"""Who did what on an import: every timeline event a person caused names them (`actor`) and what they
did (`action`). Events written before this migration get theirs from the record's own columns
(uploader, sent_by, cancelled_by), matched by the messages those steps wrote."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.db.models import OuterRef, Q, Subquery


def name_past_actors(apps, schema_editor):
    ImportEvent = apps.get_model("segments_app", "ImportEvent")
    ImportRecord = apps.get_model("segments_app", "ImportRecord")

    def column(name):
        return Subquery(ImportRecord.objects.filter(pk=OuterRef("record_id")).values(name)[:1])

    unnamed = ImportEvent.objects.filter(action="", actor__isnull=True)
    unnamed.filter(status="validating", message__startswith="Received ").update(
        action="uploaded", actor=column("user_id")
    )
    unnamed.filter(
        Q(message__startswith="Sent by ") | Q(message__contains=" said the first row is a header")
    ).update(action="sent", actor=column("sent_by_id"))
    unnamed.filter(status="cancelled", message__startswith="Cancelled by ").update(
        action="cancelled", actor=column("cancelled_by_id")
    )
    unnamed.filter(status="cancelled", message__startswith="Discarded by ").update(
        action="discarded", actor=column("cancelled_by_id")
    )


class Migration(migrations.Migration):
    dependencies = [
        ("segments_app", "0005_roles"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="importevent",
            name="action",
            field=models.CharField(
                blank=True,
                choices=[
                    ("uploaded", "Uploaded"),
                    ("sent", "Sent"),
                    ("cancelled", "Cancelled"),
                    ("discarded", "Discarded"),
                    ("approved", "Approved in LaunchDarkly"),
                ],
                default="",
                max_length=20,
            ),
        ),
        migrations.AddField(
            model_name="importevent",
            name="actor",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.RunPython(name_past_actors, migrations.RunPython.noop),
    ]
