"""Streaming validation and normalisation of key files: every rule, with exact counts."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from segments_app.imports.validation import HashSet64, Limits, key_hash, looks_like_header, normalise_csv

LIMITS = Limits()


def run(tmp_path: Path, content: bytes, *, has_header: bool = False, limits: Limits = LIMITS) -> Any:
    source = tmp_path / "upload.csv"
    source.write_bytes(content)
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    return normalise_csv(source, out, has_header=has_header, limits=limits)


def output(report: Any) -> bytes:
    return b"".join(Path(part.path).read_bytes() for part in report.parts)


COUNTS = ("rows_read", "keys_accepted", "duplicates", "blank_rows", "trimmed_keys", "header_skipped",
          "extra_columns_rows")  # fmt: skip


@pytest.mark.parametrize(
    ("name", "content", "has_header", "counts", "normalised"),
    [
        ("LF", b"a\nb\nc\n", False, (3, 3, 0, 0, 0, False, 0), b"a\nb\nc\n"),
        ("CRLF", b"a\r\nb\r\nc\r\n", False, (3, 3, 0, 0, 0, False, 0), b"a\nb\nc\n"),
        ("CR", b"a\rb\rc", False, (3, 3, 0, 0, 0, False, 0), b"a\nb\nc\n"),
        (
            "mixed line ends, no final newline",
            b"a\r\nb\rc\nd",
            False,
            (4, 4, 0, 0, 0, False, 0),
            b"a\nb\nc\nd\n",
        ),
        ("BOM", b"\xef\xbb\xbfa\nb\n", False, (2, 2, 0, 0, 0, False, 0), b"a\nb\n"),
        (
            "quoted keys with commas and quotes",
            b'"a,b",x\n"c""d"\n"e"\n',
            False,
            (3, 3, 0, 0, 0, False, 1),
            b'"a,b"\n"c""d"\ne\n',
        ),
        ("extra columns ignored", b"a,1,2\nb,3\nc\n", False, (3, 3, 0, 0, 0, False, 2), b"a\nb\nc\n"),
        (
            "header flagged",
            b"email,name\na@x.test,A\nb@x.test,B\n",
            True,
            (3, 2, 0, 0, 0, True, 2),
            b"a@x.test\nb@x.test\n",
        ),
        ("header after blank lines", b"\n\nkey\nk1\n", True, (4, 1, 0, 2, 0, True, 0), b"k1\n"),
        ("duplicates", b"a\nb\na\n a \nb\n", False, (5, 2, 3, 0, 1, False, 0), b"a\nb\n"),
        ("blanks", b"a\n\n\n  \nb\n,x\n", False, (6, 2, 0, 4, 0, False, 0), b"a\nb\n"),
        ("whitespace trimmed", b"  a  \n\tb\nc \n", False, (3, 3, 0, 0, 3, False, 0), b"a\nb\nc\n"),
        ("unicode keys", "ü-1\n日本\n".encode(), False, (2, 2, 0, 0, 0, False, 0), "ü-1\n日本\n".encode()),
        (
            "quoted newline inside a field of another column",
            b'a,"x\ny"\nb\n',
            False,
            (2, 2, 0, 0, 0, False, 1),
            b"a\nb\n",
        ),
    ],
)
def test_valid_files(
    tmp_path: Path, name: str, content: bytes, has_header: bool, counts: tuple, normalised: bytes
) -> None:
    report = run(tmp_path, content, has_header=has_header)
    assert report.ok, report.problems
    assert tuple(getattr(report, field) for field in COUNTS) == counts
    assert output(report) == normalised
    assert report.normalised_bytes == len(normalised)


@pytest.mark.parametrize(
    ("name", "content", "problems", "problem_count"),
    [
        ("empty", b"", [(None, "The file is empty.")], 1),
        (
            "only blanks",
            b"\n \n\r\n",
            [(None, "The file has no context keys: every row is blank or a header.")],
            1,
        ),
        (
            "invalid UTF-8",
            b"a\nb\xff\nc\n\xc3\n",
            [
                (2, "Line 2 is not valid UTF-8 text (save the file as UTF-8)."),
                (4, "Line 4 is not valid UTF-8 text (save the file as UTF-8)."),
            ],
            2,
        ),
        (
            "latin-1 file",
            "a\nJosé\n".encode("latin-1"),
            [(2, "Line 2 is not valid UTF-8 text (save the file as UTF-8).")],
            1,
        ),
        (
            "control character",
            b'ok\n"a\tb"\n',
            [
                (
                    2,
                    "Line 2 contains a control character (for example a tab, line break or NUL) inside the key.",
                )
            ],
            1,
        ),
        (
            "line break inside a quoted key",
            b'ok\n"a\nb"\n',
            [
                (
                    3,
                    "Line 3 contains a control character (for example a tab, line break or NUL) inside the key.",
                )
            ],
            1,
        ),
    ],
)
def test_invalid_files(tmp_path: Path, name: str, content: bytes, problems: list, problem_count: int) -> None:
    report = run(tmp_path, content)
    assert not report.ok
    assert [(p.line, p.message) for p in report.problems] == problems
    assert report.problem_count == problem_count
    assert report.parts == []
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize(
    "content", [b"PK\x03\x04\x14\x00\x06\x00binary-xlsx", b"a\nb\x00c\n", b"%PDF-1.7\n", b"\x89PNG\r\n\x1a\n"]
)
def test_binary_files_are_refused(tmp_path: Path, content: bytes) -> None:
    report = run(tmp_path, content)
    assert not report.ok
    assert report.problem_count == 1
    assert report.problems[0].message.startswith("This is not a CSV text file: it looks like binary data")
    assert report.rows_read == 0


def test_key_longer_than_the_limit(tmp_path: Path) -> None:
    report = run(tmp_path, b"short\n" + b"x" * 6 + b"\n", limits=Limits(max_key_length=5))
    assert [(p.line, p.message) for p in report.problems] == [
        (2, "Line 2 has a key of 6 characters; the limit is 5.")
    ]


def test_only_the_first_problems_are_listed_but_all_are_counted(tmp_path: Path) -> None:
    content = b"".join(b"bad\xff\n" for _ in range(30))
    report = run(tmp_path, content, limits=Limits(max_problems=20))
    assert report.problem_count == 30
    assert len(report.problems) == 20
    assert report.problems[-1].line == 20


def test_report_without_output_dir_is_a_dry_run(tmp_path: Path) -> None:
    source = tmp_path / "upload.csv"
    source.write_bytes(b"a\nb\na\n")
    report = normalise_csv(source, None, has_header=False, limits=LIMITS)
    assert (report.keys_accepted, report.duplicates, report.parts) == (2, 1, [])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["upload.csv"]


def test_header_suspected_when_not_flagged(tmp_path: Path) -> None:
    report = run(tmp_path, b"user_key\nu1\n")
    assert report.header_suspected == "user_key"
    assert report.keys_accepted == 2


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("email", True),
        (" Key ", True),
        ('"user_id"', True),
        ("user-123", False),
        ("alice@example.com", False),
    ],
)
def test_looks_like_header(cell: str, expected: bool) -> None:
    assert looks_like_header(cell) is expected


def test_parts_split_by_key_count(tmp_path: Path) -> None:
    report = run(tmp_path, b"a\nb\nc\nd\ne\n", limits=Limits(max_keys_per_part=2))
    assert [p.key_count for p in report.parts] == [2, 2, 1]
    assert [Path(p.path).read_bytes() for p in report.parts] == [b"a\nb\n", b"c\nd\n", b"e\n"]


def test_parts_split_by_bytes(tmp_path: Path) -> None:
    report = run(tmp_path, b"aa\nbb\ncc\n", limits=Limits(max_bytes_per_part=6))
    assert [(p.key_count, p.size_bytes) for p in report.parts] == [(2, 6), (1, 3)]


def test_duplicates_across_parts_are_dropped(tmp_path: Path) -> None:
    report = run(tmp_path, b"a\nb\nc\na\nd\nb\n", limits=Limits(max_keys_per_part=2))
    assert report.duplicates == 2
    assert output(report) == b"a\nb\nc\nd\n"


def test_sample_keys_are_the_first_five(tmp_path: Path) -> None:
    report = run(tmp_path, b"".join(f"k{i}\n".encode() for i in range(10)))
    assert report.sample_keys == ["k0", "k1", "k2", "k3", "k4"]


def test_hash_set_grows_and_finds_every_duplicate() -> None:
    rng = random.Random(3)
    values = list({rng.getrandbits(64) | 2 for _ in range(200_000)})
    seen = HashSet64(capacity=16)
    assert all(seen.add(v) for v in values)
    assert not any(seen.add(v) for v in values[::1000])
    assert len(seen) == len(values)
    assert seen.add(0) is True  # 0 is stored as 1, never confused with an empty slot
    assert seen.add(1) is False


def test_key_hash_is_stable_64_bit() -> None:
    assert key_hash("user-1") == key_hash("user-1")
    assert key_hash("user-1") != key_hash("user-2")
    assert 0 <= key_hash("x") < 2**64
