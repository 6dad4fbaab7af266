"""Big-segment exports in the sandbox."""

import uuid

import django.db.models.deletion
from django.db import migrations, models

import sandbox.models


class Migration(migrations.Migration):
    dependencies = [("sandbox", "0004_import_approved_by")]

    operations = [
        migrations.CreateModel(
            name="SandboxExport",
            fields=[
                (
                    "id",
                    models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False),
                ),
                ("member_count", models.BigIntegerField(default=0)),
                ("created_ms", models.BigIntegerField(default=sandbox.models.now_ms)),
                ("file_path", models.CharField(blank=True, default="", max_length=1024)),
                ("size_bytes", models.BigIntegerField(default=0)),
                (
                    "segment",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="exports",
                        to="sandbox.sandboxsegment",
                    ),
                ),
            ],
            options={"ordering": ["-created_ms"]},
        ),
    ]
