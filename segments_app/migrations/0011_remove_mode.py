"""The remove mode: keys listed in a CSV leave the segment (sent as batched context-target updates)."""

from django.db import migrations, models

MODES = [("merge", "Merge"), ("replace", "Replace"), ("remove", "Remove listed keys")]


class Migration(migrations.Migration):
    dependencies = [("segments_app", "0010_undo")]

    operations = [
        migrations.AlterField(
            model_name="importrecord",
            name="mode",
            field=models.CharField(choices=MODES, max_length=10),
        ),
        migrations.AlterField(
            model_name="importpart",
            name="mode",
            field=models.CharField(choices=MODES, max_length=10),
        ),
    ]
