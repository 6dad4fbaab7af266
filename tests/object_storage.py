"""A real S3-compatible server for the object-storage tests (IMPORT_STORAGE_URL=s3://…), as a pytest plugin.

`s3_endpoint` (session): the server's URL. CI (`.ci/run`) starts `moto_server` once and sets S3_TEST_URL;
without it the tests start moto's server themselves (the `moto[server]` test dependency) on a free port
for the session. When there is no server to be had, a test that needs one is skipped with the reason
elsewhere and fails in CI, as for PostgreSQL and Redis (README).

`s3_bucket` (each test): a fresh, empty bucket of its own there, and the IMPORT_STORAGE_* environment
that points the product at it; emptied and deleted afterwards. Tests that use it are marked `s3`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

import pytest

ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"
REGION = "us-east-1"
PREFIX = "imports"
# moto's server starts in about a second here; a cold start on a busy two-core machine takes longer.
START_SECONDS = 30.0


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(reason: str) -> NoReturn:
    """No server to be had: a skip with the reason, except in CI, which must run these tests."""
    if in_ci():
        pytest.fail(f"CI must run the object-storage (s3) tests, but {reason}")
    pytest.skip(reason)


def client(endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
        # Fail fast while waiting for a server that is still starting; path-style, as local servers need.
        config=Config(
            connect_timeout=2,
            read_timeout=30,
            retries={"max_attempts": 1},
            s3={"addressing_style": "path"},
        ),
    )


def answers(endpoint: str) -> str | None:
    """None when an S3 server answers ListBuckets at `endpoint`, else why not."""
    import botocore.exceptions

    try:
        client(endpoint).list_buckets()
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of an S3-compatible server: S3_TEST_URL, else a moto_server started for this session."""
    given = os.environ.get("S3_TEST_URL", "").strip()
    if given:
        problem = answers(given)
        if problem:
            unavailable(f"no S3-compatible server answers at S3_TEST_URL={given}: {problem}")
        yield given
        return

    executable = Path(sys.executable).parent / "moto_server"
    if not executable.exists():
        unavailable(
            f"no S3-compatible server: S3_TEST_URL is not set and {executable} is missing "
            "(make install-test installs moto[server])"
        )
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("moto-server") / "moto_server.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [str(executable), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_SECONDS
        while (problem := answers(endpoint)) is not None:
            code = server.poll()
            log_text = log_path.read_text(errors="replace")[-3000:]
            # It started, so it should answer: whatever stops it is a fault to see, in CI or not.
            assert code is None, f"moto_server exited with status {code} before answering:\n{log_text}"
            assert time.monotonic() < deadline, (
                f"moto_server did not answer at {endpoint} within {START_SECONDS:.0f} s ({problem}):\n{log_text}"
            )
            time.sleep(0.1)
        yield endpoint
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


@dataclass
class Bucket:
    """A fresh bucket on the test server, and how the product is pointed at it."""

    endpoint: str
    name: str
    prefix: str = PREFIX
    s3: Any = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """IMPORT_STORAGE_URL for this bucket (README: s3://<bucket>[/<prefix>]?endpoint=…&region=…)."""
        return f"s3://{self.name}/{self.prefix}?endpoint={quote(self.endpoint, safe='')}&region={REGION}"

    @property
    def env(self) -> dict[str, str]:
        """The environment of a process that keeps its import files in this bucket."""
        return {
            "IMPORT_STORAGE_URL": self.url,
            "IMPORT_STORAGE_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "IMPORT_STORAGE_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        }

    def keys(self) -> list[str]:
        """Every object key in the bucket, sorted."""
        found: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.name):
            found.extend(item["Key"] for item in page.get("Contents", []))
        return sorted(found)

    def remove(self) -> None:
        """Abort unfinished multipart uploads, delete every object, then the bucket."""
        uploads = self.s3.list_multipart_uploads(Bucket=self.name).get("Uploads", [])
        for upload in uploads:
            with contextlib.suppress(self.s3.exceptions.ClientError):
                self.s3.abort_multipart_upload(
                    Bucket=self.name, Key=upload["Key"], UploadId=upload["UploadId"]
                )
        keys = self.keys()
        for start in range(0, len(keys), 1000):
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            self.s3.delete_objects(Bucket=self.name, Delete={"Objects": batch, "Quiet": True})
        self.s3.delete_bucket(Bucket=self.name)


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> Iterator[Bucket]:
    """A new, empty bucket for this test alone (the product expects its bucket to exist already)."""
    bucket = Bucket(s3_endpoint, f"test-{uuid.uuid4().hex[:24]}", s3=client(s3_endpoint))
    bucket.s3.create_bucket(Bucket=bucket.name)  # us-east-1: no LocationConstraint
    yield bucket
    bucket.remove()
