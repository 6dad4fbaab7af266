"""Big-segment exports and context-target updates in the built-in sandbox, over real HTTP through the
product's client. Status answers are checked against LaunchDarkly's OpenAPI contract (`contract`)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
import requests

from sandbox.models import SandboxExport, SandboxMember, SandboxSegment
from segments_app.connection import launchdarkly_client
from segments_app.launchdarkly import ExportStatus, InvalidRequest, LaunchDarklyClient, NotFound
from tests.factories import visible, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ld(contract: list[str]) -> Any:
    with launchdarkly_client() as client:
        yield client


def wait_complete(ld: LaunchDarklyClient, segment: str, export_id: str, timeout: float = 10) -> ExportStatus:
    """The export's status once it is complete; the test fails, showing its last status, if it is not
    complete within `timeout` seconds."""
    statuses: list[ExportStatus] = []

    def complete() -> ExportStatus | None:
        statuses.append(ld.get_export("demo", "production", segment, export_id))
        return statuses[-1] if statuses[-1].is_complete else None

    return wait_until(
        f"export {export_id} of {segment} to complete",
        complete,
        timeout=timeout,
        every=0.05,
        seen=lambda: statuses[-1],
    )


def test_export_runs_to_complete_and_its_file_lists_every_member(
    ld: LaunchDarklyClient, contract: list[str], tmp_path: Path
) -> None:
    started = ld.start_export("demo", "production", "vip-customers")
    assert started.export_id
    assert started.location == f"/api/v2/segments/demo/production/vip-customers/exports/{started.export_id}"
    status = wait_complete(ld, "vip-customers", started.export_id)
    assert status.is_complete
    assert status.file_url
    assert status.file_url.startswith("http")
    # Validated against the contract: the POST and at least one GET of the export.
    assert any(call.startswith("POST 200 ") and call.endswith("/exports") for call in contract)
    assert any(f"/exports/{started.export_id}" in call for call in contract if call.startswith("GET 200"))
    # The file link is signed, like a storage URL: it works without the token.
    plain = requests.get(status.file_url, timeout=10)
    assert plain.status_code == 200
    keys = [row[0] for row in csv.reader(io.StringIO(plain.text))]
    assert set(keys) == visible("vip-customers")
    assert len(keys) == 120
    assert status.size_bytes == len(plain.content)


def test_export_file_link_without_its_signature_is_refused(sandbox: str, tmp_path: Path) -> None:
    with launchdarkly_client() as ld:
        started = ld.start_export("demo", "production", "vip-customers")
        assert started.export_id
        status = wait_complete(ld, "vip-customers", started.export_id)
    assert status.file_url
    unsigned = status.file_url.split("?")[0]
    assert requests.get(unsigned, timeout=10).status_code == 401
    assert requests.get(unsigned + "?signature=forged", timeout=10).status_code == 401


def test_export_keys_with_commas_and_line_breaks_survive_as_csv(sandbox: str, tmp_path: Path) -> None:
    seg = SandboxSegment.objects.get(key="churn-risk", environment__key="production")
    odd = ["a,b", 'quote"d', "line\nbreak", "carriage\rreturn", "crlf\r\nkey", "plain"]
    SandboxMember.objects.bulk_create([SandboxMember(segment=seg, context_key=k) for k in odd])
    SandboxSegment.objects.filter(pk=seg.pk).update(included_count=len(odd))
    with launchdarkly_client() as ld:
        started = ld.start_export("demo", "production", "churn-risk")
        assert started.export_id
        status = wait_complete(ld, "churn-risk", started.export_id)
        assert status.file_url
        ld.download_export(status.file_url, tmp_path / "m.csv")
    with (tmp_path / "m.csv").open(newline="", encoding="utf-8") as source:
        assert sorted(row[0] for row in csv.reader(source)) == sorted(odd)


def test_export_stays_pending_for_a_time_that_grows_with_the_members(sandbox: str, settings: Any) -> None:
    settings.SANDBOX_IMPORT_BASE_SECONDS = 0.0
    settings.SANDBOX_IMPORT_SECONDS_PER_1000_KEYS = 1000.0  # 120 members: 120 s
    with launchdarkly_client() as ld:
        started = ld.start_export("demo", "production", "vip-customers")
        assert started.export_id
        status = ld.get_export("demo", "production", "vip-customers", started.export_id)
    assert status.status == "pending"
    assert status.file_url is None
    export = SandboxExport.objects.get(pk=started.export_id)
    assert export.duration_seconds == pytest.approx(120.0)
    assert not export.file_path


def test_export_of_a_standard_segment_or_unknown_export_is_refused(ld: LaunchDarklyClient) -> None:
    with pytest.raises(InvalidRequest):
        ld.start_export("demo", "production", "beta-testers")
    with pytest.raises(NotFound):
        ld.get_export("demo", "production", "vip-customers", "00000000-0000-0000-0000-000000000000")
    with pytest.raises(NotFound):
        ld.get_export("demo", "production", "vip-customers", "not-a-uuid")


def test_context_targets_add_and_remove_members_at_once(ld: LaunchDarklyClient) -> None:
    before = visible("vip-customers")
    ld.update_context_targets(
        "demo", "production", "vip-customers", add=["new-1", "vip-0001"], remove=["vip-0002", "nobody"]
    )
    assert visible("vip-customers") == (before | {"new-1"}) - {"vip-0002"}
    segment = ld.get_segment("demo", "production", "vip-customers")
    assert segment.included_count == len(before)  # one added, one removed
    assert ld.get_context_membership("demo", "production", "vip-customers", "vip-0002")["included"] is False
    # The other environment's copy is untouched.
    assert "vip-0002" in visible("vip-customers", "staging")


def test_context_targets_on_a_standard_segment_or_malformed_are_400(
    ld: LaunchDarklyClient, sandbox: str
) -> None:
    with pytest.raises(InvalidRequest):
        ld.update_context_targets("demo", "production", "beta-testers", remove=["x"])
    from django.conf import settings

    response = requests.post(
        f"{sandbox}/api/v2/segments/demo/production/vip-customers/contexts",
        json={"included": {"remove": "vip-0001"}},
        headers={"Authorization": settings.LD_SANDBOX_TOKEN},
        timeout=10,
    )
    assert response.status_code == 400
    assert "vip-0001" in visible("vip-customers")
