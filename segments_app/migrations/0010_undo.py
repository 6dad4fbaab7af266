"""Undo: an import keeps the snapshot of the members taken before it was sent, and a restore (a new
replace import of that snapshot) points at the import whose changes it undoes."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("segments_app", "0009_import_outcomes")]

    operations = [
        migrations.AddField(
            model_name="importrecord",
            name="undo_snapshot",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="segments_app.membersnapshot",
            ),
        ),
        migrations.AddField(
            model_name="importrecord",
            name="restores",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="restored_by",
                to="segments_app.importrecord",
            ),
        ),
    ]
