"""Receiving an upload: streamed straight into the import's own folder, hashed on the way, refused
early when too large, and recorded at once. Only the file's first bytes are looked at here (a picture,
an archive or UTF-16 text is refused at once, with what it looks like); the worker checks the rest.

Writing into the import's folder (not a temporary file moved later) keeps the time between the last
byte and the answer independent of the file's size: there is no copy.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone

from segments_app import file_store, wakeup
from segments_app.imports.storage import disk_full
from segments_app.imports.validation import SNIFF_BYTES, not_csv_text
from segments_app.models import ImportEvent, ImportRecord, ImportStatus

logger = logging.getLogger(__name__)
UPLOAD_NAME = "upload.csv"
# Room for the form's other fields and the multipart framing around the file.
FORM_OVERHEAD = 64 * 1024
ONE_FILE = "Choose one file: this upload held more than one. Nothing was uploaded."
INTERRUPTED = "The upload stopped before the whole file arrived. Nothing was uploaded; try again."
NO_ROOM = "The dashboard's disk is full, so the file could not be saved. Nothing was uploaded."
NOT_SAVED = "The file could not be saved on the dashboard's server. Nothing was uploaded."


def declared_too_large(request: HttpRequest) -> bool:
    """Whether the request's Content-Length already says it is larger than an upload may be: then it
    is refused before a byte of its body is read. (Without one, or with a smaller one, the upload
    handler counts the bytes as they arrive.)"""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return False
    return length > settings.IMPORT_MAX_UPLOAD_BYTES + FORM_OVERHEAD


def too_large_message() -> str:
    limit_mb = settings.IMPORT_MAX_UPLOAD_BYTES // (1024 * 1024)
    return f"The file is larger than the {limit_mb:,} MB limit. Nothing was uploaded."


@dataclass(frozen=True)
class ReceivedFile:
    """An upload as it landed on disk, in a folder of its own that the import takes over."""

    path: Path
    original_name: str
    size: int
    sha256: str


def new_upload_path() -> Path:
    folder = file_store.root() / uuid.uuid4().hex
    folder.mkdir(mode=0o700, parents=True)  # an upload is readable by the dashboard's own user only
    return folder / UPLOAD_NAME


def save_failure_message(exc: OSError) -> str:
    """What the person is told when their file could not be written: a full disk is not their file's
    fault, and waiting for room is the remedy, so it is named as such."""
    return NO_ROOM if disk_full(exc) else NOT_SAVED


class ReceivedUpload(UploadedFile):
    """The uploaded file in its import folder; closing it (Django does, after the request) keeps it."""

    def __init__(self, path: Path, name: str, content_type: str, charset: str | None) -> None:
        super().__init__(path.open("w+b"), name, content_type, 0, charset)
        self.path = path
        self.sha256 = ""

    def received(self, original_name: str | None = None) -> ReceivedFile:
        return ReceivedFile(self.path, original_name or self.name or UPLOAD_NAME, self.size, self.sha256)


class HashingUploadHandler(FileUploadHandler):
    """Writes the uploaded file into a new import folder (never whole in memory) and hashes it.

    It stops, keeps nothing, and sets `refusal` to a message for the person, when the file grows past
    `IMPORT_MAX_UPLOAD_BYTES`, when its first bytes show it is not CSV text, when a second file
    arrives in the same request, or when the request ends inside the file. When the file cannot be
    written (a full disk) it stops the same way and sets `not_saved` too: that is the server's fault,
    not the file's, so the view answers with a page of its own rather than a form error.
    Whatever the request's outcome, `discard_unclaimed()` removes a file no import took over.
    """

    def __init__(self, request: HttpRequest | None = None) -> None:
        super().__init__(request)
        self.max_bytes: int = settings.IMPORT_MAX_UPLOAD_BYTES
        self.received = 0
        self.upload: ReceivedUpload | None = None
        self.claimed = False
        self.refusal = ""
        self.not_saved = False
        self.files = 0
        self._head = b""
        self._sniffed = False

    def handle_raw_input(
        self, input_data: Any, META: Any, content_length: int, boundary: Any, encoding: str | None = None
    ) -> None:
        # The whole request is larger than the limit allows: refuse before reading any of the file.
        if content_length and content_length > self.max_bytes + FORM_OVERHEAD:
            self._refuse(too_large_message())

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        self.files += 1
        if self.files > 1 and not self.refusal:
            # Which of two files the person meant is anyone's guess: keep neither.
            self._refuse(ONE_FILE)
        if self.refusal:
            raise StopUpload(connection_reset=False)
        path: Path | None = None
        try:
            path = new_upload_path()
            self.upload = ReceivedUpload(path, self.file_name, self.content_type, self.charset)
        except OSError as exc:
            if path is not None:  # the folder was made, its file could not be
                shutil.rmtree(path.parent, ignore_errors=True)
            self._not_saved(exc)
            raise StopUpload(connection_reset=False) from None
        self.sha256 = hashlib.sha256()
        self.received = 0
        self._head, self._sniffed = b"", False

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        assert self.upload is not None
        self.received += len(raw_data)
        if self.received > self.max_bytes:
            self._refuse(too_large_message())
            raise StopUpload(connection_reset=False)
        if not self._sniffed:
            self._head += raw_data[: SNIFF_BYTES - len(self._head)]
            if len(self._head) >= SNIFF_BYTES and self._sniff():
                raise StopUpload(connection_reset=False)
        self.sha256.update(raw_data)
        try:
            self.upload.write(raw_data)
        except OSError as exc:
            self._not_saved(exc)
            raise StopUpload(connection_reset=False) from None
        return None

    def file_complete(self, file_size: int) -> ReceivedUpload | None:
        if self.upload is None or (not self._sniffed and self._sniff()):
            return None
        try:
            self.upload.flush()  # the last buffered bytes meet a full disk here, not at write()
        except OSError as exc:
            self._not_saved(exc)
            raise StopUpload(connection_reset=False) from None
        self.upload.seek(0)
        self.upload.size = file_size
        self.upload.sha256 = self.sha256.hexdigest()
        return self.upload

    def upload_complete(self) -> None:
        if self.upload is not None:
            try:
                self.upload.file.close()
            except OSError as exc:  # the parser is done: no StopUpload, the view reads `refusal`
                self._not_saved(exc)

    def upload_interrupted(self) -> None:
        """The request ended inside the file (a dropped connection, or a Content-Length shorter than
        the body): what arrived is not the person's file."""
        if not self.refusal:
            self._refuse(INTERRUPTED)

    def _sniff(self) -> bool:
        """Refuse the file if its first bytes show it is not CSV text; True when refused."""
        self._sniffed = True
        problem = not_csv_text(self._head)
        if problem:
            self._refuse(f"{problem} Nothing was uploaded.")
        return bool(problem)

    def _refuse(self, message: str) -> None:
        self.refusal = message
        self.discard_unclaimed()

    def _not_saved(self, exc: OSError) -> None:
        """Stop the upload: its file could not be written. Logged for the administrator, who can make
        room; the person gets a sentence, and the partial file goes."""
        logger.error("An upload could not be written under IMPORT_STORAGE_DIR: %s", exc)
        self.not_saved = True
        self._refuse(save_failure_message(exc))

    def discard_unclaimed(self) -> None:
        """Delete the received file and its folder unless an import has taken them over.

        Closing flushes what is still buffered, which fails again on a full disk: the folder goes
        whatever closing says."""
        if self.upload is not None and not self.claimed:
            upload, self.upload = self.upload, None
            try:
                upload.file.close()
            except OSError:
                pass
            finally:
                shutil.rmtree(upload.path.parent, ignore_errors=True)


def record_upload(
    *,
    user: Any,
    project: str,
    environment: str,
    segment: str,
    upload: ReceivedFile,
    mode: str,
    wait_on_approvals: bool,
    has_header: bool,
    send: bool,
    submission_token: str = "",
) -> tuple[ImportRecord, bool]:
    """Record a received file as an import waiting to be checked; the worker takes it from here.

    Returns (import, created). A second POST of the same rendered form (same `submission_token`)
    returns the first import and `created=False`; the caller then deletes its copy of the file."""
    now = timezone.now()
    if submission_token:
        existing = ImportRecord.objects.filter(submission_token=submission_token).first()
        if existing is not None:
            return existing, False
    # Stored before it is recorded: a worker on any host may claim the import as soon as it exists.
    # Raises OSError (NotStored) when the object store cannot take it; nothing is recorded then.
    file_store.push(upload.path)
    recorded = file_store.name(upload.path.parent)
    try:
        with transaction.atomic():
            record = ImportRecord.objects.create(
                user=user,
                project_key=project,
                environment_key=environment,
                segment_key=segment,
                original_filename=upload.original_name[:255],
                size_bytes=upload.size,
                sha256=upload.sha256,
                mode=mode,
                wait_on_approvals=wait_on_approvals,
                has_header=has_header,
                # A replace or a remove is never sent straight from an upload: it waits, as a draft,
                # for a person to confirm its impact preview.
                send_when_valid=send and mode not in ImportRecord.DESTRUCTIVE_MODES,
                status=ImportStatus.VALIDATING,
                storage_dir=recorded,
                submission_token=submission_token,
                next_attempt_at=now,
            )
            what = "to check and send" if send else "to check (it will be kept as a draft)"
            ImportEvent.objects.create(
                record=record,
                status=ImportStatus.VALIDATING,
                message=f"Received {upload.original_name} ({upload.size:,} bytes) {what}.",
                actor=user,
                action=ImportEvent.Action.UPLOADED,
            )
    except IntegrityError:
        existing = ImportRecord.objects.filter(submission_token=submission_token).first()
        if existing is None:
            raise
        if file_store.is_shared():  # the first POST's file is the import's: this copy is no one's
            file_store.delete_folder(recorded)
        return existing, False
    if file_store.is_shared():
        shutil.rmtree(upload.path.parent, ignore_errors=True)  # stored: this host needs no copy
    transaction.on_commit(wakeup.notify)  # an idle worker starts checking it now (REDIS_URL)
    return record, True
