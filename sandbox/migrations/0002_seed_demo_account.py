from django.db import migrations


def seed_demo(apps, schema_editor):
    from sandbox.seed import seed

    seed(
        apps.get_model("sandbox", "SandboxProject"),
        apps.get_model("sandbox", "SandboxEnvironment"),
        apps.get_model("sandbox", "SandboxSegment"),
        apps.get_model("sandbox", "SandboxMember"),
    )


class Migration(migrations.Migration):
    dependencies = [("sandbox", "0001_initial")]

    operations = [migrations.RunPython(seed_demo, migrations.RunPython.noop)]
