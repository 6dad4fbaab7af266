"""The sandbox's demo account comes from `manage.py sandbox_seed` (which `make run` runs in sandbox mode),
not from a migration: run again, it changes nothing."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from sandbox.models import SandboxEnvironment, SandboxMember, SandboxProject, SandboxSegment


def counts() -> tuple[int, int, int, int]:
    return (
        SandboxProject.objects.count(),
        SandboxEnvironment.objects.count(),
        SandboxSegment.objects.count(),
        SandboxMember.objects.count(),
    )


@pytest.mark.django_db
def test_seeding_an_empty_sandbox_creates_the_demo_account_once() -> None:
    SandboxProject.objects.all().delete()
    assert counts() == (0, 0, 0, 0)
    said = io.StringIO()
    call_command("sandbox_seed", stdout=said)
    assert "Seeded" in said.getvalue()
    first = counts()
    assert first[:3] == (1, 2, 10)
    assert first[3] == 2 * 120  # the VIP segment's members, in both environments

    again = io.StringIO()
    call_command("sandbox_seed", stdout=again)
    assert counts() == first
    assert "nothing seeded" in again.getvalue()


@pytest.mark.django_db
def test_seeding_leaves_a_sandbox_that_has_a_project_alone() -> None:
    """A sandbox someone has used (segments changed, members imported) is not reset by a restart."""
    segment = SandboxSegment.objects.get(environment__key="staging", key="churn-risk")
    segment.name = "Renamed by a person"
    segment.save(update_fields=["name"])
    before = counts()
    call_command("sandbox_seed", stdout=io.StringIO())
    assert counts() == before
    assert SandboxSegment.objects.get(pk=segment.pk).name == "Renamed by a person"
