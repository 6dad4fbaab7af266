"""The admin: audit records are read-only for everyone, superusers included; accounts named in the
audit trail are deactivated, never deleted."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.forms.models import model_to_dict
from django.test import Client

from segments_app.access import EDITORS
from segments_app.admin import KEEP_ACCOUNT_MESSAGE
from segments_app.models import ImportEvent, ImportPart, ImportRecord, ImportStatus, SegmentActivity

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client: Any, django_user_model: Any) -> Any:
    admin = django_user_model.objects.create_superuser(username="root", password="a-long-admin-password")
    client.force_login(admin)
    return client


def final_record(user: Any) -> ImportRecord:
    record = ImportRecord.objects.create(
        user=user,
        project_key="p",
        environment_key="e",
        segment_key="s",
        original_filename="k.csv",
        size_bytes=1,
        sha256="0" * 64,
        mode="merge",
        status=ImportStatus.COMPLETE,
        key_count=1,
        part_count=1,
    )
    ImportPart.objects.create(record=record, number=1, key_count=1, size_bytes=1, mode="merge")
    ImportEvent.objects.create(
        record=record, status=ImportStatus.VALIDATING, message="Received k.csv", actor=user, action="uploaded"
    )
    return record


@pytest.fixture
def audit_rows(user: Any) -> dict[str, Any]:
    """One row of each audit model, by its admin URL name."""
    record = final_record(user)
    return {
        "importrecord": record,
        "importpart": record.parts.get(),
        "importevent": record.events.get(),
        "segmentactivity": SegmentActivity.objects.create(
            action="create", user=user, project_key="p", environment_key="e", segment_key="s"
        ),
    }


def snapshot(rows: dict[str, Any]) -> dict[str, Any]:
    return {name: model_to_dict(type(row).objects.get(pk=row.pk)) for name, row in rows.items()}


def test_import_records_are_shown_read_only(admin_client: Any, audit_rows: dict[str, Any]) -> None:
    record = audit_rows["importrecord"]
    assert admin_client.get("/admin/segments_app/importrecord/").status_code == 200
    page = admin_client.get(f"/admin/segments_app/importrecord/{record.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="original_filename"' not in html
    assert "Received k.csv" in html  # the timeline is there to read
    assert 'name="_save"' not in html


@pytest.mark.parametrize("model", ["importrecord", "importpart", "importevent", "segmentactivity"])
def test_no_admin_url_adds_changes_or_deletes_an_audit_row(
    admin_client: Any, audit_rows: dict[str, Any], model: str
) -> None:
    before = snapshot(audit_rows)
    pk = audit_rows[model].pk
    base = f"/admin/segments_app/{model}"
    # A model without its own admin page (parts, events) answers 404; the others refuse with 403.
    refused = {403, 404}
    assert admin_client.get(f"{base}/add/").status_code in refused
    assert (
        admin_client.post(f"{base}/add/", {"segment_key": "new", "message": "forged"}).status_code in refused
    )
    assert (
        admin_client.post(f"{base}/{pk}/change/", {"segment_key": "x", "message": "x"}).status_code in refused
    )
    assert admin_client.get(f"{base}/{pk}/delete/").status_code in refused
    assert admin_client.post(f"{base}/{pk}/delete/", {"post": "yes"}).status_code in refused
    bulk = admin_client.post(
        f"{base}/", {"action": "delete_selected", "_selected_action": [pk], "post": "yes"}
    )
    assert bulk.status_code in {200, 302, *refused}
    assert snapshot(audit_rows) == before
    assert (ImportRecord.objects.count(), ImportEvent.objects.count(), SegmentActivity.objects.count()) == (
        1,
        1,
        1,
    )


@pytest.mark.parametrize("model", ["importrecord", "segmentactivity"])
def test_changelists_offer_no_delete_action(
    admin_client: Any, audit_rows: dict[str, Any], model: str
) -> None:
    page = admin_client.get(f"/admin/segments_app/{model}/")
    assert page.context["cl"].result_count == 1
    html = page.content.decode()
    assert "delete_selected" not in html
    assert 'name="action"' not in html


def test_segment_activity_is_read_only(admin_client: Any, user: Any) -> None:
    activity = SegmentActivity.objects.create(
        action="create", user=user, project_key="p", environment_key="e", segment_key="s"
    )
    response = admin_client.post(
        f"/admin/segments_app/segmentactivity/{activity.pk}/change/", {"segment_key": "x"}
    )
    assert response.status_code == 403
    activity.refresh_from_db()
    assert activity.segment_key == "s"


# --- accounts -----------------------------------------------------------------------------------------


@pytest.fixture
def unrecorded(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user(username="temp", password="a-long-test-password")


@pytest.mark.parametrize("named_as", ["uploader", "sender", "canceller", "event actor", "activity user"])
def test_an_account_with_records_cannot_be_deleted(
    admin_client: Any, django_user_model: Any, user: Any, unrecorded: Any, named_as: str
) -> None:
    record = final_record(user)
    account = unrecorded
    if named_as == "uploader":
        ImportRecord.objects.filter(pk=record.pk).update(user=account)
    elif named_as == "sender":
        ImportRecord.objects.filter(pk=record.pk).update(sent_by=account)
    elif named_as == "canceller":
        ImportRecord.objects.filter(pk=record.pk).update(cancelled_by=account)
    elif named_as == "event actor":
        ImportEvent.objects.create(record=record, status="complete", message="x", actor=account)
    else:
        SegmentActivity.objects.create(
            action="delete", user=account, project_key="p", environment_key="e", segment_key="s"
        )
    page = admin_client.get(f"/admin/auth/user/{account.pk}/delete/", follow=True)
    assert KEEP_ACCOUNT_MESSAGE in page.content.decode()
    response = admin_client.post(f"/admin/auth/user/{account.pk}/delete/", {"post": "yes"}, follow=True)
    assert response.redirect_chain[-1][0] == f"/admin/auth/user/{account.pk}/change/"
    assert KEEP_ACCOUNT_MESSAGE in response.content.decode()
    assert django_user_model.objects.filter(pk=account.pk).exists()


def test_bulk_delete_is_refused_as_a_whole_when_any_account_has_records(
    admin_client: Any, django_user_model: Any, user: Any, unrecorded: Any
) -> None:
    final_record(user)
    response = admin_client.post(
        "/admin/auth/user/",
        {"action": "delete_selected", "_selected_action": [user.pk, unrecorded.pk], "post": "yes"},
        follow=True,
    )
    html = response.content.decode()
    assert KEEP_ACCOUNT_MESSAGE in html
    assert f"{KEEP_ACCOUNT_MESSAGE}: pm. Nothing was deleted." in html
    assert django_user_model.objects.filter(pk__in=[user.pk, unrecorded.pk]).count() == 2


def test_accounts_without_records_can_still_be_deleted(
    admin_client: Any, django_user_model: Any, unrecorded: Any
) -> None:
    assert admin_client.get(f"/admin/auth/user/{unrecorded.pk}/delete/").status_code == 200
    admin_client.post(f"/admin/auth/user/{unrecorded.pk}/delete/", {"post": "yes"})
    assert not django_user_model.objects.filter(pk=unrecorded.pk).exists()
    other = django_user_model.objects.create_user(username="temp2", password="a-long-test-password")
    admin_client.post(
        "/admin/auth/user/", {"action": "delete_selected", "_selected_action": [other.pk], "post": "yes"}
    )
    assert not django_user_model.objects.filter(pk=other.pk).exists()


def test_a_deactivated_account_keeps_its_records_and_cannot_log_in(
    admin_client: Any, django_user_model: Any, user: Any
) -> None:
    final_record(user)
    user.groups.add(Group.objects.get_or_create(name=EDITORS)[0])
    form = admin_client.get(f"/admin/auth/user/{user.pk}/change/").context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None and name != "password"}
    data.update(
        groups=[g.pk for g in user.groups.all()],
        user_permissions=[],
        date_joined_0=user.date_joined.strftime("%Y-%m-%d"),
        date_joined_1=user.date_joined.strftime("%H:%M:%S"),
        is_active="",
    )
    data.pop("last_login", None)
    data.pop("date_joined", None)
    response = admin_client.post(f"/admin/auth/user/{user.pk}/change/", data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    user.refresh_from_db()
    assert user.is_active is False
    assert ImportRecord.objects.filter(user=user).exists()

    browser = Client()
    page = browser.post("/accounts/login/", {"username": "pm", "password": "a-long-test-password"})
    assert "_auth_user_id" not in browser.session
    assert page.status_code in (200, 403)
    assert browser.get("/").status_code == 302  # still sent to the login page


def test_an_account_with_records_keeps_its_name(admin_client: Any, django_user_model: Any, user: Any) -> None:
    """Pages name actors by the account's current user name: renaming it would rewrite the trail."""
    fresh = django_user_model.objects.create_user("newcomer")
    editable = admin_client.get(f"/admin/auth/user/{fresh.pk}/change/").context["adminform"].form.fields
    assert "username" in editable
    final_record(user)
    fixed = admin_client.get(f"/admin/auth/user/{user.pk}/change/").context["adminform"].form.fields
    assert "username" not in fixed
    page = admin_client.get(f"/admin/auth/user/{user.pk}/change/").content.decode()
    assert ">pm<" in page.replace("\n", "").replace(" ", "")
