"""What an import actually changed: the segment's member count before and after, and (once member
snapshots exist) the exact numbers of keys added and removed."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("segments_app", "0008_member_snapshots")]

    operations = [
        migrations.AddField(
            model_name="importrecord",
            name="members_before",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="importrecord",
            name="members_after",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="importrecord",
            name="members_added",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="importrecord",
            name="members_removed",
            field=models.BigIntegerField(blank=True, null=True),
        ),
    ]
