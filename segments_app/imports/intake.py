"""Receiving an upload: streamed straight into the import's own folder, hashed on the way, refused
early when too large, and recorded at once. Nothing here reads the file: the worker checks it.

Writing into the import's folder (not a temporary file moved later) keeps the time between the last
byte and the answer independent of the file's size: there is no copy.
"""

from __future__ import annotations

import hashlib
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

from segments_app.models import ImportEvent, ImportRecord, ImportStatus

UPLOAD_NAME = "upload.csv"


@dataclass(frozen=True)
class ReceivedFile:
    """An upload as it landed on disk, in a folder of its own that the import takes over."""

    path: Path
    original_name: str
    size: int
    sha256: str


def new_upload_path() -> Path:
    folder = Path(settings.IMPORT_STORAGE_DIR) / uuid.uuid4().hex
    folder.mkdir(parents=True)
    return folder / UPLOAD_NAME


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

    Past `IMPORT_MAX_UPLOAD_BYTES` it stops reading and sets `too_large`, so the view can say so.
    Whatever the request's outcome, `discard_unclaimed()` removes a file no import took over.
    """

    def __init__(self, request: HttpRequest | None = None) -> None:
        super().__init__(request)
        self.max_bytes: int = settings.IMPORT_MAX_UPLOAD_BYTES
        self.too_large = False
        self.received = 0
        self.upload: ReceivedUpload | None = None
        self.claimed = False

    def handle_raw_input(
        self, input_data: Any, META: Any, content_length: int, boundary: Any, encoding: str | None = None
    ) -> None:
        # The whole request is larger than the limit allows: refuse before reading any of the file.
        if content_length and content_length > self.max_bytes + 64 * 1024:
            self.too_large = True

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        if self.too_large:
            raise StopUpload(connection_reset=False)
        self.discard_unclaimed()  # a second file field in one form: keep only the last
        self.upload = ReceivedUpload(new_upload_path(), self.file_name, self.content_type, self.charset)
        self.sha256 = hashlib.sha256()
        self.received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        assert self.upload is not None
        self.received += len(raw_data)
        if self.received > self.max_bytes:
            self.too_large = True
            self.discard_unclaimed()
            raise StopUpload(connection_reset=False)
        self.sha256.update(raw_data)
        self.upload.write(raw_data)
        return None

    def file_complete(self, file_size: int) -> ReceivedUpload | None:
        if self.upload is None:
            return None
        self.upload.flush()
        self.upload.seek(0)
        self.upload.size = file_size
        self.upload.sha256 = self.sha256.hexdigest()
        return self.upload

    def upload_complete(self) -> None:
        if self.upload is not None:
            self.upload.file.close()

    def discard_unclaimed(self) -> None:
        """Delete the received file and its folder unless an import has taken them over."""
        if self.upload is not None and not self.claimed:
            self.upload.file.close()
            shutil.rmtree(self.upload.path.parent, ignore_errors=True)
            self.upload = None


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
                send_when_valid=send,
                status=ImportStatus.VALIDATING,
                storage_dir=str(upload.path.parent),
                submission_token=submission_token,
                next_attempt_at=now,
            )
            what = "to check and send" if send else "to check (it will be kept as a draft)"
            ImportEvent.objects.create(
                record=record,
                status=ImportStatus.VALIDATING,
                message=f"Received {upload.original_name} ({upload.size:,} bytes) {what}.",
            )
    except IntegrityError:
        existing = ImportRecord.objects.filter(submission_token=submission_token).first()
        if existing is None:
            raise
        return existing, False
    return record, True
