from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sandbox import imports
from sandbox.models import SandboxImport


class Command(BaseCommand):
    help = "Approve sandbox imports that wait for approval (waitOnApprovals=true)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("import_ids", nargs="*", help="import IDs to approve")
        parser.add_argument("--all", action="store_true", help="approve every waiting import")

    def handle(self, *args: Any, import_ids: list[str], all: bool, **options: Any) -> None:
        if all:
            import_ids = [
                str(pk)
                for pk in SandboxImport.objects.filter(
                    wait_on_approvals=True, approved_ms__isnull=True, final_status=""
                ).values_list("pk", flat=True)
            ]
        if not import_ids:
            raise CommandError("Name import IDs to approve, or pass --all.")
        for import_id in import_ids:
            try:
                approved = imports.approve(import_id)
            except Exception as exc:  # a malformed UUID is reported, not raised as a traceback
                raise CommandError(f"{import_id}: not an import ID ({exc})") from None
            self.stdout.write(f"{import_id}: {'approved' if approved else 'not waiting for approval'}")
