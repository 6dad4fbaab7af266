"""Member snapshots (big-segment exports): requested by pages, moved by the worker."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("segments_app", "0007_worker_checkin"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="MemberSnapshot",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("project_key", models.CharField(max_length=140)),
                ("environment_key", models.CharField(max_length=140)),
                ("segment_key", models.CharField(max_length=256)),
                (
                    "purpose",
                    models.CharField(
                        choices=[
                            ("download", "Download"),
                            ("preview", "Impact preview"),
                            ("undo", "Before an import"),
                        ],
                        default="download",
                        max_length=20,
                    ),
                ),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("requested", "Requested"),
                            ("exporting", "Exporting"),
                            ("ready", "Ready"),
                            ("failed", "Failed"),
                        ],
                        default="requested",
                        max_length=20,
                    ),
                ),
                ("export_id", models.CharField(blank=True, default="", max_length=128)),
                ("file_path", models.CharField(blank=True, default="", max_length=1024)),
                ("size_bytes", models.BigIntegerField(blank=True, null=True)),
                ("member_count", models.BigIntegerField(blank=True, null=True)),
                ("error_message", models.TextField(blank=True, default="")),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                ("next_attempt_at", models.DateTimeField(blank=True, null=True)),
                ("attempts", models.PositiveIntegerField(default=0)),
                ("lease_owner", models.CharField(blank=True, default="", max_length=64)),
                ("lease_until", models.DateTimeField(blank=True, null=True)),
                (
                    "import_record",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="snapshots",
                        to="segments_app.importrecord",
                    ),
                ),
                (
                    "requested_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["-created_at", "-id"],
                "indexes": [
                    models.Index(
                        fields=["project_key", "environment_key", "segment_key", "-created_at"],
                        name="snapshot_by_segment",
                    ),
                    models.Index(fields=["next_attempt_at"], name="snapshot_due"),
                    models.Index(fields=["finished_at"], name="snapshot_finished"),
                ],
            },
        ),
    ]
