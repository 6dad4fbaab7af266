"""Two uploads at the same moment into one environment: LaunchDarkly, and so the sandbox, takes one."""

from __future__ import annotations

import io
import threading
from typing import Any

import pytest
from django.db import connection

from sandbox.models import SandboxImport
from segments_app.connection import launchdarkly_client
from segments_app.launchdarkly import Conflict

pytestmark = pytest.mark.django_db(transaction=True)


def race(count: int) -> list[Any]:
    barrier = threading.Barrier(count)
    outcomes: list[Any] = [None] * count
    segments = ["vip-customers", "churn-risk", "mobile-early-access"]

    def upload(index: int) -> None:
        with launchdarkly_client() as client:
            barrier.wait(timeout=30)  # all at once; a thread that never arrives breaks it for the others
            try:
                outcomes[index] = client.start_import(
                    "demo", "production", segments[index % 3], io.BytesIO(f"key-{index}\n".encode())
                )
            except Conflict as exc:
                outcomes[index] = exc

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    still_uploading = [index for index, thread in enumerate(threads) if thread.is_alive()]
    assert not still_uploading, (f"uploads {still_uploading} did not finish within 60 s", outcomes)
    return outcomes


def check_one_winner(outcomes: list[Any]) -> None:
    accepted = [o for o in outcomes if not isinstance(o, Conflict)]
    refused = [o for o in outcomes if isinstance(o, Conflict)]
    assert len(accepted) == 1, outcomes
    assert len(refused) == len(outcomes) - 1
    assert SandboxImport.objects.count() == 1
    assert str(SandboxImport.objects.get().pk) == accepted[0].import_id


def test_concurrent_imports_in_one_environment_admit_exactly_one(sandbox: str, settings: Any) -> None:
    settings.SANDBOX_IMPORT_BASE_SECONDS = 60
    check_one_winner(race(6))


@pytest.mark.postgres
def test_concurrent_imports_on_postgresql_admit_exactly_one(sandbox: str, settings: Any) -> None:
    """On PostgreSQL the environment row lock (SELECT … FOR UPDATE) is what serialises the check."""
    assert connection.vendor == "postgresql"
    settings.SANDBOX_IMPORT_BASE_SECONDS = 60
    check_one_winner(race(8))
