"""The object-storage tests' own server (tests/object_storage.py) is a real S3 server: a multipart upload
through boto3 arrives whole, as a multipart object, and reads back byte for byte."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from boto3.s3.transfer import TransferConfig

from tests.object_storage import Bucket

pytestmark = pytest.mark.s3
MB = 1024 * 1024


def test_a_multipart_upload_round_trips(s3_bucket: Bucket, tmp_path: Path) -> None:
    source = tmp_path / "upload.csv"
    with source.open("wb") as out:
        for _ in range(20):
            out.write(os.urandom(MB))
    key = f"{s3_bucket.prefix}/0123/upload.csv"
    eight_mb = TransferConfig(multipart_threshold=8 * MB, multipart_chunksize=8 * MB)

    s3_bucket.s3.upload_file(str(source), s3_bucket.name, key, Config=eight_mb)

    head = s3_bucket.s3.head_object(Bucket=s3_bucket.name, Key=key)
    assert head["ContentLength"] == 20 * MB
    # A multipart object's ETag is "<md5 of the parts' md5s>-<number of parts>": 8 + 8 + 4 MB.
    assert re.fullmatch(r'"[0-9a-f]{32}-3"', head["ETag"]), head["ETag"]
    copy = tmp_path / "copy.csv"
    s3_bucket.s3.download_file(s3_bucket.name, key, str(copy), Config=eight_mb)
    assert hashlib.sha256(copy.read_bytes()).digest() == hashlib.sha256(source.read_bytes()).digest()
    assert s3_bucket.keys() == [key]


def test_the_bucket_is_new_and_the_url_names_it(s3_bucket: Bucket) -> None:
    assert s3_bucket.keys() == []
    url = urlsplit(s3_bucket.env["IMPORT_STORAGE_URL"])
    query = parse_qs(url.query)
    assert (url.scheme, url.netloc, url.path) == ("s3", s3_bucket.name, f"/{s3_bucket.prefix}")
    assert query == {"endpoint": [s3_bucket.endpoint], "region": ["us-east-1"]}
    assert s3_bucket.env["IMPORT_STORAGE_ACCESS_KEY_ID"] == "testing"
