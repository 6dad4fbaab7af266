"""The audit trail: who did what is recorded on every event a person caused, and no code path — model,
queryset, housekeeping or any URL of the site — changes or removes a record once written."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.forms.models import model_to_dict
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from sandbox.approvals import record_approval
from segments_app.access import EDITORS, PRODUCTION_EDITORS
from segments_app.imports import pipeline, storage
from segments_app.models import (
    AuditRecordProtected,
    ImportEvent,
    ImportPart,
    ImportRecord,
    ImportStatus,
    SegmentActivity,
)
from tests.factories import recorded_upload

pytestmark = pytest.mark.django_db

Action = ImportEvent.Action


def upload(
    user: Any, content: bytes = b"a\nb\n", *, send: bool = True, environment: str = "live"
) -> ImportRecord:
    """An upload as the view records it, then checked by one worker step (no LaunchDarkly call)."""
    record, _ = recorded_upload(user, content, environment=environment, send=send)
    return pipeline.advance(record.pk)


def actors(record: ImportRecord) -> list[tuple[str, str | None, str]]:
    return [
        (event.status, event.actor.username if event.actor else None, event.action)
        for event in record.events.select_related("actor")
    ]


def editor(django_user_model: Any, username: str) -> Any:
    account = django_user_model.objects.create_user(username=username, password="a-long-test-password")
    for name in (EDITORS, PRODUCTION_EDITORS):
        account.groups.add(Group.objects.get_or_create(name=name)[0])
    return account


# --- who did what ----------------------------------------------------------------------------------


def test_the_uploader_is_named_and_the_workers_steps_name_nobody(user: Any) -> None:
    record = upload(user)
    assert record.status == ImportStatus.QUEUED
    assert actors(record) == [("validating", "pm", Action.UPLOADED), ("queued", None, "")]


def test_sending_a_draft_names_the_sender(user: Any, django_user_model: Any) -> None:
    record = upload(user, send=False)
    sender = editor(django_user_model, "bob")
    assert pipeline.send_draft(record, sender, mode="merge", wait_on_approvals=False)
    record.refresh_from_db()
    assert record.sent_by == sender
    assert actors(record) == [
        ("validating", "pm", Action.UPLOADED),
        ("draft", None, ""),
        ("queued", "bob", Action.SENT),
    ]


def test_sending_with_a_header_names_the_sender_and_the_recheck_nobody(user: Any) -> None:
    record = upload(user, b"key\na\nb\n", send=False)
    assert pipeline.send_draft(record, user, mode="merge", wait_on_approvals=False, first_row="header")
    record = pipeline.advance(record.pk)
    assert actors(record)[2:] == [("validating", "pm", Action.SENT), ("queued", None, "")]


@pytest.mark.parametrize(("send", "action"), [(False, Action.DISCARDED), (True, Action.CANCELLED)])
def test_cancelling_or_discarding_names_who_did_it(
    user: Any, django_user_model: Any, send: bool, action: str
) -> None:
    record = upload(user, send=send)
    other = editor(django_user_model, "carol")
    assert record.cancel(other)
    event = record.events.last()
    assert (event.status, event.actor, event.action) == (ImportStatus.CANCELLED, other, action)
    assert event.message == f"{Action(action).label} by carol; nothing was sent."


def test_an_approval_is_recorded_on_the_part_it_approved(user: Any, django_user_model: Any) -> None:
    record = upload(user)
    ImportRecord.objects.filter(pk=record.pk).update(status=ImportStatus.PENDING_APPROVAL, part_count=2)
    ImportPart.objects.filter(record=record).update(ld_import_id="ld-1")
    ImportPart.objects.create(
        record=record, number=2, key_count=1, size_bytes=2, mode="merge", ld_import_id="ld-2"
    )
    reviewer = editor(django_user_model, "dave")
    where = {"project_key": "shop", "environment_key": "live", "segment_key": "vip"}

    assert record_approval(reviewer, ld_import_id="ld-2", **where).pk == record.pk
    event = record.events.last()
    assert (event.actor, event.action, event.part_number, event.status) == (
        reviewer,
        Action.APPROVED,
        2,
        ImportStatus.PENDING_APPROVAL,
    )
    assert event.message == "Approved in LaunchDarkly by dave."
    # Another segment's import of the same ID, or an ID this dashboard never sent: nothing recorded.
    assert record_approval(reviewer, ld_import_id="ld-2", **{**where, "segment_key": "other"}) is None
    assert record_approval(reviewer, ld_import_id="ld-9", **where) is None
    assert record.events.filter(action=Action.APPROVED).count() == 1


def test_the_import_page_names_every_actor(logged_in: Any, user: Any, django_user_model: Any) -> None:
    for name in (EDITORS, PRODUCTION_EDITORS):
        user.groups.add(Group.objects.get_or_create(name=name)[0])
    record = upload(user, send=False)
    bob, carol, dave = (editor(django_user_model, name) for name in ("bob", "carol", "dave"))
    assert pipeline.send_draft(record, bob, mode="merge", wait_on_approvals=True)
    record.refresh_from_db()
    ImportPart.objects.filter(record=record).update(ld_import_id="ld-1")
    record_approval(dave, project_key="shop", environment_key="live", segment_key="vip", ld_import_id="ld-1")
    ImportRecord.objects.filter(pk=record.pk).update(status=ImportStatus.QUEUED)  # as if back in line
    record.refresh_from_db()
    assert record.cancel(carol)

    html = logged_in.get(f"/imports/{record.pk}/").content.decode()
    facts = re.findall(r'<dt>([^<]+)</dt><dd class="actor">([^<]+)</dd>', html)
    assert facts == [
        ("Uploaded by", "pm"),
        ("Sent by", "bob"),
        ("Approved in LaunchDarkly by", "dave"),
        ("Cancelled by", "carol"),
    ]
    timeline = re.findall(r'<small class="actor">— (\w+)</small>', html)
    assert timeline == ["pm", "bob", "dave", "carol"]


def test_records_from_before_actors_show_their_people(
    logged_in: Any, user: Any, django_user_model: Any
) -> None:
    """A record whose events name nobody still shows who sent and who cancelled it (its own columns)."""
    user.groups.add(Group.objects.get_or_create(name=EDITORS)[0])
    bob = editor(django_user_model, "bob")
    record = upload(user)
    ImportRecord.objects.filter(pk=record.pk).update(sent_by=bob, cancelled_by=bob, status="cancelled")
    html = logged_in.get(f"/imports/{record.pk}/").content.decode()
    facts = re.findall(r'<dt>([^<]+)</dt><dd class="actor">([^<]+)</dd>', html)
    assert facts == [("Uploaded by", "pm"), ("Sent by", "bob"), ("Cancelled by", "bob")]


# --- nothing deletes or rewrites the trail -----------------------------------------------------------


@pytest.fixture
def trail(user: Any) -> dict[str, Any]:
    record = upload(user)
    return {
        "record": record,
        "part": record.parts.get(),
        "event": record.events.first(),
        "activity": SegmentActivity.objects.create(
            action="create", user=user, project_key="shop", environment_key="live", segment_key="vip"
        ),
    }


@pytest.mark.parametrize("name", ["record", "part", "event", "activity"])
def test_audit_rows_refuse_deletion_one_by_one_and_in_bulk(trail: dict[str, Any], name: str) -> None:
    row = trail[name]
    model = type(row)
    with pytest.raises(AuditRecordProtected):
        row.delete()
    with pytest.raises(AuditRecordProtected):
        model.objects.filter(pk=row.pk).delete()
    with pytest.raises(AuditRecordProtected):
        model.objects.all().delete()
    assert model.objects.filter(pk=row.pk).exists()


def test_an_event_is_never_edited(trail: dict[str, Any]) -> None:
    event = trail["event"]
    event.message = "rewritten"
    with pytest.raises(AuditRecordProtected, match="never edited"):
        event.save()
    assert ImportEvent.objects.get(pk=event.pk).message.startswith("Received keys.csv")


def test_segment_activity_is_completed_once_and_never_edited(trail: dict[str, Any]) -> None:
    activity = trail["activity"]
    activity.segment_key = "forged"
    with pytest.raises(AuditRecordProtected):
        activity.save()
    with pytest.raises(AuditRecordProtected):
        activity.save(update_fields=["segment_key"])
    activity.segment_key = "vip"
    activity.outcome, activity.finished_at = SegmentActivity.Outcome.SUCCEEDED, timezone.now()
    activity.save(update_fields=["outcome", "finished_at"])  # the one completion
    activity.outcome = SegmentActivity.Outcome.FAILED
    with pytest.raises(AuditRecordProtected):
        activity.save(update_fields=["outcome"])
    assert SegmentActivity.objects.get(pk=activity.pk).outcome == SegmentActivity.Outcome.SUCCEEDED


def test_housekeeping_deletes_files_never_rows(user: Any, settings: Any) -> None:
    settings.IMPORT_RETENTION_HOURS = 0
    record = upload(user)
    ImportRecord.objects.filter(pk=record.pk).update(
        status=ImportStatus.COMPLETE, finished_at=timezone.now() - timedelta(hours=1)
    )
    folder = Path(record.storage_dir)
    assert folder.exists()
    counts = (ImportRecord.objects.count(), ImportPart.objects.count(), ImportEvent.objects.count())
    assert storage.purge_expired_files() == 1
    assert not folder.exists()
    assert (ImportRecord.objects.count(), ImportPart.objects.count(), ImportEvent.objects.count()) == counts


def test_deleting_a_user_with_records_is_refused_by_the_database_too(user: Any) -> None:
    from django.db.models import ProtectedError

    upload(user)
    with pytest.raises(ProtectedError):
        user.delete()


# --- events written before actors were recorded ---------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_migration_names_the_people_of_earlier_events() -> None:
    before, after = [("segments_app", "0005_roles")], [("segments_app", "0006_audit_actors")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        old = executor.loader.project_state(before).apps
        User = old.get_model("auth", "User")
        pm, bob, carol = (User.objects.create(username=name) for name in ("pm", "bob", "carol"))
        Record, Event = (
            old.get_model("segments_app", "ImportRecord"),
            old.get_model("segments_app", "ImportEvent"),
        )
        common = {
            "project_key": "p",
            "environment_key": "e",
            "segment_key": "s",
            "size_bytes": 1,
            "mode": "merge",
        }
        sent = Record.objects.create(user=pm, sent_by=bob, status="queued", **common)
        discarded = Record.objects.create(user=pm, cancelled_by=carol, status="cancelled", **common)
        for record, status, message in [
            (sent, "validating", "Received k.csv (2 bytes) to check (it will be kept as a draft)."),
            (sent, "draft", "Checked: 2 keys."),
            (sent, "queued", "Sent by bob: 2 keys, merge."),
            (discarded, "validating", "Received k.csv (2 bytes) to check and send."),
            (discarded, "cancelled", "Discarded by carol; nothing was sent."),
        ]:
            Event.objects.create(record=record, status=status, message=message)

        executor = MigrationExecutor(connection)
        executor.migrate(after)
        new = executor.loader.project_state(after).apps
        events = new.get_model("segments_app", "ImportEvent").objects.order_by("pk")
        assert [
            (e.actor.username if e.actor else None, e.action) for e in events.select_related("actor")
        ] == [
            ("pm", "uploaded"),
            (None, ""),
            ("bob", "sent"),
            ("pm", "uploaded"),
            ("carol", "discarded"),
        ]
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


# --- no URL of the site changes a final record --------------------------------------------------------


def site_urls(patterns: list[Any], prefix: str = "") -> Iterator[str]:
    """Every non-admin route of the site as a concrete path: ids point at the record under test,
    segment routes at its segment."""
    values = {"pk": "{pk}", "project": "shop", "env": "live", "segment": "vip"}
    for entry in patterns:
        route = prefix + str(entry.pattern)
        if route.startswith("admin/"):
            continue
        if isinstance(entry, URLResolver):
            yield from site_urls(entry.url_patterns, route)
        elif isinstance(entry, URLPattern):
            yield "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values.get(m.group(1), "x1"), route)


ROUTES = sorted(set(site_urls(get_resolver().url_patterns)))


def every_audit_row() -> dict[str, list[dict[str, Any]]]:
    return {
        model.__name__: [model_to_dict(row) for row in model.objects.order_by("pk")]
        for model in (ImportRecord, ImportPart, ImportEvent, SegmentActivity)
    }


def test_the_walk_covers_the_import_pages() -> None:
    assert {"/imports/{pk}/send/", "/imports/{pk}/cancel/", "/segments/shop/live/vip/delete/"} <= set(ROUTES)


@pytest.mark.parametrize("route", ROUTES)
def test_no_url_changes_or_removes_a_final_record(
    client: Any, django_user_model: Any, real_ld: Any, user: Any, route: str
) -> None:
    record = upload(user)
    record.move(ImportStatus.COMPLETE, "Import complete.", source={ImportStatus.QUEUED}, parts_done=1)
    SegmentActivity.objects.create(
        action="create",
        user=user,
        project_key="shop",
        environment_key="live",
        segment_key="vip",
        outcome="succeeded",
    )
    before = every_audit_row()
    root = django_user_model.objects.create_superuser(username="root", password="a-long-root-password")
    client.force_login(root)
    client.raise_request_exception = False
    path = route.format(pk=record.pk)
    forged = {
        "status": "queued",
        "mode": "replace",
        "first_row_is_header": "on",
        "import_id": "x",
        "segment_key": "vip",
        "confirm": "vip",
        "message": "forged",
    }
    for method in ("get", "post", "put", "patch", "delete"):
        response = getattr(client, method)(path, forged if method == "post" else None)
        assert response.status_code != 500, f"{method.upper()} {path}"
    after = every_audit_row()
    # New attempts may be written (a refused delete is recorded); what was there stays as it was.
    for model, rows in before.items():
        assert after[model][: len(rows)] == rows, model
