"""Workers check in so /healthz can tell whether one is alive."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("segments_app", "0006_audit_actors")]

    operations = [
        migrations.CreateModel(
            name="WorkerCheckin",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=200, unique=True)),
                ("host", models.CharField(max_length=255)),
                ("pid", models.PositiveIntegerField()),
                ("started_at", models.DateTimeField()),
                ("last_seen", models.DateTimeField(db_index=True)),
            ],
            options={"ordering": ["-last_seen"]},
        ),
    ]
