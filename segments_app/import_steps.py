"""The steps of a sent import as a person follows them: checked → undo copy → sent → LaunchDarkly
preparing → importing → complete, each done, under way, to do, failed or skipped, with its time.

Why a presenter over the record and its timeline rather than more status fields: the import page is
polled every 2 s by everyone watching it, and the page already holds the record, its parts and its
events. Everything here is read from those (no query of its own), so showing the steps costs nothing
per poll. The timeline (`ImportEvent`) is the only place that says when each step happened; the
record's status says where the import is now.

A remove import has no file for LaunchDarkly to prepare: it sends the listed keys in batches
(imports/removal.py), so its steps are checked → undo copy → removing keys (batch k of n) → complete.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.urls import reverse
from django.utils import timezone
from django.utils.text import Truncator

from segments_app.imports import undo
from segments_app.models import (
    FINAL_STATUSES,
    ImportEvent,
    ImportPart,
    ImportRecord,
    ImportStatus,
)

# The state of one step, as the page's CSS and tests name it.
DONE = "done"
CURRENT = "current"
TODO = "todo"
FAILED = "failed"
SKIPPED = "skipped"

# What each state is called on the page: a state is said in words, never by colour alone.
STATE_WORDS = {
    DONE: "Done",
    CURRENT: "In progress",
    TODO: "To do",
    FAILED: "Failed",
    SKIPPED: "Skipped",
}
NOT_REACHED = "Not reached"
# What the failed step says, by how the import ended.
ENDED_WORDS = {
    ImportStatus.FAILED: "Failed",
    ImportStatus.UNKNOWN: "Outcome unknown",
    ImportStatus.STOPPED: "Stopped by LaunchDarkly",
}
ENDED_REASONS = {
    ImportStatus.FAILED: "It did not go through.",
    ImportStatus.UNKNOWN: "Nobody can say whether LaunchDarkly applied it: check the segment there.",
    ImportStatus.STOPPED: "LaunchDarkly stopped it before it finished.",
}

# Steps, by key. Their order is the order of this tuple (a step an import does not take is left out).
CHECKED = "checked"
UNDO_COPY = "undo_copy"
SENT = "sent"
PREPARING = "preparing"
IMPORTING = "importing"
REMOVING = "removing"
COMPLETE = "complete"

LABELS = {
    CHECKED: "File checked",
    UNDO_COPY: "Undo copy saved",
    SENT: "Sent to LaunchDarkly",
    PREPARING: "LaunchDarkly preparing",
    IMPORTING: "Importing",
    REMOVING: "Removing keys",
    COMPLETE: "Complete",
}
APPROVAL_LABEL = "Waiting for approval"

# Statuses of imports that were never sent: nothing to follow, so no steps (a draft has its own form).
NOT_SENT = frozenset(
    {
        ImportStatus.VALIDATING,
        ImportStatus.DRAFT,
        ImportStatus.REJECTED,
        ImportStatus.CANCELLED,
        ImportStatus.EXPIRED,
    }
)
# Finished imports whose page offers what to do next.
FINISHED = frozenset({ImportStatus.COMPLETE, ImportStatus.FAILED, ImportStatus.STOPPED, ImportStatus.UNKNOWN})

# The undo copy's timeline notes (imports/undo.py), recognised by how they begin.
SAVING_PREFIX = undo.SAVING
SAVED_PREFIX = undo.SAVED.split("{", 1)[0]
NOT_SAVED_PREFIX = undo.NOT_SAVED


@dataclass(frozen=True)
class Step:
    """One line of the steps list.

    `at` is when the step ended (done, failed, skipped) or began (current); `elapsed` is how long the
    current step has been going. `detail` is which part or batch it is at; `note` says why a step
    failed or was skipped, or what the current one waits for."""

    key: str
    label: str
    state: str
    state_words: str
    detail: str = ""
    note: str = ""
    at: datetime | None = None
    elapsed: timedelta | None = None

    @property
    def is_current(self) -> bool:
        return self.state == CURRENT


@dataclass(frozen=True)
class NextStep:
    """A link a finished import's page offers: where a person usually goes next."""

    label: str
    url: str
    hint: str = ""


@dataclass(frozen=True)
class Progress:
    """Everything the steps block shows of one import."""

    steps: list[Step]
    # "part 2 of 3" (or "batch 2 of 5" for a remove) while a many-part import runs; "" otherwise.
    position: str
    started_at: datetime
    elapsed: timedelta
    finished: bool
    next_steps: list[NextStep] = field(default_factory=list)

    @property
    def current(self) -> Step | None:
        return next((step for step in self.steps if step.is_current), None)


def shows_steps(record: ImportRecord) -> bool:
    """Only a sent import has steps to follow: a file being checked, a draft, a rejected file and one
    called off before it was sent have their own blocks on the page."""
    return record.status not in NOT_SENT


def takes_undo_copy(record: ImportRecord) -> bool:
    """Whether the members are saved before this import is sent, so it can be undone."""
    return bool(record.undo_snapshot_id) or undo.wants_undo_snapshot(record)


def present(
    record: ImportRecord,
    events: Sequence[ImportEvent],
    parts: Sequence[ImportPart] = (),
    *,
    undo_state: str = "",
    now: datetime | None = None,
) -> Progress:
    """The steps of `record` from what the page already loaded: its timeline (`events`, oldest first),
    its `parts`, and `undo_state` (`undo.undo_state`, which the page works out for a finished import).
    Asks the database nothing."""
    now = now or timezone.now()
    events = sorted(events, key=lambda event: (event.at, event.pk or 0))
    timeline = _Timeline(record, events, parts)
    removing = record.mode == ImportRecord.Mode.REMOVE
    keys = [CHECKED, *([UNDO_COPY] if takes_undo_copy(record) else [])]
    keys += [REMOVING] if removing else [SENT, PREPARING, IMPORTING]
    keys.append(COMPLETE)

    ended = record.status in FINAL_STATUSES and record.status != ImportStatus.COMPLETE
    if record.status == ImportStatus.COMPLETE:
        reached = len(keys)  # every step done
    else:
        where = timeline.where(keys, ended)
        reached = keys.index(where)

    ends = timeline.ends(keys, undo_state)
    steps: list[Step] = []
    previous_end: datetime | None = None
    for index, key in enumerate(keys):
        label = APPROVAL_LABEL if key == PREPARING and timeline.had_approval else LABELS[key]
        detail = timeline.detail(key, reached_complete=reached == len(keys))
        if index < reached:
            state, note, at = DONE, "", ends.get(key)
            if key == UNDO_COPY:
                state, note = timeline.undo_outcome(undo_state)
            steps.append(Step(key, label, state, STATE_WORDS[state], detail, note, at))
        elif index == reached and ended:
            words = ENDED_WORDS.get(record.status, STATE_WORDS[FAILED])
            at = record.finished_at or (events[-1].at if events else None)
            steps.append(Step(key, label, FAILED, words, detail, timeline.reason(), at))
        elif index == reached:
            began = timeline.began(key, previous_end)
            elapsed = max(timedelta(0), now - began) if began else None
            note = timeline.waiting_note(key)
            steps.append(Step(key, label, CURRENT, STATE_WORDS[CURRENT], detail, note, began, elapsed))
        else:
            words = NOT_REACHED if ended else STATE_WORDS[TODO]
            steps.append(Step(key, label, TODO, words, "" if ended else detail))
        end = steps[-1].at if steps[-1].state in (DONE, SKIPPED) else None
        previous_end = end or previous_end

    finished = record.status in FINAL_STATUSES
    end_time = (record.finished_at or record.updated_at) if finished else now
    started_at = timeline.started_at
    return Progress(
        steps=steps,
        position=timeline.position(),
        started_at=started_at,
        elapsed=max(timedelta(0), end_time - started_at),
        finished=finished,
        next_steps=next_steps(record, undo_state) if record.status in FINISHED else [],
    )


def next_steps(record: ImportRecord, undo_state: str = "") -> list[NextStep]:
    """Where a person goes once an import has finished: back to its segment, to look keys up in it,
    and (while the members before it are kept) to the Undo section of this page."""
    segment = (record.project_key, record.environment_key, record.segment_key)
    found = [
        NextStep("Back to the segment", reverse("segment_detail", args=segment), "its members and imports"),
        NextStep(
            "Look keys up",
            reverse("lookup_keys", args=segment),
            "whether given keys are in the segment now",
        ),
    ]
    if undo_state == "ready":
        found.append(
            NextStep("Undo this import", "#undo-heading", "restore the members as they were before it")
        )
    return found


class _Timeline:
    """What the events say about one import, read once per render."""

    def __init__(self, record: ImportRecord, events: list[ImportEvent], parts: Sequence[ImportPart]) -> None:
        self.record = record
        self.events = events
        self.parts = list(parts)
        self.removing = record.mode == ImportRecord.Mode.REMOVE
        sent = next((e.at for e in events if e.action == ImportEvent.Action.SENT), None)
        # As `import_display.duration` counts it: from when a person sent the checked draft, else the upload.
        self.started_at: datetime = sent or record.created_at
        self.had_approval = record.status == ImportStatus.PENDING_APPROVAL or any(
            e.status == ImportStatus.PENDING_APPROVAL for e in events
        )
        self.part = self._current_part()

    # --- where the import is ----------------------------------------------------------------------

    def _final_event(self) -> ImportEvent | None:
        if self.record.status not in FINAL_STATUSES:
            return None
        ending = [e for e in self.events if e.status == self.record.status and e.part_number is not None]
        return ending[-1] if ending else None

    def _current_part(self) -> int:
        """The number of the part (or batch) the import is at, or ended at."""
        record = self.record
        count = max(record.part_count, 1)
        if record.status == ImportStatus.COMPLETE:
            return count
        if record.status in FINAL_STATUSES:
            final = self._final_event()
            if final is not None and final.part_number:
                return final.part_number
            bad = (ImportStatus.FAILED, ImportStatus.UNKNOWN, ImportStatus.STOPPED)
            broken = [p.number for p in self.parts if p.status in bad]
            if broken:
                return broken[0]
        return min(record.parts_done + 1, count)

    def _status_before_the_end(self) -> str:
        """The status the import was in when it ended: that of the event before its final one. A part
        finishing on the way to the next is written as "complete" while the record queues on."""
        record = self.record
        events = self.events
        # Where the final status last began: an import reported "unknown" may still get LaunchDarkly's
        # late answer and go on, and notes written after the end (a restore asked for) keep its status.
        starts = [
            i
            for i, e in enumerate(events)
            if e.status == record.status and (i == 0 or events[i - 1].status != record.status)
        ]
        end = starts[-1] if starts else None
        if end:
            status = events[end - 1].status
            return ImportStatus.QUEUED if status == ImportStatus.COMPLETE else status
        if record.parts_done:
            return ImportStatus.QUEUED  # a part finished: the next one was about to be sent
        return ImportStatus.SUBMITTING if record.part_count else ImportStatus.VALIDATING

    def where(self, keys: list[str], ended: bool) -> str:
        """The step the import is at now, or (`ended`) the step at which it stopped."""
        status = self._status_before_the_end() if ended else self.record.status
        if status == ImportStatus.VALIDATING:
            return CHECKED
        if status == ImportStatus.QUEUED:
            if UNDO_COPY in keys and not self._undo_settled():
                return UNDO_COPY
            return REMOVING if self.removing else SENT
        if self.removing:
            return REMOVING if status == ImportStatus.SUBMITTING else COMPLETE
        if status == ImportStatus.SUBMITTING:
            return SENT
        if status in (ImportStatus.PREPARING, ImportStatus.PENDING_APPROVAL):
            return PREPARING
        if status in (ImportStatus.READY, ImportStatus.IN_PROGRESS):
            return IMPORTING
        return COMPLETE

    # --- the undo copy ------------------------------------------------------------------------------

    def _note(self, prefix: str) -> ImportEvent | None:
        return next((e for e in self.events if e.message.startswith(prefix)), None)

    def _undo_settled(self) -> bool:
        """Whether the undo copy is behind the import: saved, given up on, or the import went past it
        (a part was sent, or an earlier part finished)."""
        if self._note(SAVED_PREFIX) or self._note(NOT_SAVED_PREFIX) or self.record.parts_done:
            return True
        return any(
            e.status in (ImportStatus.SUBMITTING, ImportStatus.PREPARING, ImportStatus.COMPLETE)
            for e in self.events
        )

    def undo_outcome(self, undo_state: str) -> tuple[str, str]:
        """The undo step once the import is past it: done, or skipped with why."""
        if self._note(SAVED_PREFIX):
            return DONE, ""
        if self._note(NOT_SAVED_PREFIX) or undo_state == "failed":
            return SKIPPED, "The members could not be saved, so this import cannot be undone here."
        if not self.record.undo_snapshot_id:
            return SKIPPED, "No copy of the members was saved, so this import cannot be undone here."
        return DONE, ""

    # --- when each step ended -----------------------------------------------------------------------

    def ends(self, keys: Iterable[str], undo_state: str) -> dict[str, datetime | None]:
        """When each step ended, as far as the timeline says."""
        events, part = self.events, self.part
        of_part = [e for e in events if e.part_number == part]
        last_validating = max(
            (i for i, e in enumerate(events) if e.status == ImportStatus.VALIDATING), default=-1
        )
        after_check = events[last_validating + 1 : last_validating + 2]
        undo_note = self._note(SAVED_PREFIX) or self._note(NOT_SAVED_PREFIX)
        complete = [e for e in events if e.status == ImportStatus.COMPLETE]
        final_complete = complete[-1].at if complete and self.record.status == ImportStatus.COMPLETE else None
        ends: dict[str, datetime | None] = {
            CHECKED: after_check[0].at if after_check else None,
            UNDO_COPY: undo_note.at if undo_note else None,
            SENT: _first(of_part, {ImportStatus.PREPARING, ImportStatus.PENDING_APPROVAL}),
            PREPARING: _first(of_part, {ImportStatus.READY, ImportStatus.IN_PROGRESS, ImportStatus.COMPLETE}),
            IMPORTING: _first(of_part, {ImportStatus.COMPLETE}) or final_complete,
            REMOVING: final_complete,
            COMPLETE: self.record.finished_at or final_complete,
        }
        return {key: ends.get(key) for key in keys}

    def began(self, key: str, previous_end: datetime | None) -> datetime:
        """When the current step began: when the step before it ended, never before the import was
        sent (a draft may have waited hours for a person). A later part's turn to be sent begins when
        the part before it finished."""
        began = previous_end
        if key == SENT and self.part > 1:
            earlier = [e for e in self.events if e.part_number == self.part - 1]
            began = _first(earlier, {ImportStatus.COMPLETE}) or began
        return max(began, self.started_at) if began else self.started_at

    # --- words --------------------------------------------------------------------------------------

    def position(self) -> str:
        """ "part 2 of 3" (or "batch 2 of 5") while a many-part import runs or where it ended."""
        record = self.record
        if self.removing and not self._batches_cut():
            return ""
        if record.part_count <= 1:
            return ""
        if record.status == ImportStatus.COMPLETE:
            return _batches(record.part_count) if self.removing else f"all {record.part_count:,} parts"
        noun = "batch" if self.removing else "part"
        return f"{noun} {self.part:,} of {record.part_count:,}"

    def _batches_cut(self) -> bool:
        """A remove import's part count is its batches only once its turn came (removal.start)."""
        return self.record.status != ImportStatus.QUEUED and any(
            e.status == ImportStatus.SUBMITTING for e in self.events
        )

    def detail(self, key: str, *, reached_complete: bool) -> str:
        """Which part (or batch) a sending step is at."""
        record = self.record
        if key == REMOVING and self._batches_cut():
            if reached_complete:
                return _batches(record.part_count)
            return f"batch {self.part:,} of {record.part_count:,}"
        if key in (SENT, PREPARING, IMPORTING) and record.part_count > 1:
            if reached_complete:
                return f"all {record.part_count:,} parts"
            return f"part {self.part:,} of {record.part_count:,}"
        return ""

    def reason(self) -> str:
        """Why the import ended where it did, in one short sentence."""
        message = _first_sentence(self.record.error_message)
        return message or ENDED_REASONS.get(self.record.status, "")

    def waiting_note(self, key: str) -> str:
        """What the current step is waiting for, when it waits on something."""
        record = self.record
        if key in (UNDO_COPY, SENT, REMOVING) and record.status == ImportStatus.QUEUED:
            if record.waiting_behind_id:
                return (
                    f"Waiting for import #{record.waiting_behind_id} to finish: "
                    "LaunchDarkly runs one import per environment at a time."
                )
            if key == UNDO_COPY and self._note(SAVING_PREFIX):
                return "Saving the segment's members first, so that this import can be undone."
        if key == PREPARING and record.status == ImportStatus.PENDING_APPROVAL:
            return "A reviewer must approve it in LaunchDarkly."
        return ""


def _first(events: Iterable[ImportEvent], statuses: set[str]) -> datetime | None:
    return next((e.at for e in events if e.status in statuses), None)


def _batches(count: int) -> str:
    return f"all {count:,} batches" if count != 1 else "1 batch"


def _first_sentence(text: str) -> str:
    """The first sentence of an error message, at most 30 words: the page shows it in full above."""
    text = " ".join(text.split())
    if not text:
        return ""
    match = re.match(r"(.+?[.!?])(\s|$)", text)
    sentence = match.group(1) if match else text
    return Truncator(sentence).words(30, truncate="…")
