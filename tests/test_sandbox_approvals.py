"""The sandbox's approvals page: who may approve what, the approver on the record, bad input, and that
the page (and the sandbox API mount) does not exist once a real LaunchDarkly token is configured."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.contrib.auth.models import Group

from sandbox.models import SandboxImport, SandboxSegment
from segments_app.access import EDITORS, PRODUCTION_EDITORS, VIEWERS
from segments_app.models import ImportEvent, ImportPart, ImportRecord, ImportStatus

pytestmark = pytest.mark.django_db

PAGE = "/sandbox/approvals/"


def member_of(django_user_model: Any, username: str, *groups: str) -> Any:
    account = django_user_model.objects.create_user(username=username, password="a-long-test-password")
    for name in groups:
        account.groups.add(Group.objects.get_or_create(name=name)[0])
    return account


@pytest.fixture
def as_role(client: Any, django_user_model: Any) -> Any:
    """Log the test client in as a fresh account of the given roles (or a superuser)."""

    def login(*groups: str, superuser: bool = False) -> Any:
        if superuser:
            account = django_user_model.objects.create_superuser(username="root", password="a-long-root-pw")
        else:
            account = member_of(django_user_model, "-".join(groups) or "nobody", *groups)
        client.force_login(account)
        client.account = account
        return client

    return login


def waiting(environment: str, segment: str = "churn-risk") -> SandboxImport:
    seg = SandboxSegment.objects.get(environment__key=environment, key=segment)
    return SandboxImport.objects.create(
        segment=seg,
        environment=seg.environment,
        mode="merge",
        wait_on_approvals=True,
        filename=f"{environment}.csv",
        key_count=3,
    )


def dashboard_import(user: Any, item: SandboxImport) -> ImportRecord:
    """The dashboard's record of the import it sent, as the worker leaves it once LaunchDarkly says
    it waits for approval."""
    record = ImportRecord.objects.create(
        user=user,
        project_key="demo",
        environment_key=item.environment.key,
        segment_key=item.segment.key,
        original_filename="keys.csv",
        size_bytes=6,
        sha256="0" * 64,
        mode="merge",
        wait_on_approvals=True,
        status=ImportStatus.PENDING_APPROVAL,
        key_count=3,
        part_count=1,
    )
    ImportPart.objects.create(
        record=record,
        number=1,
        key_count=3,
        size_bytes=6,
        mode="merge",
        status=ImportStatus.PENDING_APPROVAL,
        ld_import_id=str(item.pk),
    )
    return record


def approved(item: SandboxImport) -> bool:
    item.refresh_from_db()
    return item.approved_ms is not None


# --- who sees and may approve what -----------------------------------------------------------------


def test_an_editor_sees_and_approves_only_unprotected_environments(as_role: Any) -> None:
    staging, production = waiting("staging"), waiting("production")
    client = as_role(EDITORS)
    html = client.get(PAGE).content.decode()
    assert str(staging.pk) in html
    assert str(production.pk) not in html

    refused = client.post(PAGE, {"import_id": str(production.pk)})
    assert refused.status_code == 403
    assert "Production editors" in refused.content.decode()
    assert not approved(production)

    response = client.post(PAGE, {"import_id": str(staging.pk)}, follow=True)
    assert "Import approved" in response.content.decode()
    assert approved(staging)
    assert staging.approved_by == client.account.username


def test_a_production_editor_sees_and_approves_production(as_role: Any) -> None:
    production = waiting("production")
    client = as_role(EDITORS, PRODUCTION_EDITORS)
    assert str(production.pk) in client.get(PAGE).content.decode()
    response = client.post(PAGE, {"import_id": str(production.pk)})
    assert response.status_code == 302
    assert approved(production)
    assert production.approved_by == "Segment editors-Production editors"


def test_a_superuser_may_approve_anywhere(as_role: Any) -> None:
    production = waiting("production")
    client = as_role(superuser=True)
    assert client.post(PAGE, {"import_id": str(production.pk)}).status_code == 302
    assert approved(production)


def test_a_viewer_sees_nothing_to_approve_and_is_refused(as_role: Any) -> None:
    staging = waiting("staging")
    client = as_role(VIEWERS)
    page = client.get(PAGE)
    assert page.status_code == 200
    assert str(staging.pk) not in page.content.decode()
    assert "No import you may approve is waiting" in page.content.decode()
    assert client.post(PAGE, {"import_id": str(staging.pk)}).status_code == 403
    assert not approved(staging)


def test_the_conftest_user_may_approve_production(logged_in: Any, user: Any) -> None:
    """The shared `user` fixture is a production editor (put in the groups here should it not be yet)."""
    for name in (EDITORS, PRODUCTION_EDITORS):
        user.groups.add(Group.objects.get_or_create(name=name)[0])
    production = waiting("production")
    assert logged_in.post(PAGE, {"import_id": str(production.pk)}).status_code == 302
    assert approved(production)


# --- the approver on the dashboard's record --------------------------------------------------------


def test_approving_names_the_approver_on_the_dashboards_import(as_role: Any, django_user_model: Any) -> None:
    uploader = member_of(django_user_model, "uploader", EDITORS)
    item = waiting("staging")
    record = dashboard_import(uploader, item)
    unrelated = dashboard_import(uploader, waiting("staging", segment="vip-customers"))
    client = as_role(EDITORS)
    client.post(PAGE, {"import_id": str(item.pk)})

    event = record.events.get()
    assert (event.actor, event.action, event.status) == (
        client.account,
        ImportEvent.Action.APPROVED,
        ImportStatus.PENDING_APPROVAL,
    )
    assert event.message == f"Approved in LaunchDarkly by {client.account.username}."
    assert not unrelated.events.exists()
    detail = client.get(f"/imports/{record.pk}/").content.decode()
    assert f'<dt>Approved in LaunchDarkly by</dt><dd class="actor">{client.account.username}</dd>' in detail


def test_an_import_the_dashboard_did_not_send_is_approved_without_a_record(as_role: Any) -> None:
    item = waiting("staging")
    as_role(EDITORS).post(PAGE, {"import_id": str(item.pk)})
    assert approved(item)
    assert not ImportEvent.objects.exists()


def test_approval_and_its_record_are_written_together(
    as_role: Any, django_user_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    item = waiting("staging")
    dashboard_import(member_of(django_user_model, "uploader", EDITORS), item)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the audit write failed")

    monkeypatch.setattr("sandbox.views.record_approval", broken)
    client = as_role(EDITORS)
    client.raise_request_exception = False
    assert client.post(PAGE, {"import_id": str(item.pk)}).status_code == 500
    assert not approved(item)


def test_a_second_approval_changes_nothing(as_role: Any, django_user_model: Any) -> None:
    item = waiting("staging")
    record = dashboard_import(member_of(django_user_model, "uploader", EDITORS), item)
    client = as_role(EDITORS)
    client.post(PAGE, {"import_id": str(item.pk)})
    again = client.post(PAGE, {"import_id": str(item.pk)}, follow=True)
    assert "not waiting for approval any more" in again.content.decode()
    assert record.events.count() == 1


# --- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "import_id",
    ["", "not-a-uuid", "../../etc/passwd", "1' OR '1'='1", "0" * 33, "{" + "a" * 32 + "}x", "\x00"],
)
def test_a_malformed_import_id_is_the_apps_400_page(as_role: Any, import_id: str) -> None:
    staging = waiting("staging")
    response = as_role(EDITORS).post(PAGE, {"import_id": import_id})
    assert response.status_code == 400
    html = response.content.decode()
    assert "<h1>The request could not be understood</h1>" in html
    assert "Traceback" not in html
    assert not approved(staging)


def test_a_missing_import_id_field_is_400(as_role: Any) -> None:
    assert as_role(EDITORS).post(PAGE, {}).status_code == 400


def test_an_unknown_import_is_explained(as_role: Any) -> None:
    response = as_role(EDITORS).post(PAGE, {"import_id": str(uuid.uuid4())}, follow=True)
    assert response.status_code == 200
    assert "There is no such import in the sandbox." in response.content.decode()


def test_other_methods_are_refused(as_role: Any) -> None:
    assert as_role(EDITORS).put(PAGE).status_code == 405


# --- a real LaunchDarkly token: no sandbox ---------------------------------------------------------


def test_the_page_does_not_exist_with_a_real_token(as_role: Any, settings: Any) -> None:
    staging = waiting("staging")
    settings.LD_SANDBOX_ENABLED = False
    client = as_role(superuser=True)
    for response in (client.get(PAGE), client.post(PAGE, {"import_id": str(staging.pk)})):
        assert response.status_code == 404
        assert "Sandbox approvals" not in response.content.decode()
    assert not approved(staging)


@pytest.mark.parametrize("path", ["/sandbox/api/v2/projects", "/sandbox/api/v2/segments/demo/production"])
def test_with_a_real_token_the_sites_sandbox_api_does_not_exist(
    client: Any, settings: Any, path: str
) -> None:
    """The API answers only to the sandbox's token, and to nothing at all once a real one is set."""
    authorised = {"HTTP_AUTHORIZATION": settings.LD_SANDBOX_TOKEN}
    assert client.get("/sandbox/api/v2/projects", **authorised).status_code == 200
    settings.LD_SANDBOX_ENABLED = False
    assert client.get(path, **authorised).status_code == 404
    assert client.get(path).status_code == 404


# --- what the list tells a reviewer ----------------------------------------------------------------


def rows(html: str) -> list[str]:
    """The list's body rows, each as its HTML."""
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [row.split("</tr>", 1)[0] for row in body.split("<tr>")[1:]]


def test_each_row_says_who_asked_the_mode_and_links_the_dashboards_import(
    as_role: Any, django_user_model: Any
) -> None:
    uploader = member_of(django_user_model, "uploader", EDITORS)
    merge = waiting("staging")
    record = dashboard_import(uploader, merge)
    replace = waiting("staging", segment="vip-customers")
    replace.mode = "replace"
    replace.save()
    client = as_role(EDITORS)
    merge_row, replace_row = rows(client.get(PAGE).content.decode())

    assert '<span class="actor">uploader</span>' in merge_row
    assert "Merge — adds the file’s keys; no member is removed" in merge_row
    assert f'<a href="/imports/{record.pk}/">Import #{record.pk}</a>' in merge_row
    assert "Replace" not in merge_row
    # Sent to the sandbox's API directly: no one of this dashboard asked, and no import page follows it.
    assert '<strong class="status status-danger">Replace</strong> — removes every member not in the file' in (
        replace_row
    )
    assert "Not known" in replace_row
    assert "Not from this dashboard" in replace_row
    assert "/imports/" not in replace_row


def test_the_person_who_sent_a_checked_draft_is_the_one_who_asked(
    as_role: Any, django_user_model: Any
) -> None:
    item = waiting("staging")
    record = dashboard_import(member_of(django_user_model, "uploader", EDITORS), item)
    record.sent_by = member_of(django_user_model, "sender", EDITORS)
    record.save()
    (row,) = rows(as_role(EDITORS).get(PAGE).content.decode())
    assert '<span class="actor">sender</span>' in row
    assert "uploader" not in row


def test_a_part_of_a_larger_import_says_which_part(as_role: Any, django_user_model: Any) -> None:
    item = waiting("staging")
    record = dashboard_import(member_of(django_user_model, "uploader", EDITORS), item)
    ImportRecord.objects.filter(pk=record.pk).update(part_count=3, mode="replace")
    ImportPart.objects.filter(record=record).update(number=2)
    (row,) = rows(as_role(EDITORS).get(PAGE).content.decode())
    assert "Merge — adds the file’s keys; no member is removed (part 2 of 3 of a replace)" in row


def test_an_import_of_the_same_id_in_another_segment_is_not_linked(
    as_role: Any, django_user_model: Any
) -> None:
    """The match is the one `record_approval` makes: the LaunchDarkly import ID within its segment."""
    item = waiting("staging")
    record = dashboard_import(member_of(django_user_model, "uploader", EDITORS), item)
    ImportRecord.objects.filter(pk=record.pk).update(segment_key="vip-customers")
    (row,) = rows(as_role(EDITORS).get(PAGE).content.decode())
    assert "Not from this dashboard" in row
    assert f"/imports/{record.pk}/" not in row


def test_names_and_files_are_escaped(as_role: Any, django_user_model: Any) -> None:
    item = waiting("staging")
    item.filename = '<img src=x onerror="alert(1)">.csv'
    item.save()
    dashboard_import(member_of(django_user_model, "<b>mallory</b>", EDITORS), item)
    (row,) = rows(as_role(EDITORS).get(PAGE).content.decode())
    assert "<img" not in row
    assert "<b>" not in row
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;.csv" in row
    assert '<span class="actor">&lt;b&gt;mallory&lt;/b&gt;</span>' in row


def test_the_approval_message_links_to_the_dashboards_import(as_role: Any, django_user_model: Any) -> None:
    item = waiting("staging")
    record = dashboard_import(member_of(django_user_model, "uploader", EDITORS), item)
    response = as_role(EDITORS).post(PAGE, {"import_id": str(item.pk)}, follow=True)
    assert (
        "Import approved. The sandbox runs it now; "
        f'<a href="/imports/{record.pk}/">import #{record.pk}</a> shows its progress.'
    ) in response.content.decode()


def test_the_approval_message_of_an_import_from_elsewhere_says_so(as_role: Any) -> None:
    item = waiting("staging")
    response = as_role(EDITORS).post(PAGE, {"import_id": str(item.pk)}, follow=True)
    page = response.content.decode()
    assert "It was not sent from this dashboard, so no import page here follows it." in page
    assert "/imports/" not in page.split('id="messages"', 1)[1].split("</div>", 1)[0]


def test_the_list_asks_the_database_as_often_for_three_rows_as_for_one(
    as_role: Any, django_user_model: Any
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    uploader = member_of(django_user_model, "uploader", EDITORS)
    dashboard_import(uploader, waiting("staging"))
    client = as_role(EDITORS)
    client.get(PAGE)  # the session and the like warmed up

    def queries() -> int:
        with CaptureQueriesContext(connection) as asked:
            client.get(PAGE)
        return len(asked)

    one = queries()
    dashboard_import(member_of(django_user_model, "second", EDITORS), waiting("production"))
    for name in ("vip-customers", "beta-testers"):
        dashboard_import(uploader, waiting("staging", segment=name))
    assert len(rows(client.get(PAGE).content.decode())) == 3  # production is not the editor's to approve
    assert queries() == one
