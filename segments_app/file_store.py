"""Where import files live — uploads, parts, problem lists, member snapshots, lookups — so that every
web process and worker can reach them, on one host or many.

One interface, two backends, chosen by IMPORT_STORAGE_URL:

- empty (the default): the local folder IMPORT_STORAGE_DIR *is* the store. Files are written and read
  where they lie; `push` and `pull` do nothing. Several hosts need that folder shared.
- `s3://bucket/prefix?endpoint=…&region=…`: S3-compatible object storage (django-storages' S3Storage
  over boto3). IMPORT_STORAGE_DIR is then only this host's private working folder: a web process writes
  an upload there and pushes it (a multipart upload, in bounded chunks); a worker pulls what a step
  reads into a workspace of its own, writes what it makes there, pushes it, and the workspace goes when
  the step ends. Nothing but the bucket (and the database) is shared between hosts.

Names: a file is recorded (ImportRecord.storage_dir, ImportPart.file_path, MemberSnapshot.file_path)
under `name(path)`: its path with the local backend (as it always was), its key below the prefix with
object storage. `local_path(name)` gives where it is (or would be pulled to) on this host for both.
Code that reads or writes the files works on local paths and says when they must travel (`pull`,
`push`); code that only serves a file to a person streams it (`open_binary`), so a web process never
needs a copy on its disk.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit

from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from storages.backends.s3 import S3Storage

logger = logging.getLogger(__name__)

# Multipart transfers: a file moves in parts of this size, a few at a time, so a process holds at most
# CHUNK_BYTES * TRANSFER_THREADS of it in memory whatever its size (3M keys or 30M).
CHUNK_BYTES = 8 * 1024 * 1024
TRANSFER_THREADS = 4
# Workspaces of steps on this host live here, below IMPORT_STORAGE_DIR (never mistaken for an upload).
WORKSPACES = ".work"

_current = threading.local()


class NotStored(OSError):
    """The object store could not be reached, or refused: what was asked did not happen. An OSError,
    so every place that tells a person "the file could not be saved/read" says so for this too."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EIO, message)


@dataclass(frozen=True)
class Bucket:
    """Where IMPORT_STORAGE_URL points: a bucket, a prefix inside it, the endpoint of its service."""

    name: str
    prefix: str
    endpoint: str | None
    region: str | None

    @classmethod
    def parse(cls, url: str) -> Bucket:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ImproperlyConfigured(
                "IMPORT_STORAGE_URL must look like s3://bucket/prefix?endpoint=https://…&region=…"
            )
        query = parse_qs(parts.query)
        return cls(
            name=parts.netloc,
            prefix=parts.path.strip("/"),
            endpoint=(query.get("endpoint") or [None])[0],
            region=(query.get("region") or [None])[0],
        )

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def name_of(self, key: str) -> str:
        return key[len(self.prefix) + 1 :] if self.prefix else key


def is_shared() -> bool:
    """Whether files live in object storage (True) or in the local folder (False)."""
    return bool(settings.IMPORT_STORAGE_URL)


def root() -> Path:
    """This host's folder for the files: the step's workspace when one is open, else IMPORT_STORAGE_DIR."""
    workspace = getattr(_current, "workspace", None)
    return workspace if workspace is not None else Path(settings.IMPORT_STORAGE_DIR)


def local_path(name: str) -> Path:
    """Where a recorded file is, or is pulled to, on this host (an absolute name stays as it is)."""
    return root() / name


def name(path: Path) -> str:
    """What a file is recorded under: its path in a local folder, its key (below the prefix) in a bucket."""
    if not is_shared():
        return str(path)
    return PurePosixPath(Path(path).relative_to(root())).as_posix()


def child(folder: str, filename: str) -> str:
    """The recorded name of a file in a recorded folder (a path or a key: both join with "/")."""
    return f"{folder}/{filename}"


@contextlib.contextmanager
def scratch(folder: str) -> Iterator[Path]:
    """A temporary folder for a comparison's spill files, inside an import's folder on this host (on
    the disk its files are on), removed after."""
    place = local_path(folder) if folder else root()
    place.mkdir(mode=0o700, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=place) as made:
        yield Path(made)


@contextlib.contextmanager
def workspace() -> Iterator[Path]:
    """A private local folder for one step of one job, removed when the step ends (object storage);
    with the local backend the folder itself is the store and nothing changes."""
    if not is_shared() or getattr(_current, "workspace", None) is not None:
        yield root()
        return
    folder = Path(settings.IMPORT_STORAGE_DIR) / WORKSPACES / uuid.uuid4().hex
    folder.mkdir(mode=0o700, parents=True)
    _current.workspace = folder
    try:
        yield folder
    finally:
        _current.workspace = None
        shutil.rmtree(folder, ignore_errors=True)


# --- moving files between this host and the store --------------------------------------------------


def push(path: Path, *, keep_local: bool = True) -> None:
    """Send a file this host wrote (or every file in a folder) to the store. `keep_local=False` drops
    the local copy once it is stored (a web process has no further use for an upload's bytes)."""
    if not is_shared():
        return
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        _call(lambda file=file: _storage().bucket.upload_file(str(file), _key(file), Config=_transfer()))
    if not keep_local:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def pull(recorded: str) -> Path:
    """This host's copy of a recorded file, fetched from the store when it is not here yet. Raises
    FileNotFoundError when the store has no such file."""
    path = local_path(recorded)
    if not is_shared() or path.is_file():
        return path
    _download(_bucket().key(recorded), path)
    return path


def pull_folder(folder: str, prefix: str = "") -> list[Path]:
    """This host's copies of the files in a recorded folder whose names start with `prefix`, sorted."""
    local = local_path(folder)
    if not is_shared():
        return sorted(p for p in local.glob(f"{prefix}*") if p.is_file()) if local.is_dir() else []
    paths = []
    for key in _keys(f"{folder}/{prefix}"):
        relative = _bucket().name_of(key)[len(folder) + 1 :]
        if "/" in relative:  # only the folder's own files, as a glob would give
            continue
        path = local / relative
        if not path.is_file():
            _download(key, path)
        paths.append(path)
    return sorted(paths)


# --- reading and deleting in place -------------------------------------------------------------------


def exists(recorded: str) -> bool:
    if not recorded:
        return False
    if not is_shared():
        return local_path(recorded).is_file()
    return _call(lambda: _storage().exists(_bucket().key(recorded)))


def open_binary(recorded: str) -> IO[bytes]:
    """The file's bytes as a stream, read from the store as they are consumed (a download to a person,
    a scan for keys): never whole in memory, never a copy on this host's disk. Raises FileNotFoundError."""
    if not is_shared():
        return local_path(recorded).open("rb")
    try:
        body = _call(lambda: _storage().bucket.Object(_bucket().key(recorded)).get()["Body"])
    except NotStored as exc:
        if "NoSuchKey" in str(exc) or "404" in str(exc):
            raise FileNotFoundError(errno.ENOENT, "Not in the store", recorded) from None
        raise
    return io.BufferedReader(_Body(body), CHUNK_BYTES // 8)


def open_text(recorded: str) -> IO[str]:
    return io.TextIOWrapper(open_binary(recorded), encoding="utf-8", newline="")


def size(recorded: str) -> int:
    if not is_shared():
        return local_path(recorded).stat().st_size
    return _call(lambda: _storage().size(_bucket().key(recorded)))


def delete(recorded: str) -> None:
    """Delete one file, here and in the store. Missing is fine: deleting is what was wanted."""
    if not recorded:
        return
    local_path(recorded).unlink(missing_ok=True)
    if is_shared():
        _call(lambda: _storage().delete(_bucket().key(recorded)))


def discard(recorded: str) -> None:
    """`delete` for clean-up after a failure: it never raises over the failure being handled. What it
    could not delete, the housekeeping's sweep of folders no import points at removes later."""
    try:
        delete(recorded)
    except OSError:
        logger.warning("Could not delete %s after a failure; the housekeeping will", recorded)


def delete_folder(folder: str, *, keep: Iterable[str] = (), prefix: str = "") -> None:
    """Delete a recorded folder's files whose names start with `prefix`, but for the names in `keep`;
    the folder itself too when nothing is kept and no prefix narrows it. Here and in the store."""
    if not folder:
        return
    kept = set(keep)
    local = local_path(folder)
    if local.is_dir():
        if not kept and not prefix:
            shutil.rmtree(local, ignore_errors=True)
        else:
            for path in local.iterdir():
                if path.name in kept or not path.name.startswith(prefix):
                    continue
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
    if is_shared():
        doomed = [
            key
            for key in _keys(f"{folder}/{prefix}")
            if _bucket().name_of(key)[len(folder) + 1 :].split("/")[0] not in kept
        ]
        for start in range(0, len(doomed), 1000):  # S3 deletes at most 1,000 keys a request
            batch = [{"Key": key} for key in doomed[start : start + 1000]]
            _call(lambda batch=batch: _storage().bucket.delete_objects(Delete={"Objects": batch}))


def folders() -> Iterator[tuple[str, float]]:
    """Each top-level folder of the store with when anything in it last changed (a Unix time), for
    the housekeeping that removes what no import points at."""
    if not is_shared():
        top = Path(settings.IMPORT_STORAGE_DIR)
        if not top.is_dir():
            return
        for folder in top.iterdir():
            if folder.is_dir() and not folder.is_symlink():
                with contextlib.suppress(OSError):  # removed meanwhile
                    yield folder.name, changed(folder)
        return
    newest: dict[str, float] = {}
    for summary in _call(lambda: list(_storage().bucket.objects.filter(Prefix=_bucket().key("")))):
        relative = _bucket().name_of(summary.key)
        if "/" in relative:
            top = relative.split("/")[0]
            newest[top] = max(newest.get(top, 0.0), summary.last_modified.timestamp())
    yield from newest.items()


def files_in(folder: str) -> list[tuple[str, float]]:
    """The recorded names of the files in a top-level folder (e.g. "lookups"), with when each last
    changed (a Unix time)."""
    if not is_shared():
        local = Path(settings.IMPORT_STORAGE_DIR) / folder
        found = []
        for path in local.iterdir() if local.is_dir() else ():
            with contextlib.suppress(OSError):  # removed meanwhile
                if path.is_file():
                    found.append((str(path), path.stat().st_mtime))
        return found
    bucket = _bucket()
    summaries = _call(lambda: list(_storage().bucket.objects.filter(Prefix=bucket.key(f"{folder}/"))))
    return [(bucket.name_of(summary.key), summary.last_modified.timestamp()) for summary in summaries]


# --- the object store ----------------------------------------------------------------------------


def changed(folder: Path) -> float:
    """When anything in the folder last changed: its own time moves only when a file is added or
    removed, a file's time with every block written."""
    newest = folder.stat().st_mtime
    for path in folder.iterdir():
        with contextlib.suppress(OSError):
            newest = max(newest, path.lstat().st_mtime)
    return newest


def _bucket() -> Bucket:
    return _parsed(settings.IMPORT_STORAGE_URL)


@lru_cache(maxsize=4)
def _parsed(url: str) -> Bucket:
    return Bucket.parse(url)


def _storage() -> S3Storage:
    return _storage_for(settings.IMPORT_STORAGE_URL)


@lru_cache(maxsize=4)
def _storage_for(url: str) -> S3Storage:
    """django-storages' S3Storage for the bucket (one per URL and process: boto3's session is costly).
    Credentials come from IMPORT_STORAGE_ACCESS_KEY_ID / IMPORT_STORAGE_SECRET_ACCESS_KEY, else from
    boto3's own chain (AWS_* variables, an instance role)."""
    bucket = Bucket.parse(url)
    options: dict[str, Any] = {
        "bucket_name": bucket.name,
        "endpoint_url": bucket.endpoint,
        "region_name": bucket.region,
        "file_overwrite": True,
        "transfer_config": _transfer(),
        "max_memory_size": CHUNK_BYTES,
        "client_config": Config(
            # A service of one's own (MinIO, Ceph, R2…) at an address of its own: buckets in the path,
            # which every S3-compatible service understands; AWS's own endpoints choose for themselves.
            s3={"addressing_style": "path" if bucket.endpoint else None},
            # A store that does not answer is said within seconds (a person waits on an upload's page).
            connect_timeout=5,
            read_timeout=60,
            retries={"max_attempts": 3, "mode": "standard"},
        ),
    }
    if settings.IMPORT_STORAGE_ACCESS_KEY_ID:
        options["access_key"] = settings.IMPORT_STORAGE_ACCESS_KEY_ID
        options["secret_key"] = settings.IMPORT_STORAGE_SECRET_ACCESS_KEY
    return S3Storage(**options)


@lru_cache(maxsize=1)
def _transfer() -> TransferConfig:
    return TransferConfig(
        multipart_threshold=CHUNK_BYTES,
        multipart_chunksize=CHUNK_BYTES,
        max_concurrency=TRANSFER_THREADS,
        io_chunksize=256 * 1024,
    )


def _key(path: Path) -> str:
    return _bucket().key(name(path))


def _keys(prefix: str) -> list[str]:
    bucket = _bucket()
    return _call(
        lambda: [summary.key for summary in _storage().bucket.objects.filter(Prefix=bucket.key(prefix))]
    )


def _download(key: str, path: Path) -> None:
    """Fetch an object to `path`, whole or not at all (a partial copy is never taken for the file)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    try:
        _call(lambda: _storage().bucket.download_file(key, str(partial), Config=_transfer()))
        partial.replace(path)
    except NotStored as exc:
        partial.unlink(missing_ok=True)
        if "404" in str(exc) or "NoSuchKey" in str(exc) or "Not Found" in str(exc):
            raise FileNotFoundError(errno.ENOENT, "Not in the store", key) from None
        raise
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _call(action: Any) -> Any:
    """Run one call to the object store; its failures become NotStored, naming the fault but never the
    credentials (botocore's messages carry neither key)."""
    started = time.monotonic()
    try:
        return action()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise NotStored(f"The object store refused: {code or exc}") from None
    except BotoCoreError as exc:
        logger.warning("The object store did not answer (%.1f s): %s", time.monotonic() - started, exc)
        raise NotStored(f"The object store could not be reached ({type(exc).__name__})") from None


class _Body(io.RawIOBase):
    """boto3's streaming body as a raw stream, so io's buffered and text readers can sit on it."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._body.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._body.close()
        super().close()
