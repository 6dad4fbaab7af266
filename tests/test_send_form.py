"""The upload form never sends a replace or a remove, and a draft's Send form confirms one number on
the preview the page showed, while that preview is recent (issue #14, points 1 and 2)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from segments_app.imports import worker
from segments_app.models import ImportRecord, MemberSnapshot
from tests.factories import SEGMENT_PATH, big_segment, post, preview_on, step, text

pytestmark = pytest.mark.django_db

FILE = b"a\nb\nc\n"
MEMBERS = b"a\nb\nold-1\nold-2\n"  # a replace removes old-1 and old-2; a remove takes a and b out
PAGE_READS = [("GET", "/api/v2/projects"), ("GET", SEGMENT_PATH)]  # the upload page, before anything is sent


def requests_made(real_ld: Any) -> list[tuple[str, str]]:
    return [(call.request.method, call.request.path_url.split("?")[0]) for call in real_ld.mock.calls]


def checked_draft(client: Any, real_ld: Any, mode: str = "replace") -> ImportRecord:
    big_segment(real_ld)
    post(client, FILE, action="check", mode=mode)
    record = step(ImportRecord.objects.get())
    assert record.status == "draft"
    return record


def send(client: Any, record: ImportRecord, **fields: Any) -> Any:
    return client.post(f"/imports/{record.pk}/send/", {"mode": "replace", **fields})


def nothing_sent(record: ImportRecord, real_ld: Any) -> None:
    record.refresh_from_db()
    assert (record.status, record.confirmed_preview_id, record.sent_by_id) == ("draft", None, None)
    assert not record.events.filter(action="sent").exists()
    assert not record.parts.exists()
    assert requests_made(real_ld) == PAGE_READS


# --- (a) the upload form can never send a replace or a remove ------------------------------------


@pytest.mark.parametrize("mode", ["replace", "remove"])
def test_check_and_send_keeps_a_replace_or_remove_as_a_draft(logged_in: Any, real_ld: Any, mode: str) -> None:
    big_segment(real_ld)
    response = post(logged_in, FILE, action="upload", mode=mode)
    record = ImportRecord.objects.get()
    assert response["Location"] == f"/imports/{record.pk}/"
    assert (record.mode, record.send_when_valid) == (mode, False)
    record = step(record)  # the worker checks the file
    assert record.status == "draft"
    assert record.events.last().message == (
        "Checked keys.csv: 3 keys. Kept as a draft: a replace or a remove is sent once you have confirmed "
        "its preview."
    )
    worker.run_once("test-worker")  # a turn of the worker later: a draft waits for a person, nothing goes
    nothing_sent(record, real_ld)
    html = text(logged_in.get(f"/imports/{record.pk}/"))
    assert "Nothing has been sent to LaunchDarkly." in html
    assert requests_made(real_ld) == PAGE_READS


def test_check_and_send_sends_a_merge_at_once(logged_in: Any, real_ld: Any) -> None:
    """The control: the same button does send a merge, so the test above can tell the two apart."""
    big_segment(real_ld)
    real_ld.mock.post(
        real_ld.url(f"{SEGMENT_PATH}/imports"),
        status=204,
        headers={"Location": f"{SEGMENT_PATH}/imports/i-1"},
    )
    post(logged_in, FILE, action="upload", mode="merge")
    record = step(ImportRecord.objects.get())
    assert record.status == "queued"
    step(record)
    assert requests_made(real_ld) == [*PAGE_READS, ("GET", SEGMENT_PATH), ("POST", f"{SEGMENT_PATH}/imports")]


# --- (b) the draft page: one number, asked after the report and the preview ------------------------


def test_the_draft_page_asks_one_number_after_the_report_and_the_preview(
    logged_in: Any, real_ld: Any
) -> None:
    record = checked_draft(logged_in, real_ld)
    shown = preview_on(record, MEMBERS)
    html = text(logged_in.get(f"/imports/{record.pk}/"))
    send_form = html[html.index('<section id="draft-send"') :]
    assert send_form.count('name="confirm_removed"') == 1
    assert len(re.findall(r'<input type="text"', send_form)) == 1  # the number is the only thing typed
    assert "confirm_key" not in html
    assert f'<input type="hidden" name="preview" value="{shown.pk}"' in send_form
    assert "Replace: type 2 to confirm that 2 members will be removed." in send_form
    assert "Remove: type 3 to confirm that 3 members will leave the segment." not in send_form  # a, b, c: 2
    assert "Remove: type 2 to confirm that 2 members will leave the segment." in send_form
    report = html.index('<section class="report"')
    impact = html.index('<section id="import-preview"')
    number = html.index('name="confirm_removed"')
    button = html.index(">Send to LaunchDarkly</button>")
    assert report < impact < number < button


# --- (c) a Send confirmed on another preview than the one now shown ------------------------------


def test_a_send_on_a_preview_no_longer_shown_is_refused(logged_in: Any, real_ld: Any) -> None:
    record = checked_draft(logged_in, real_ld)
    old = preview_on(record, MEMBERS)  # the page showed this one…
    new = preview_on(record, b"a\nold-1\nold-2\nold-3\n")  # …then the preview was made again
    assert new.pk != old.pk
    # The number is right for the new preview (3 members not listed), but the page showed the old one.
    response = send(logged_in, record, preview=str(old.pk), confirm_removed="3")
    assert response.status_code == 400
    page = text(response)
    assert (
        "The preview changed since this page was shown: check the new numbers below and type the new "
        "number to send." in page
    )
    assert f'<input type="hidden" name="preview" value="{new.pk}"' in page  # the page now shows the new one
    assert "Replace: type 3 to confirm that 3 members will be removed." in page
    nothing_sent(record, real_ld)
    # Confirmed on the preview shown, it goes.
    response = send(logged_in, record, preview=str(new.pk), confirm_removed="3")
    assert response.status_code == 302, text(response)
    record.refresh_from_db()
    assert (record.status, record.confirmed_preview_id) == ("queued", new.pk)


# --- (d) a preview older than IMPORT_PREVIEW_MAX_AGE_MINUTES -------------------------------------


def test_an_old_preview_is_made_again_before_it_is_confirmed(
    logged_in: Any, real_ld: Any, settings: Any
) -> None:
    settings.IMPORT_PREVIEW_MAX_AGE_MINUTES = 30
    record = checked_draft(logged_in, real_ld)
    shown = preview_on(record, MEMBERS)
    MemberSnapshot.objects.filter(pk=shown.pk).update(finished_at=timezone.now() - timedelta(minutes=31))
    response = send(logged_in, record, preview=str(shown.pk), confirm_removed="2")
    assert response.status_code == 400
    assert (
        "This preview was made more than 30 minutes ago. It is being made again on the members as they "
        "are now: check it and send again once it shows." in text(response)
    )
    nothing_sent(record, real_ld)
    previews = MemberSnapshot.objects.filter(import_record=record, purpose=MemberSnapshot.Purpose.PREVIEW)
    again = previews.exclude(pk=shown.pk).get()
    assert (again.status, again.segment_key, again.requested_by) == ("requested", "vip", record.user)
    assert 'name="confirm_removed"' not in text(response)  # no number until the new preview shows
    assert not MemberSnapshot.objects.filter(
        import_record=record, purpose=MemberSnapshot.Purpose.UNDO
    ).exists()


def test_a_preview_just_within_the_age_limit_may_be_confirmed(
    logged_in: Any, real_ld: Any, settings: Any
) -> None:
    """The control for the test above: the same send, on a preview 29 minutes old, goes."""
    settings.IMPORT_PREVIEW_MAX_AGE_MINUTES = 30
    record = checked_draft(logged_in, real_ld)
    shown = preview_on(record, MEMBERS)
    MemberSnapshot.objects.filter(pk=shown.pk).update(finished_at=timezone.now() - timedelta(minutes=29))
    response = send(logged_in, record, preview=str(shown.pk), confirm_removed="2")
    assert response.status_code == 302, text(response)
    record.refresh_from_db()
    assert (record.status, record.mode, record.confirmed_preview_id) == ("queued", "replace", shown.pk)
    assert MemberSnapshot.objects.filter(import_record=record).count() == 1
