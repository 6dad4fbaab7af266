"""An import's steps (segments_app/import_steps.py): what a person following an import reads, for each
way an import goes, and the page that shows them with the links to what to do next.

The presenter reads only the record, its parts and its timeline, so most tests here build them in
memory with exact times: each asserts every step's label, state and words, not just that one appears."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.template import Context, Template
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from segments_app import import_steps
from segments_app.imports import undo
from segments_app.models import ImportEvent, ImportPart, ImportRecord, ImportStatus, MemberSnapshot
from tests.factories import make_record, text

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def make(**fields: Any) -> ImportRecord:
    """An import in memory (the presenter asks the database nothing)."""
    values: dict[str, Any] = {
        "pk": 41,
        "project_key": "shop",
        "environment_key": "live",
        "segment_key": "vip",
        "original_filename": "keys.csv",
        "size_bytes": 10,
        "sha256": "0" * 64,
        "mode": "merge",
        "status": "queued",
        "key_count": 3,
        "part_count": 1,
        "created_at": T0,
        "updated_at": T0,
    }
    values.update(fields)
    return ImportRecord(**values)


def event(
    seconds: float, status: str, message: str = "", part: int | None = None, **fields: Any
) -> ImportEvent:
    return ImportEvent(at=at(seconds), status=status, message=message or status, part_number=part, **fields)


def steps(progress: import_steps.Progress) -> list[tuple[str, str, str]]:
    """Each step as (label with its part or batch, state, words)."""
    return [
        (f"{s.label}: {s.detail}" if s.detail else s.label, s.state, s.state_words) for s in progress.steps
    ]


def times(progress: import_steps.Progress) -> list[datetime | None]:
    return [s.at for s in progress.steps]


UPLOADED = event(0, "validating", "Received keys.csv (10 bytes).", action="uploaded")
CHECKED = event(2, "queued", "Checked keys.csv: 3 keys, merge.")


def sent_part(number: int, start: float) -> list[ImportEvent]:
    """A part sent, accepted, imported and finished by LaunchDarkly, one second apart from `start`."""
    return [
        event(start, "submitting", f"Sending part {number}.", number),
        event(start + 1, "preparing", f"LaunchDarkly accepted part {number}.", number),
        event(start + 2, "in_progress", f"LaunchDarkly: part {number} is importing.", number),
        event(start + 3, "complete", f"LaunchDarkly finished part {number}.", number),
    ]


# --- merge, one part ------------------------------------------------------------------------------------


def test_a_merge_of_one_part_that_completed() -> None:
    events = [
        UPLOADED,
        CHECKED,
        event(3, "submitting", "Sending the file to LaunchDarkly.", 1),
        event(4, "preparing", "LaunchDarkly accepted the file (import ID imp-1).", 1),
        event(10, "in_progress", "LaunchDarkly: the file is importing.", 1),
        event(20, "complete", "Import complete: 3 keys."),
    ]
    record = make(status="complete", parts_done=1, finished_at=at(20))
    progress = import_steps.present(record, events, now=at(500))
    assert steps(progress) == [
        ("File checked", "done", "Done"),
        ("Sent to LaunchDarkly", "done", "Done"),
        ("LaunchDarkly preparing", "done", "Done"),
        ("Importing", "done", "Done"),
        ("Complete", "done", "Done"),
    ]
    assert times(progress) == [at(2), at(4), at(10), at(20), at(20)]
    assert progress.current is None
    assert progress.finished
    assert progress.elapsed == timedelta(seconds=20)  # to the end, not to now
    assert progress.position == ""


def test_a_merge_being_sent_has_the_current_step_and_its_elapsed_time() -> None:
    events = [UPLOADED, CHECKED, event(3, "submitting", "Sending the file to LaunchDarkly.", 1)]
    progress = import_steps.present(make(status="submitting"), events, now=at(33))
    assert steps(progress) == [
        ("File checked", "done", "Done"),
        ("Sent to LaunchDarkly", "current", "In progress"),
        ("LaunchDarkly preparing", "todo", "To do"),
        ("Importing", "todo", "To do"),
        ("Complete", "todo", "To do"),
    ]
    current = progress.current
    assert current is not None
    assert current.key == import_steps.SENT
    assert current.at == at(2)  # its turn came when the file was checked
    assert current.elapsed == timedelta(seconds=31)
    assert progress.elapsed == timedelta(seconds=33)  # the whole import, since it was uploaded
    assert not progress.finished
    assert progress.next_steps == []


def test_a_draft_sent_later_counts_from_when_it_was_sent() -> None:
    events = [
        UPLOADED,
        event(2, "draft", "Checked keys.csv: 3 keys. Kept as a draft."),
        event(3600, "queued", "Sent by pm: 3 keys, merge.", action="sent"),
    ]
    progress = import_steps.present(make(status="queued"), events, now=at(3610))
    assert progress.started_at == at(3600)
    assert progress.elapsed == timedelta(seconds=10)
    assert progress.current is not None
    assert progress.current.label == "Sent to LaunchDarkly"
    assert progress.current.elapsed == timedelta(seconds=10)  # not the hour the draft waited


def test_waiting_behind_another_import_says_so() -> None:
    record = make(status="queued", waiting_behind_id=40)
    events = [UPLOADED, CHECKED, event(3, "queued", "Waiting for import #40 in this environment to finish.")]
    progress = import_steps.present(record, events, now=at(10))
    assert progress.current is not None
    assert progress.current.label == "Sent to LaunchDarkly"
    assert progress.current.note == (
        "Waiting for import #40 to finish: LaunchDarkly runs one import per environment at a time."
    )


# --- several parts ----------------------------------------------------------------------------------------


def test_a_three_part_import_mid_way_says_part_2_of_3() -> None:
    events = [
        UPLOADED,
        event(2, "queued", "Checked keys.csv: 3,000,000 keys in 3 parts, merge."),
        *sent_part(1, 3),  # its "complete" (6 s) leaves the record queued for part 2
        event(7, "submitting", "Sending part 2 of 3 to LaunchDarkly.", 2),
        event(8, "preparing", "LaunchDarkly accepted part 2 of 3.", 2),
    ]
    record = make(status="preparing", part_count=3, parts_done=1, key_count=3_000_000)
    progress = import_steps.present(record, events, now=at(20))
    assert steps(progress) == [
        ("File checked", "done", "Done"),
        ("Sent to LaunchDarkly: part 2 of 3", "done", "Done"),
        ("LaunchDarkly preparing: part 2 of 3", "current", "In progress"),
        ("Importing: part 2 of 3", "todo", "To do"),
        ("Complete", "todo", "To do"),
    ]
    assert progress.position == "part 2 of 3"
    assert times(progress)[:3] == [at(2), at(8), at(8)]  # part 2's own times, not part 1's
    assert progress.current is not None
    assert progress.current.elapsed == timedelta(seconds=12)


def test_between_parts_the_next_part_waits_from_when_the_last_finished() -> None:
    events = [UPLOADED, CHECKED, *sent_part(1, 3)]
    record = make(status="queued", part_count=3, parts_done=1)
    progress = import_steps.present(record, events, now=at(16))
    assert steps(progress)[1] == ("Sent to LaunchDarkly: part 2 of 3", "current", "In progress")
    assert progress.current is not None
    assert progress.current.at == at(6)
    assert progress.current.elapsed == timedelta(seconds=10)


def test_a_three_part_import_that_completed_did_all_three() -> None:
    events = [UPLOADED, CHECKED, *sent_part(1, 3), *sent_part(2, 7), *sent_part(3, 11)]
    events[-1] = event(14, "complete", "Import complete: 3,000,000 keys.", 3)
    record = make(status="complete", part_count=3, parts_done=3, finished_at=at(14))
    progress = import_steps.present(record, events, now=at(100))
    assert steps(progress) == [
        ("File checked", "done", "Done"),
        ("Sent to LaunchDarkly: all 3 parts", "done", "Done"),
        ("LaunchDarkly preparing: all 3 parts", "done", "Done"),
        ("Importing: all 3 parts", "done", "Done"),
        ("Complete", "done", "Done"),
    ]
    assert progress.position == "all 3 parts"


# --- the undo copy ----------------------------------------------------------------------------------------


def test_a_replace_with_its_undo_copy_saved(settings: Any) -> None:
    settings.UNDO_SNAPSHOTS_ENABLED = True
    events = [
        UPLOADED,
        event(2, "queued", "Sent by pm: 3 keys, replace.", action="sent"),
        event(3, "queued", undo.SAVING),
        event(9, "queued", undo.SAVED.format(count="1,204")),
        event(10, "submitting", "Sending the file to LaunchDarkly.", 1),
        event(11, "preparing", "LaunchDarkly accepted the file.", 1),
    ]
    record = make(mode="replace", status="preparing", undo_snapshot_id=5)
    progress = import_steps.present(record, events, now=at(15))
    assert steps(progress) == [
        ("File checked", "done", "Done"),
        ("Undo copy saved", "done", "Done"),
        ("Sent to LaunchDarkly", "done", "Done"),
        ("LaunchDarkly preparing", "current", "In progress"),
        ("Importing", "todo", "To do"),
        ("Complete", "todo", "To do"),
    ]
    assert times(progress)[1] == at(9)


def test_while_the_undo_copy_is_saved_it_is_the_current_step(settings: Any) -> None:
    settings.UNDO_SNAPSHOTS_ENABLED = True
    events = [UPLOADED, CHECKED, event(3, "queued", undo.SAVING)]
    record = make(mode="replace", status="queued", undo_snapshot_id=5)
    progress = import_steps.present(record, events, now=at(12))
    assert steps(progress)[:3] == [
        ("File checked", "done", "Done"),
        ("Undo copy saved", "current", "In progress"),
        ("Sent to LaunchDarkly", "todo", "To do"),
    ]
    assert progress.current is not None
    assert progress.current.note == "Saving the segment's members first, so that this import can be undone."
    assert progress.current.elapsed == timedelta(seconds=10)


def test_an_undo_copy_that_could_not_be_saved_is_skipped(settings: Any) -> None:
    """A merge is sent without its copy when the export fails (a replace or remove never is)."""
    settings.UNDO_SNAPSHOTS_ENABLED = True
    settings.UNDO_SNAPSHOT_ALL_IMPORTS = True
    events = [
        UPLOADED,
        CHECKED,
        event(3, "queued", undo.SAVING),
        event(5, "queued", f"{undo.NOT_SAVED} (export refused). It is sent anyway."),
        event(6, "submitting", "Sending the file to LaunchDarkly.", 1),
    ]
    record = make(status="submitting", undo_snapshot_id=5)
    progress = import_steps.present(record, events, now=at(7))
    assert steps(progress)[1:3] == [
        ("Undo copy saved", "skipped", "Skipped"),
        ("Sent to LaunchDarkly", "current", "In progress"),
    ]
    assert progress.steps[1].note == "The members could not be saved, so this import cannot be undone here."


def test_a_merge_takes_no_undo_copy_unless_one_was_made(settings: Any) -> None:
    settings.UNDO_SNAPSHOTS_ENABLED = True
    settings.UNDO_SNAPSHOT_ALL_IMPORTS = False
    labels = [s.label for s in import_steps.present(make(), [UPLOADED, CHECKED], now=at(3)).steps]
    assert "Undo copy saved" not in labels
    with_copy = import_steps.present(make(undo_snapshot_id=3), [UPLOADED, CHECKED], now=at(3))
    assert "Undo copy saved" in [s.label for s in with_copy.steps]


# --- approval ---------------------------------------------------------------------------------------------


def test_pending_approval_shows_waiting_for_approval() -> None:
    events = [
        UPLOADED,
        CHECKED,
        event(3, "submitting", "Sending the file to LaunchDarkly.", 1),
        event(4, "preparing", "LaunchDarkly accepted the file.", 1),
        event(5, "pending_approval", "LaunchDarkly: the file is waiting for approval.", 1),
    ]
    record = make(status="pending_approval", wait_on_approvals=True)
    progress = import_steps.present(record, events, now=at(65))
    assert steps(progress) == [
        ("File checked", "done", "Done"),
        ("Sent to LaunchDarkly", "done", "Done"),
        ("Waiting for approval", "current", "In progress"),
        ("Importing", "todo", "To do"),
        ("Complete", "todo", "To do"),
    ]
    assert progress.current is not None
    assert progress.current.note == "A reviewer must approve it in LaunchDarkly."
    assert progress.current.elapsed == timedelta(seconds=61)


def test_an_approved_import_keeps_saying_it_waited_for_approval() -> None:
    events = [
        UPLOADED,
        CHECKED,
        event(3, "submitting", "Sending the file.", 1),
        event(4, "pending_approval", "LaunchDarkly: the file is waiting for approval.", 1),
        event(50, "ready", "Approved.", 1),
    ]
    progress = import_steps.present(make(status="ready"), events, now=at(51))
    assert steps(progress)[2:4] == [
        ("Waiting for approval", "done", "Done"),
        ("Importing", "current", "In progress"),
    ]
    assert times(progress)[1:3] == [at(4), at(50)]


# --- imports that did not complete ------------------------------------------------------------------------


NOT_REACHED = "Not reached"


def test_failed_at_send() -> None:
    message = "LaunchDarkly refused the file: Invalid file. Check its format."
    events = [
        UPLOADED,
        CHECKED,
        event(3, "submitting", "Sending the file to LaunchDarkly.", 1),
        event(4, "failed", message, 1),
    ]
    record = make(status="failed", error_message=message, finished_at=at(4))
    progress = import_steps.present(record, events, now=at(100))
    assert steps(progress) == [
        ("File checked", "done", "Done"),
        ("Sent to LaunchDarkly", "failed", "Failed"),
        ("LaunchDarkly preparing", "todo", NOT_REACHED),
        ("Importing", "todo", NOT_REACHED),
        ("Complete", "todo", NOT_REACHED),
    ]
    failed = progress.steps[1]
    assert failed.note == "LaunchDarkly refused the file: Invalid file."  # its first sentence
    assert failed.at == at(4)
    assert progress.current is None
    assert progress.elapsed == timedelta(seconds=4)


def test_failed_at_part_2_of_3_says_which_part() -> None:
    message = "LaunchDarkly refused part 2 of 3: Invalid file."
    events = [
        UPLOADED,
        CHECKED,
        *sent_part(1, 3),
        event(7, "submitting", "Sending part 2 of 3.", 2),
        event(8, "failed", message, 2),
    ]
    record = make(status="failed", part_count=3, parts_done=1, error_message=message, finished_at=at(8))
    progress = import_steps.present(record, events, now=at(9))
    assert steps(progress)[1:3] == [
        ("Sent to LaunchDarkly: part 2 of 3", "failed", "Failed"),
        ("LaunchDarkly preparing", "todo", NOT_REACHED),
    ]
    assert progress.position == "part 2 of 3"


def test_unknown_while_launchdarkly_prepared_it() -> None:
    message = "LaunchDarkly no longer knows import imp-1."
    events = [
        UPLOADED,
        CHECKED,
        event(3, "submitting", "Sending the file.", 1),
        event(4, "preparing", "LaunchDarkly accepted the file.", 1),
        event(9, "unknown", message, 1),
    ]
    record = make(status="unknown", error_message=message, finished_at=at(9))
    progress = import_steps.present(record, events, now=at(10))
    assert steps(progress) == [
        ("File checked", "done", "Done"),
        ("Sent to LaunchDarkly", "done", "Done"),
        ("LaunchDarkly preparing", "failed", "Outcome unknown"),
        ("Importing", "todo", NOT_REACHED),
        ("Complete", "todo", NOT_REACHED),
    ]
    assert progress.steps[2].note == message


def test_unknown_when_the_upload_was_interrupted() -> None:
    events = [UPLOADED, CHECKED, event(3, "submitting", "Sending the file.", 1), event(40, "unknown", "", 1)]
    record = make(status="unknown", finished_at=at(40))  # no message: the reason says what it means
    progress = import_steps.present(record, events, now=at(41))
    assert steps(progress)[1] == ("Sent to LaunchDarkly", "failed", "Outcome unknown")
    assert progress.steps[1].note == import_steps.ENDED_REASONS["unknown"]


def test_stopped_by_launchdarkly_while_importing() -> None:
    events = [
        UPLOADED,
        CHECKED,
        *sent_part(1, 3)[:3],
        event(9, "stopped", "LaunchDarkly stopped the file.", 1),
    ]
    record = make(status="stopped", error_message="LaunchDarkly stopped the file; it did not finish.")
    progress = import_steps.present(record, events, now=at(10))
    assert steps(progress)[3:] == [
        ("Importing", "failed", "Stopped by LaunchDarkly"),
        ("Complete", "todo", NOT_REACHED),
    ]
    assert progress.steps[3].note == "LaunchDarkly stopped the file; it did not finish."


def test_failed_while_checking_the_file() -> None:
    message = "The file could not be checked on the server; nothing was sent."
    events = [UPLOADED, event(1, "failed", message)]
    record = make(status="failed", error_message=message, finished_at=at(1), part_count=0)
    progress = import_steps.present(record, events, now=at(2))
    assert steps(progress) == [
        ("File checked", "failed", "Failed"),
        ("Sent to LaunchDarkly", "todo", NOT_REACHED),
        ("LaunchDarkly preparing", "todo", NOT_REACHED),
        ("Importing", "todo", NOT_REACHED),
        ("Complete", "todo", NOT_REACHED),
    ]


# --- remove ---------------------------------------------------------------------------------------------


def removal_events(batches_done: int) -> list[ImportEvent]:
    """A remove always saves the members first (undo.wants_undo_snapshot), then removes in batches."""
    return [
        UPLOADED,
        event(2, "queued", "Sent by pm: 5,000 keys, remove.", action="sent"),
        event(2.2, "queued", undo.SAVING),
        event(2.5, "queued", undo.SAVED.format(count="9,000")),
        event(3, "submitting", "Removing 5,000 listed keys from the segment in 5 batches of up to 1,000."),
        *(
            event(3 + n, "submitting", f"Removed batch {n} of 5: 1,000 keys.", n)
            for n in range(1, batches_done + 1)
        ),
    ]


def test_a_remove_sends_batches_instead_of_a_file() -> None:
    record = make(mode="remove", status="submitting", part_count=5, parts_done=2, undo_snapshot_id=5)
    progress = import_steps.present(record, removal_events(2), now=at(15))
    assert steps(progress) == [
        ("File checked", "done", "Done"),
        ("Undo copy saved", "done", "Done"),
        ("Removing keys: batch 3 of 5", "current", "In progress"),
        ("Complete", "todo", "To do"),
    ]
    assert progress.position == "batch 3 of 5"
    assert progress.current is not None
    assert progress.current.elapsed == timedelta(seconds=12.5)  # since the members were saved


def test_a_remove_waiting_for_its_turn_has_no_batches_yet() -> None:
    # Before its turn the part count is the checked file's, not its batches'.
    record = make(mode="remove", status="queued", part_count=2, undo_snapshot_id=5)
    progress = import_steps.present(record, removal_events(0)[:4], now=at(5))
    assert steps(progress) == [
        ("File checked", "done", "Done"),
        ("Undo copy saved", "done", "Done"),
        ("Removing keys", "current", "In progress"),
        ("Complete", "todo", "To do"),
    ]
    assert progress.position == ""


def test_a_remove_that_completed() -> None:
    events = removal_events(5)
    events.append(
        event(20, "complete", "Removal complete: none of the 5,000 listed keys is a member any more.")
    )
    record = make(mode="remove", status="complete", part_count=5, parts_done=5, finished_at=at(20))
    progress = import_steps.present(record, events, now=at(30))
    assert steps(progress) == [
        ("File checked", "done", "Done"),
        ("Undo copy saved", "done", "Done"),
        ("Removing keys: all 5 batches", "done", "Done"),
        ("Complete", "done", "Done"),
    ]


def test_a_remove_refused_at_batch_3() -> None:
    message = "LaunchDarkly refused batch 3 of 5: Invalid key. 2 earlier batches were removed."
    events = [*removal_events(2), event(9, "failed", message, 3)]
    record = make(mode="remove", status="failed", part_count=5, parts_done=2, error_message=message)
    progress = import_steps.present(record, events, now=at(10))
    assert steps(progress) == [
        ("File checked", "done", "Done"),
        ("Undo copy saved", "done", "Done"),
        ("Removing keys: batch 3 of 5", "failed", "Failed"),
        ("Complete", "todo", NOT_REACHED),
    ]
    assert progress.steps[2].note == "LaunchDarkly refused batch 3 of 5: Invalid key."


# --- what next --------------------------------------------------------------------------------------------


def test_a_finished_import_offers_the_segment_the_lookup_and_undo_when_it_can() -> None:
    record = make(status="complete", finished_at=at(20), undo_snapshot_id=5)
    events = [UPLOADED, CHECKED, event(20, "complete", "Import complete: 3 keys.")]
    links = import_steps.present(record, events, undo_state="ready", now=at(30)).next_steps
    assert [(link.label, link.url) for link in links] == [
        ("Back to the segment", "/segments/shop/live/vip/"),
        ("Look keys up", "/segments/shop/live/vip/lookup/"),
        ("Undo this import", "#undo-heading"),
    ]
    # Once the saved members are gone (or none were saved), there is nothing to undo with.
    for state in ("", "gone", "failed", "saving"):
        labels = [link.label for link in import_steps.present(record, events, undo_state=state).next_steps]
        assert labels == ["Back to the segment", "Look keys up"], state


@pytest.mark.parametrize("status", ["failed", "stopped", "unknown"])
def test_an_import_that_did_not_complete_offers_the_way_on_too(status: str) -> None:
    record = make(status=status, finished_at=at(5), error_message="It went wrong.")
    progress = import_steps.present(record, [UPLOADED, CHECKED, event(5, status, "It went wrong.", 1)])
    assert [link.label for link in progress.next_steps] == ["Back to the segment", "Look keys up"]


@pytest.mark.parametrize(
    ("status", "shown"),
    [
        ("validating", False),
        ("draft", False),
        ("rejected", False),
        ("cancelled", False),
        ("expired", False),
        ("queued", True),
        ("submitting", True),
        ("preparing", True),
        ("pending_approval", True),
        ("ready", True),
        ("in_progress", True),
        ("complete", True),
        ("failed", True),
        ("unknown", True),
        ("stopped", True),
    ],
)
def test_only_sent_imports_show_steps(status: str, shown: bool) -> None:
    assert import_steps.shows_steps(make(status=status)) is shown


# --- the page -----------------------------------------------------------------------------------------------


def saved_import(user: Any, status: str = ImportStatus.VALIDATING, **fields: Any) -> ImportRecord:
    """The factories' import record, of 3 keys, just uploaded (still being checked) unless `status` says
    otherwise."""
    return make_record(user, status, **{"key_count": 3, **fields})


def step_items(html: str) -> list[str]:
    """Each step's words as the page shows them, tags and spacing removed."""
    block = re.search(r'<ol class="steps"[^>]*>(.*?)</ol>', html, re.S)
    assert block, "the page has no steps list"
    items = re.findall(r"<li[^>]*>(.*?)</li>", block.group(1), re.S)
    # Times move on with the clock ("now", "1 s so far"): they are checked on their own.
    items = [re.sub(r'<span class="step-time">.*?</span>', "", item, flags=re.S) for item in items]
    return [" ".join(re.sub(r"<[^>]+>", " ", item).split()) for item in items]


@pytest.mark.django_db
def test_the_page_of_a_running_import_shows_its_steps(logged_in: Any, user: Any) -> None:
    record = saved_import(user, status="preparing", part_count=3, parts_done=1)
    for status, part in (("queued", None), ("submitting", 1), ("complete", 1), ("preparing", 2)):
        ImportEvent.objects.create(record=record, status=status, message=f"{status} {part}", part_number=part)
    html = text(logged_in.get(f"/imports/{record.pk}/"))
    assert step_items(html) == [
        "✓ File checked Done",
        "✓ Sent to LaunchDarkly: part 2 of 3 Done",
        "● LaunchDarkly preparing: part 2 of 3 In progress",
        "○ Importing: part 2 of 3 To do",
        "○ Complete To do",
    ]
    assert html.count('aria-current="step"') == 1
    current = re.search(r'<li class="step step-current" aria-current="step">(.*?)</li>', html, re.S)
    assert current
    assert "LaunchDarkly preparing" in current.group(1)
    assert re.search(r'<span class="step-time">\d+ s so far</span>', current.group(1))
    assert "Under way for" in html
    assert "· Part 2 of 3" in html
    assert "Next steps" not in html  # only once it has finished


@pytest.mark.django_db
def test_the_page_of_a_finished_import_offers_the_next_steps(logged_in: Any, user: Any) -> None:
    record = saved_import(user, status="complete", parts_done=1)
    ImportEvent.objects.create(record=record, status="queued", message="Checked keys.csv: 3 keys, merge.")
    ImportEvent.objects.create(record=record, status="complete", message="Import complete: 3 keys.")
    html = text(logged_in.get(f"/imports/{record.pk}/"))
    assert step_items(html) == [
        "✓ File checked Done",
        "✓ Sent to LaunchDarkly Done",
        "✓ LaunchDarkly preparing Done",
        "✓ Importing Done",
        "✓ Complete Done",
    ]
    assert "Took " in html
    assert 'aria-current="step"' not in html
    assert '<a href="/segments/shop/live/vip/">Back to the segment</a>' in html
    assert '<a href="/segments/shop/live/vip/lookup/">Look keys up</a>' in html
    assert "Undo this import" not in html  # no members were saved before it


@pytest.mark.django_db
def test_the_undo_offer_links_to_the_restore_form_on_the_page(
    logged_in: Any, user: Any, tmp_path: Any
) -> None:
    members = tmp_path / "members.csv"
    members.write_text("a\nb\n")
    snapshot = MemberSnapshot.objects.create(
        project_key="shop",
        environment_key="live",
        segment_key="vip",
        purpose="undo",
        status="ready",
        file_path=str(members),
        member_count=2,
        finished_at=timezone.now(),
    )
    record = saved_import(
        user, mode="replace", status="complete", parts_done=1, submit_attempts=1, undo_snapshot=snapshot
    )
    ImportEvent.objects.create(record=record, status="complete", message="Import complete: 3 keys.")
    html = text(logged_in.get(f"/imports/{record.pk}/"))
    assert '<a href="#undo-heading">Undo this import</a>' in html
    assert '<h2 id="undo-heading">Undo this import</h2>' in html  # the link's target, with the form
    assert html.count(f'action="/imports/{record.pk}/restore/"') == 1  # the form is not repeated


@pytest.mark.django_db
def test_a_draft_page_has_no_steps(logged_in: Any, user: Any) -> None:
    record = saved_import(user, status="rejected")
    html = text(logged_in.get(f"/imports/{record.pk}/"))
    assert 'class="steps"' not in html
    assert "Progress</h2>" not in html


@pytest.mark.django_db
def test_the_steps_ask_the_database_nothing(user: Any) -> None:
    """The page is polled every 2 s by everyone watching: the steps use what the page loaded."""
    record = saved_import(user, status="in_progress", undo_snapshot_id=None)
    ImportPart.objects.create(record=record, number=1, key_count=3, size_bytes=9, mode="merge")
    ImportEvent.objects.create(record=record, status="preparing", message="accepted", part_number=1)
    record = ImportRecord.objects.get(pk=record.pk)  # nothing cached on it
    events, parts = list(record.events.all()), list(record.parts.all())
    template = Template("{% load dashboard_extras %}{% import_steps record events parts undo %}")
    with CaptureQueriesContext(connection) as captured:
        html = template.render(Context({"record": record, "events": events, "parts": parts, "undo": ""}))
    assert captured.captured_queries == []
    assert 'aria-current="step"' in html
