"""`make run`'s first administrator: a superuser, so someone can give people their roles."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Create a first administrator with a random password, if no administrator exists yet."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")

    def handle(self, *args: Any, username: str, **options: Any) -> None:
        users = get_user_model()
        # A superuser, not a staff account: only a superuser manages users and their roles (groups).
        if users.objects.filter(is_superuser=True, is_active=True).exists():
            return
        if users.objects.filter(username=username).exists():
            # Never turn an existing account into an administrator behind its owner's back.
            self.stderr.write(
                f"No active administrator exists, and an account named {username!r} already does, so no "
                f"administrator was created. Create one with: manage.py ensure_admin --username <new name>"
            )
            return
        password = secrets.token_urlsafe(12)
        users.objects.create_superuser(username=username, email="", password=password)
        # Printed once, here only: it is stored hashed and cannot be shown again.
        self.stdout.write(
            self.style.SUCCESS(
                f"Created the first administrator.\n  username: {username}\n  password: {password}\n"
                "Write the password down now: it will not be shown again."
            )
        )
