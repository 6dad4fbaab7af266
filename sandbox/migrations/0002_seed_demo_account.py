"""Once seeded the sandbox's demo account; now does nothing, and stays so the history of databases that
applied it stays consistent.

Seeding in a migration put demo projects into every database, production's included. The demo
account is now created by `manage.py sandbox_seed`, which `make run` calls in sandbox mode only.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("sandbox", "0001_initial")]

    operations: list[migrations.operations.base.Operation] = []
