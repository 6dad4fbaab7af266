"""Audit records are read-only in the admin."""

from __future__ import annotations

from typing import Any

import pytest

from segments_app.models import ImportRecord, SegmentActivity

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client: Any, django_user_model: Any) -> Any:
    admin = django_user_model.objects.create_superuser(username="root", password="a-long-admin-password")
    client.force_login(admin)
    return client


def test_import_records_are_read_only(admin_client: Any, user: Any) -> None:
    record = ImportRecord.objects.create(
        user=user,
        project_key="p",
        environment_key="e",
        segment_key="s",
        original_filename="k.csv",
        size_bytes=1,
        sha256="0" * 64,
        mode="merge",
    )
    assert admin_client.get("/admin/segments_app/importrecord/").status_code == 200
    page = admin_client.get(f"/admin/segments_app/importrecord/{record.pk}/change/")
    assert page.status_code == 200
    assert b'name="original_filename"' not in page.content
    assert admin_client.get("/admin/segments_app/importrecord/add/").status_code == 403
    response = admin_client.post(f"/admin/segments_app/importrecord/{record.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert ImportRecord.objects.filter(pk=record.pk).exists()


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
