"""`manage.py sandbox_seed`: the sandbox's demo account, created once (a second run changes nothing).

A command rather than a migration, so only a database that runs the sandbox (`make run` without a
token, which calls it) ever holds demo projects.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from sandbox.models import SandboxEnvironment, SandboxMember, SandboxProject, SandboxSegment
from sandbox.seed import seed


class Command(BaseCommand):
    help = "Create the built-in sandbox's demo project, environments and segments unless a project exists."

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic():
            existed = SandboxProject.objects.exists()
            seed(SandboxProject, SandboxEnvironment, SandboxSegment, SandboxMember)
        if existed:
            self.stdout.write("The sandbox already has a project: nothing seeded.")
        else:
            self.stdout.write("Seeded the sandbox's demo project.")
