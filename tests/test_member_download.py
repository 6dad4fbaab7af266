"""“Download members (CSV)”: the members file reads back as exactly the keys LaunchDarkly holds (every key
that needs quoting is quoted), the spreadsheet copy makes formula-like keys text, the page says which is
for what, and both are streamed with memory flat."""

from __future__ import annotations

import csv
import html
import io
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from segments_app import snapshots
from segments_app.history import neutralise
from segments_app.models import MemberSnapshot

pytestmark = pytest.mark.django_db

MEMBERS = "/segments/shop/live/vip/members/"
# Keys a CSV writer must quote, keys a spreadsheet would run, and ordinary ones.
AWKWARD = [
    "plain-user",
    "carriage\rreturn",
    "line\nfeed",
    "crlf\r\ninside",
    "ends-with-cr\r",
    "\rstarts-with-cr",
    'say "hi"',
    '"',
    "comma,inside",
    ",",
    "  spaces around  ",
    " ",
    "tab\tinside",
    "\tstarts-with-tab",
    "=cmd|' /C calc'!A0",
    "+1+1",
    "-2",
    "@SUM(1,2)",
    "José 🎉",
    "trailing-quote'",
]


def snapshot_of(keys: list[str], tmp_path: Path, **fields: Any) -> MemberSnapshot:
    """A ready snapshot whose file is LaunchDarkly's export of `keys` (correct CSV, every cell quoted)."""
    path = Path(snapshots.snapshot_dir()) / f"{tmp_path.name}-members.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        csv.writer(out, quoting=csv.QUOTE_ALL).writerows([key] for key in keys)
    return MemberSnapshot.objects.create(
        project_key="shop",
        environment_key="live",
        segment_key="vip",
        status="ready",
        file_path=str(path),
        member_count=len(keys),
        size_bytes=path.stat().st_size,
        finished_at=timezone.now(),
        **fields,
    )


def read_back(body: bytes) -> list[str]:
    rows = list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))
    assert all(len(row) == 1 for row in rows), rows
    return [row[0] for row in rows]


def test_the_snapshot_file_holds_the_keys_it_should(tmp_path: Path) -> None:
    """The fixture itself: what iter_member_keys reads is AWKWARD, so the tests below start from it."""
    assert list(snapshots.iter_member_keys(snapshot_of(AWKWARD, tmp_path))) == AWKWARD


def test_the_members_file_reads_back_as_exactly_the_same_keys(logged_in: Any, tmp_path: Path) -> None:
    snapshot = snapshot_of(AWKWARD, tmp_path)
    response = logged_in.get(f"{MEMBERS}{snapshot.pk}.csv")
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="{snapshot.download_name}"'
    body = b"".join(response.streaming_content)
    assert read_back(body) == AWKWARD
    # Quoted only where CSV needs it, the key itself untouched; a bare CR would have split the row.
    lines = body.decode("utf-8")
    assert lines.startswith("plain-user\n")
    assert '"carriage\rreturn"\n' in lines
    assert '"ends-with-cr\r"\n' in lines
    assert '"say ""hi"""\n' in lines
    assert "\n  spaces around  \n" in lines
    assert "\n=cmd|' /C calc'!A0\n" in lines  # raw: exactly as LaunchDarkly stores it


def test_the_spreadsheet_copy_makes_formula_like_keys_text(logged_in: Any, tmp_path: Path) -> None:
    snapshot = snapshot_of(AWKWARD, tmp_path)
    response = logged_in.get(f"{MEMBERS}{snapshot.pk}-for-spreadsheets.csv")
    assert response.status_code == 200
    assert response.streaming
    stamp = snapshot.download_name.removesuffix(".csv")
    assert response["Content-Disposition"] == f'attachment; filename="{stamp}-for-spreadsheets.csv"'
    keys = read_back(b"".join(response.streaming_content))
    assert keys == [neutralise(key) for key in AWKWARD]
    changed = {key: shown for key, shown in zip(AWKWARD, keys, strict=True) if key != shown}
    assert changed == {
        "\rstarts-with-cr": "'\rstarts-with-cr",
        "\tstarts-with-tab": "'\tstarts-with-tab",
        "=cmd|' /C calc'!A0": "'=cmd|' /C calc'!A0",
        "+1+1": "'+1+1",
        "-2": "'-2",
        "@SUM(1,2)": "'@SUM(1,2)",
    }


def test_the_page_says_which_download_is_for_what(logged_in: Any, real_ld: Any, tmp_path: Path) -> None:
    real_ld.add_projects()
    snapshot = snapshot_of(["u-1", "u-2"], tmp_path)
    block = logged_in.get(MEMBERS, headers={"HX-Request": "true"})
    page = html.unescape(block.content.decode())
    assert "holds the keys exactly as LaunchDarkly stores them" in page
    assert "so it can be uploaded back into a segment unchanged" in page
    assert "to open the keys in Excel or Google Sheets, take the spreadsheet copy instead" in page
    assert "upload only the members file, never the spreadsheet copy" in page
    assert f'href="{MEMBERS}{snapshot.pk}.csv" download>Download members (CSV)</a>' in page
    spreadsheet = (
        f'href="{MEMBERS}{snapshot.pk}-for-spreadsheets.csv" download>Download for a spreadsheet (CSV)'
    )
    assert spreadsheet in page


@pytest.mark.parametrize("suffix", [".csv", "-for-spreadsheets.csv"])
def test_a_deleted_file_is_not_found_either_way(logged_in: Any, tmp_path: Path, suffix: str) -> None:
    snapshot = snapshot_of(["u-1"], tmp_path)
    Path(snapshot.file_path).unlink()
    assert logged_in.get(f"{MEMBERS}{snapshot.pk}{suffix}").status_code == 404
    assert logged_in.get(f"/segments/shop/live/other/members/{snapshot.pk}{suffix}").status_code == 404


@pytest.mark.parametrize("suffix", [".csv", "-for-spreadsheets.csv"])
def test_both_downloads_stream_with_memory_flat(logged_in: Any, tmp_path: Path, suffix: str) -> None:
    """300,000 members (about 7 MB): the download is sent in blocks, and memory never holds more than a
    few of them — not the file, not the list of keys."""
    keys = [f"=user-{n:08d}@example.com" for n in range(300_000)]
    snapshot = snapshot_of(keys, tmp_path)
    size = Path(snapshot.file_path).stat().st_size
    assert size > 7_000_000
    response = logged_in.get(f"{MEMBERS}{snapshot.pk}{suffix}")
    tracemalloc.start()
    try:
        blocks = 0
        count = 0
        for block in response.streaming_content:
            blocks += 1
            assert len(block) < 2 * snapshots.DOWNLOAD_BLOCK_BYTES
            count += block.count(b"\n")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        response.close()
    assert count == len(keys)
    assert blocks > 50
    assert peak < 1_000_000, f"peak {peak:,} bytes while streaming a {size:,}-byte file"


def test_closing_the_download_early_closes_the_file(logged_in: Any, tmp_path: Path, monkeypatch: Any) -> None:
    opened: list[Any] = []
    real_open = snapshots.open_members

    def recording(snapshot: MemberSnapshot) -> Any:
        opened.append(real_open(snapshot))
        return opened[-1]

    monkeypatch.setattr(snapshots, "open_members", recording)
    snapshot = snapshot_of([f"user-{n}" for n in range(100_000)], tmp_path)
    response = logged_in.get(f"{MEMBERS}{snapshot.pk}.csv")
    next(iter(response.streaming_content))
    assert not opened[0].closed
    response.close()  # the browser went away
    assert opened[0].closed
