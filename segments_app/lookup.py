"""Looking keys up in a big segment: for each of up to 10,000 keys, is it a member now, and which
import of this dashboard last sent it.

Membership is answered two ways (`MembershipSource`). A list of up to `IN_REQUEST_MAX_KEYS` is asked
of LaunchDarkly one key at a time (`GET …/{segment}/contexts/{key}`), a few keys at once on a small pool
of threads, each call retried by the client when LaunchDarkly asks it to wait (429): the answer comes
in the request. A longer list would take minutes that way (10,000 calls), so it waits for a member
snapshot (`segments_app/snapshots.py`: an export the import worker takes, follows and downloads), and
the members are then read once against the set of looked-up keys: the page polls meanwhile.

"Last sent it" is read from the imports' own part files, which hold the keys as they were sent: the
completed imports of the segment are read newest first, at most `SCAN_IMPORTS` of them, with the set
of looked-up keys. Keys live nowhere else in the database, so once an import's files are gone (they
are kept `IMPORT_RETENTION_HOURS`), nothing older can be told apart and the answer is "unknown". When
not even the newest import could be read (the default: files are deleted as an import finishes), every
key would say "unknown", so the page and the download leave "last sent by" out instead.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Protocol

from segments_app import file_store
from segments_app.connection import launchdarkly_client
from segments_app.history import neutralise
from segments_app.imports.storage import disk_full
from segments_app.imports.validation import Limits, normalise_csv
from segments_app.launchdarkly import LaunchDarklyClient, UnusableKey
from segments_app.models import ImportRecord, ImportStatus, MemberSnapshot
from segments_app.snapshots import iter_member_keys

MAX_KEYS = 10_000
# Lists up to this many keys are asked key by key in the request; longer ones wait for a snapshot.
IN_REQUEST_MAX_KEYS = 500
MEMBERSHIP_THREADS = 8
# Completed imports whose files are read for "last sent it", newest first: bounds the time a lookup takes.
SCAN_IMPORTS = 10
# How long a lookup's answer is kept for its download.
ANSWER_KEEP_SECONDS = 3600
ANSWER_COLUMNS = ["key", "member", "last_import", "last_import_finished_at", "last_import_file"]
# The download when no import's files could be read: a column of nothing but "unknown" says nothing.
MEMBER_COLUMNS = ANSWER_COLUMNS[:2]
NO_ROOM = (
    "The dashboard's disk is full, so nothing was looked up. Tell your administrator, and look the keys "
    "up again once there is room."
)
NOT_SAVED = (
    "The dashboard's server could not save the lookup, so nothing was looked up. Try again; if it "
    "happens again, tell your administrator."
)


class KeyListRefused(ValueError):
    """The list cannot be looked up (too many keys, none, a row that is no key); the message says why."""


class NotKept(Exception):
    """A lookup's files could not be written (a full disk); the message is for the person. Whatever
    the failed write had started is gone: the caller has nothing to clean up but the token."""


def not_kept(exc: OSError) -> NotKept:
    """The person's sentence for a write that failed: a full disk is named, since room is the remedy."""
    return NotKept(NO_ROOM if disk_full(exc) else NOT_SAVED)


@dataclass(frozen=True)
class KeyList:
    """The looked-up keys, normalised like an import's: trimmed, blanks and repeats left out."""

    keys: list[str]
    duplicates: int = 0
    blank_rows: int = 0
    header_left_out: str = ""


@dataclass(frozen=True)
class SentBy:
    """The completed import that last sent a key."""

    record_id: int
    finished_at: datetime | None
    filename: str


@dataclass(frozen=True)
class KeyAnswer:
    key: str
    member: bool | None  # None: LaunchDarkly cannot be asked about this key (e.g. "." or "..")
    sent_by: SentBy | None

    @property
    def member_text(self) -> str:
        return {True: "yes", False: "no", None: "unknown"}[self.member]


@dataclass(frozen=True)
class Answer:
    answers: list[KeyAnswer]
    # True when every completed import of the segment was read: a key none of them holds was never
    # sent by this dashboard. False: older imports' files are gone (or were not read), so "unknown".
    trail_complete: bool
    imports_read: int
    # When membership was read from a snapshot, the moment it was taken; None: asked just now.
    as_of: datetime | None = None

    @property
    def members(self) -> int:
        return sum(1 for answer in self.answers if answer.member)

    @property
    def non_members(self) -> int:
        return sum(1 for answer in self.answers if answer.member is False)

    @property
    def unaskable(self) -> int:
        return sum(1 for answer in self.answers if answer.member is None)

    @property
    def sent_known(self) -> int:
        return sum(1 for answer in self.answers if answer.sent_by is not None)

    @property
    def shows_sender(self) -> bool:
        """Whether "last sent by" can say anything: False when the newest completed import's files were
        already gone, so every key would be "unknown"."""
        return self.trail_complete or self.imports_read > 0

    @property
    def read_limit_reached(self) -> bool:
        """The trail stopped because reading more imports would make the lookup slow, not because
        older files are gone."""
        return not self.trail_complete and self.imports_read >= SCAN_IMPORTS

    @property
    def columns(self) -> list[str]:
        return ANSWER_COLUMNS if self.shows_sender else MEMBER_COLUMNS

    def sent_text(self, answer: KeyAnswer) -> str:
        if answer.sent_by is not None:
            return f"#{answer.sent_by.record_id}"
        return "none" if self.trail_complete else "unknown"


# --- the list ------------------------------------------------------------------------------------


def read_keys(source: Path, *, max_keys: int = MAX_KEYS) -> KeyList:
    """The keys of a pasted or uploaded list, by the import's own rules (`normalise_csv`), so a key
    found here is the key an import would send. A first row that reads as a column title ("email",
    "key") is left out and named. Raises KeyListRefused with a sentence for the person."""
    work = Path(tempfile.mkdtemp(prefix="lookup-"))
    try:
        limits = Limits(max_keys_per_part=max_keys + 1)
        report = normalise_csv(source, work, has_header=False, limits=limits)
        if report.problem_count:
            first = report.problems[0].message if report.problems else "The list has a problem."
            more = report.problem_count - 1
            raise KeyListRefused(first + (f" ({more:,} more problems.)" if more > 0 else ""))
        header = report.header_suspected  # set aside by the check, neither counted nor in the parts
        count = report.keys_accepted
        if count > max_keys:
            raise KeyListRefused(
                f"The list has {count:,} different keys; at most {max_keys:,} can be looked up at once. "
                "Split it, or look up the first part."
            )
        keys = [key for part in report.parts for key in _keys_in(Path(part.path))]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not keys:
        raise KeyListRefused("The list has no context keys: every row is blank or a header.")
    return KeyList(
        keys=keys, duplicates=report.duplicates, blank_rows=report.blank_rows, header_left_out=header
    )


def _keys_in(path: Path) -> Iterator[str]:
    """The keys of a part file as the import pipeline wrote it (one a line, quoted where CSV needs it)."""
    with path.open(newline="", encoding="utf-8") as lines:
        yield from _first_column(lines)


def _sent_keys(recorded: str) -> Iterator[str]:
    """The keys of an import's part, streamed from wherever the files are kept (object storage too)."""
    with file_store.open_text(recorded) as lines:
        yield from _first_column(lines)


def _first_column(lines: Iterable[str]) -> Iterator[str]:
    for row in csv.reader(lines):
        if row:
            yield row[0]


# --- membership ----------------------------------------------------------------------------------


class MembershipSource(Protocol):
    """Answers whether each key is a member of one big segment: True, False, or None (cannot ask)."""

    def __call__(self, keys: list[str]) -> dict[str, bool | None]: ...


class MembershipEndpoint:
    """LaunchDarkly's membership endpoint, `threads` keys at a time, each thread with its own client
    (a `requests.Session` is not meant to be shared between threads). The first error that is not
    about one key (LaunchDarkly down, the token refused, 429 past the client's retry budget) stops
    the lookup and is raised: a half-answered list would read as "not a member"."""

    def __init__(
        self,
        project: str,
        environment: str,
        segment: str,
        *,
        threads: int = MEMBERSHIP_THREADS,
        client_factory: Callable[[], LaunchDarklyClient] = launchdarkly_client,
    ) -> None:
        self.project, self.environment, self.segment = project, environment, segment
        self.threads = threads
        self.client_factory = client_factory

    def __call__(self, keys: list[str]) -> dict[str, bool | None]:
        local = threading.local()
        clients: list[LaunchDarklyClient] = []
        lock = threading.Lock()
        failed = threading.Event()

        def ask(key: str) -> tuple[str, bool | None]:
            if failed.is_set():
                return key, None
            client = getattr(local, "client", None)
            if client is None:
                client = local.client = self.client_factory()
                with lock:
                    clients.append(client)
            try:
                body = client.get_context_membership(self.project, self.environment, self.segment, key)
            except UnusableKey:
                return key, None
            except Exception:  # a missing segment (SegmentMissing) too: the client answers never-seen keys
                failed.set()
                raise
            return key, bool(body.get("included")) and not bool(body.get("excluded"))

        try:
            with ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="lookup") as pool:
                return dict(pool.map(ask, keys))
        finally:
            for client in clients:
                client.close()


class SnapshotMembership:
    """A ready member snapshot of the segment, read once (a key at a time) against the looked-up keys."""

    def __init__(self, snapshot: MemberSnapshot) -> None:
        self.snapshot = snapshot

    def __call__(self, keys: list[str]) -> dict[str, bool | None]:
        wanted = set(keys)
        found = {key for key in iter_member_keys(self.snapshot) if key in wanted}
        return {key: key in found for key in keys}


# --- who last sent it ----------------------------------------------------------------------------


def last_sent(
    project: str, environment: str, segment: str, keys: Iterable[str], *, limit: int = SCAN_IMPORTS
) -> tuple[dict[str, SentBy], bool, int]:
    """For each key, the most recent completed import of the segment whose part files hold it; whether
    that trail is complete (every completed import was read); and how many imports were read.

    The walk stops at the first import whose files are gone: a key in it cannot be seen, so an older
    import holding the key would be named wrongly as the last to send it."""
    pending = set(keys)
    found: dict[str, SentBy] = {}
    records = ImportRecord.objects.filter(
        project_key=project, environment_key=environment, segment_key=segment, status=ImportStatus.COMPLETE
    ).order_by("-finished_at", "-id")
    read = 0
    for record in records[: limit + 1]:
        if not pending:
            return found, True, read
        if read == limit:
            return found, False, read
        paths = [part.file_path for part in record.parts.order_by("number")]
        if not record.storage_dir or not paths or not all(paths):
            return found, False, read
        sent = SentBy(record.pk, record.finished_at, record.original_filename)
        # A remove import's files list keys it took out: a key found there was last *removed*, so the
        # walk stops looking for it without naming that import as the one that sent it.
        removed = record.mode == ImportRecord.Mode.REMOVE
        try:
            for path in paths:
                for key in _sent_keys(path):
                    if key in pending:
                        pending.discard(key)
                        if not removed:
                            found[key] = sent
        except OSError:  # its files were purged while being read
            return found, False, read
        read += 1
    return found, True, read


# --- the whole lookup ----------------------------------------------------------------------------


def look_up(
    project: str,
    environment: str,
    segment: str,
    listed: KeyList,
    *,
    membership: MembershipSource | None = None,
) -> Answer:
    """Each key's membership now and the import that last sent it, in the list's order.

    Raises the client's LaunchDarklyError when LaunchDarkly could not answer."""
    ask = membership or MembershipEndpoint(project, environment, segment)
    members = ask(listed.keys)
    sent, complete, read = last_sent(project, environment, segment, listed.keys)
    answers = [KeyAnswer(key, members.get(key), sent.get(key)) for key in listed.keys]
    as_of = ask.snapshot.finished_at if isinstance(ask, SnapshotMembership) else None
    return Answer(answers=answers, trail_complete=complete, imports_read=read, as_of=as_of)


# --- the answer as CSV, and kept for its page and download -------------------------------------------


class _Echo:
    def write(self, value: str) -> str:
        return value


def answer_rows(answer: Answer) -> Iterator[list[str]]:
    """The download's rows, cell for cell under `answer.columns`."""
    for item in answer.answers:
        if not answer.shows_sender:
            yield [item.key, item.member_text]
            continue
        sent = item.sent_by
        yield [
            item.key,
            item.member_text,
            answer.sent_text(item),
            sent.finished_at.isoformat() if sent and sent.finished_at else "",
            sent.filename if sent else "",
        ]


def answer_csv(answer: Answer) -> Iterator[str]:
    """The answer as CSV lines, every cell safe to open in a spreadsheet (a key like "=1+1" stays text)."""
    writer = csv.writer(_Echo())
    yield writer.writerow(answer.columns)
    for row in answer_rows(answer):
        yield writer.writerow([neutralise(cell) for cell in row])


def answers_dir() -> Path:
    return file_store.root() / "lookups"


def new_token() -> str:
    """A name for one lookup's files: random, so only the session it is given to can find them.
    Raises NotKept when the folder cannot be made."""
    folder = answers_dir()
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        forget_old_answers()
    except OSError as exc:
        raise not_kept(exc) from None
    return uuid.uuid4().hex


def _path(token: str, suffix: str) -> Path | None:
    if len(token) != 32 or not all(c in "0123456789abcdef" for c in token):
        return None
    return answers_dir() / f"{token}{suffix}"


def _own_path(token: str, suffix: str) -> Path:
    path = _path(token, suffix)
    if path is None:
        raise ValueError("not a lookup token")
    return path


def _write(path: Path, text: str) -> None:
    """Whole or not at all: a poll reading the file while it is written sees the old one or none.
    A write that fails (a full disk, an object store that does not answer) leaves no partial file
    behind and raises NotKept. With object storage the file is read from there, by any web server."""
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # made by another server's new_token
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise not_kept(exc) from None
    try:
        file_store.push(path, keep_local=False)
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise not_kept(exc) from None


def _read(path: Path | None) -> str | None:
    """A lookup file's text, or None when it is not there (or cannot be read now)."""
    if path is None:
        return None
    try:
        with file_store.open_text(file_store.name(path)) as source:
            return source.read()
    except OSError:
        return None


def _delete(path: Path) -> None:
    file_store.discard(file_store.name(path))


def keep_answer(token: str, answer: Answer, listed: KeyList) -> None:
    """Keep the answer as its CSV download and as JSON for its page (the list's facts too).
    Raises NotKept, keeping neither, when they cannot be written: a download without its page (or a
    page without its download) would only puzzle."""
    csv_path, json_path = _own_path(token, ".csv"), _own_path(token, ".json")
    try:
        _write(csv_path, "".join(answer_csv(answer)))
        _write(json_path, json.dumps(_answer_facts(answer, listed)))
    except NotKept:
        _delete(csv_path)
        _delete(json_path)
        raise
    pending = _path(token, ".list.json")
    if pending is not None:
        _delete(pending)


def _answer_facts(answer: Answer, listed: KeyList) -> dict[str, object]:
    return {
        "answers": [
            [
                item.key,
                item.member,
                *(
                    [item.sent_by.record_id, _iso(item.sent_by.finished_at), item.sent_by.filename]
                    if item.sent_by
                    else [None, None, None]
                ),
            ]
            for item in answer.answers
        ],
        "trail_complete": answer.trail_complete,
        "imports_read": answer.imports_read,
        "as_of": _iso(answer.as_of),
        "duplicates": listed.duplicates,
        "blank_rows": listed.blank_rows,
        "header_left_out": listed.header_left_out,
    }


def kept_answer(token: str) -> tuple[Answer, KeyList] | None:
    """A kept answer and the facts of its list (without its keys), or None once it is gone."""
    text = _read(_path(token, ".json"))
    try:
        facts = json.loads(text) if text is not None else None
    except ValueError:
        return None
    if not isinstance(facts, dict):
        return None
    answers = [
        KeyAnswer(key, member, SentBy(sent_id, _from_iso(at), filename) if sent_id is not None else None)
        for key, member, sent_id, at, filename in facts["answers"]
    ]
    answer = Answer(answers, facts["trail_complete"], facts["imports_read"], _from_iso(facts["as_of"]))
    listed = KeyList([], facts["duplicates"], facts["blank_rows"], facts["header_left_out"])
    return answer, listed


def kept_csv(token: str) -> IO[bytes] | None:
    """The CSV file of a kept answer, open for streaming, or None once it is gone (or the token names
    no answer)."""
    path = _path(token, ".csv")
    if path is None:
        return None
    try:
        return file_store.open_binary(file_store.name(path))
    except OSError:
        return None


def keep_pending(token: str, listed: KeyList, snapshot: MemberSnapshot) -> None:
    """A long list waiting for its snapshot: the keys and the snapshot that will answer them."""
    path = _own_path(token, ".list.json")
    facts = {
        "keys": listed.keys,
        "duplicates": listed.duplicates,
        "blank_rows": listed.blank_rows,
        "header_left_out": listed.header_left_out,
        "snapshot": snapshot.pk,
    }
    _write(path, json.dumps(facts))


def kept_pending(token: str) -> tuple[KeyList, int] | None:
    """The waiting list and its snapshot's id, or None when there is none (answered, or gone)."""
    text = _read(_path(token, ".list.json"))
    try:
        facts = json.loads(text) if text is not None else None
    except ValueError:
        return None
    if not isinstance(facts, dict):
        return None
    listed = KeyList(facts["keys"], facts["duplicates"], facts["blank_rows"], facts["header_left_out"])
    return listed, int(facts["snapshot"])


def forget(token: str) -> None:
    for suffix in (".csv", ".json", ".list.json"):
        path = _path(token, suffix)
        if path is not None:
            _delete(path)


def forget_old_answers(*, now: float | None = None) -> None:
    """Remove every lookup file older than ANSWER_KEEP_SECONDS, so the folder never grows."""
    limit = (now or time.time()) - ANSWER_KEEP_SECONDS
    for recorded, changed in file_store.files_in("lookups"):
        if changed < limit:
            file_store.discard(recorded)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _from_iso(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
