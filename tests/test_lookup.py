"""Looking keys up in a big segment: the list's rules, the exact membership calls, "last sent by" from
the imports' kept files, the CSV download, and who may."""

from __future__ import annotations

import csv
import html
import io
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from segments_app import lookup, lookup_job, snapshots
from segments_app.forms import LookupForm
from segments_app.models import ImportPart, ImportRecord, KeyLookup, LookupStatus
from segments_app.views import lookup as lookup_views
from tests import factories
from tests.factories import LOOKUP_PAGE, SEGMENT_PATH, membership
from tests.launchdarkly_answers import big_segment_json

pytestmark = pytest.mark.django_db

PAGE = LOOKUP_PAGE


def big_segment(real_ld: Any) -> None:
    """The lookup's segment: shop/live/vip, a big one of 2 members."""
    factories.big_segment(real_ld, included=2)


def listed(text: str) -> lookup.KeyList:
    form = LookupForm({"keys": text})
    assert form.is_valid(), form.errors
    return form.cleaned_data["listed"]


def parse(body: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body.decode())))


# --- the list --------------------------------------------------------------------------------------


def test_the_list_is_normalised_like_an_import() -> None:
    keys = listed('email\n  alice  \n\nbob\nalice\n"c,d"\n\n')
    assert keys.keys == ["alice", "bob", "c,d"]
    assert keys.duplicates == 1
    assert keys.blank_rows == 2
    assert keys.header_left_out == "email"


def test_ten_thousand_keys_are_taken_and_one_more_is_refused() -> None:
    from segments_app.forms import LookupForm

    assert len(listed("\n".join(f"k{n}" for n in range(10_000))).keys) == 10_000
    # Repeats do not count towards the limit.
    assert len(listed("\n".join(f"k{n % 10_000}" for n in range(10_500))).keys) == 10_000
    form = LookupForm({"keys": "\n".join(f"k{n}" for n in range(10_001))})
    assert not form.is_valid()
    assert form.errors["keys"] == [
        "The list has 10,001 different keys; at most 10,000 can be looked up at once. "
        "Split it, or look up the first part."
    ]


def test_a_row_that_is_no_key_is_refused_with_its_line() -> None:
    from segments_app.forms import LookupForm

    form = LookupForm({"keys": "a\nb\tc\n"})
    assert not form.is_valid()
    assert "Line 2 contains a control character" in form.errors["keys"][0]


def test_keys_come_from_an_uploaded_file_but_not_with_pasted_ones_too() -> None:
    from segments_app.forms import LookupForm

    upload = SimpleUploadedFile("keys.csv", b"alice,extra\nbob\n", content_type="text/csv")
    form = LookupForm({}, {"file": upload})
    assert form.is_valid(), form.errors
    assert form.cleaned_data["listed"].keys == ["alice", "bob"]
    both = LookupForm({"keys": "x"}, {"file": SimpleUploadedFile("k.csv", b"y\n")})
    assert not both.is_valid()
    assert both.non_field_errors() == ["Paste keys or choose a file, not both."]
    assert LookupForm({}).is_valid() is False


# --- membership, exactly ---------------------------------------------------------------------------


def test_each_key_is_asked_of_launchdarkly_exactly_once(real_ld: Any) -> None:
    membership(real_ld, "alice", True)
    membership(real_ld, "bob", False)
    membership(real_ld, "c/d e", True, quoted="c%2Fd%20e")
    ask = lookup.MembershipEndpoint("shop", "live", "vip", threads=2)
    assert ask(["alice", "bob", "c/d e", ".."]) == {"alice": True, "bob": False, "c/d e": True, "..": None}
    calls = sorted(call.request.url for call in real_ld.mock.calls)
    assert calls == [
        real_ld.url(f"{SEGMENT_PATH}/contexts/alice"),
        real_ld.url(f"{SEGMENT_PATH}/contexts/bob"),
        real_ld.url(f"{SEGMENT_PATH}/contexts/c%2Fd%20e"),
    ]
    for call in real_ld.mock.calls:
        assert call.request.method == "GET"
        assert call.request.headers["Authorization"] == real_ld.token


def test_a_429_is_waited_out_as_launchdarkly_asks(real_ld: Any) -> None:
    from segments_app.launchdarkly import ClientConfig, LaunchDarklyClient

    url = real_ld.url(f"{SEGMENT_PATH}/contexts/alice")
    real_ld.mock.get(
        url, status=429, headers={"Retry-After": "3"}, json={"code": "rate_limited", "message": "slow"}
    )
    real_ld.mock.get(url, json={"userKey": "alice", "included": True, "excluded": False})
    slept: list[float] = []
    config = ClientConfig(base_url=real_ld.base, token=real_ld.token, max_retries=2, backoff_base=0.0)

    def client() -> LaunchDarklyClient:
        return LaunchDarklyClient(config, sleep=slept.append)

    ask = lookup.MembershipEndpoint("shop", "live", "vip", threads=1, client_factory=client)
    assert ask(["alice"]) == {"alice": True}
    assert slept == [3.0]
    assert len(real_ld.calls_to(f"{SEGMENT_PATH}/contexts/alice")) == 2


def test_a_key_launchdarkly_has_never_seen_is_not_a_member(real_ld: Any) -> None:
    """The membership call answers 404 for a key that was never a target (the spec's one 404 body, for an
    unknown key or an unknown segment alike): the client asks for the segment, finds it, and the key is no
    member. One such key among many must not fail the whole lookup."""
    membership(real_ld, "alice", True)
    real_ld.mock.get(
        real_ld.url(f"{SEGMENT_PATH}/contexts/stranger"),
        status=404,
        json={"code": "not_found", "message": "Invalid resource identifier"},
    )
    real_ld.mock.get(real_ld.url(SEGMENT_PATH), json=big_segment_json(name="VIP", included=2))
    ask = lookup.MembershipEndpoint("shop", "live", "vip", threads=2)
    assert ask(["alice", "stranger"]) == {"alice": True, "stranger": False}
    assert len(real_ld.calls_to(f"{SEGMENT_PATH}/contexts/stranger")) == 1
    assert len(real_ld.calls_to(SEGMENT_PATH)) == 1


def test_a_segment_gone_is_not_read_as_not_a_member(real_ld: Any) -> None:
    """Deleted mid-lookup: the 404 is followed by a 404 for the segment itself, so the lookup stops with
    `SegmentMissing` instead of answering "not a member" for every key."""
    from segments_app.launchdarkly import SegmentMissing

    gone = {"code": "not_found", "message": "Invalid resource identifier"}
    real_ld.mock.get(real_ld.url(f"{SEGMENT_PATH}/contexts/a"), status=404, json=gone)
    real_ld.mock.get(real_ld.url(SEGMENT_PATH), status=404, json=gone)
    with pytest.raises(SegmentMissing):
        lookup.MembershipEndpoint("shop", "live", "vip", threads=1)(["a", "b"])
    assert [call.request.url for call in real_ld.mock.calls] == [
        real_ld.url(f"{SEGMENT_PATH}/contexts/a"),
        real_ld.url(SEGMENT_PATH),
    ]


def test_a_segment_deleted_before_the_lookup_is_said_on_the_form(logged_in: Any, real_ld: Any) -> None:
    real_ld.add_projects()
    gone = {"code": "not_found", "message": "Invalid resource identifier"}
    # The page finds the segment; by the time its keys are asked about, it is gone.
    real_ld.mock.get(real_ld.url(SEGMENT_PATH), json=big_segment_json(name="VIP", included=2))
    real_ld.mock.get(real_ld.url(SEGMENT_PATH), status=404, json=gone)
    real_ld.mock.get(real_ld.url(f"{SEGMENT_PATH}/contexts/alice"), status=404, json=gone)
    response = logged_in.post(PAGE, {"keys": "alice"})
    assert response.status_code == 200
    page = html.unescape(response.content.decode())
    assert "This segment is no longer in LaunchDarkly" in page
    assert "Nothing was looked up; try again." in page
    assert response.context["form"].non_field_errors()
    assert "?answer=" not in page


def test_an_upstream_failure_stops_the_lookup(real_ld: Any) -> None:
    from segments_app.launchdarkly import Unauthorized

    real_ld.mock.get(
        real_ld.url(f"{SEGMENT_PATH}/contexts/a"), status=401, json={"code": "unauthorized", "message": "no"}
    )
    with pytest.raises(Unauthorized):
        lookup.MembershipEndpoint("shop", "live", "vip", threads=1)(["a", "b"])
    # The first failure stops the rest: "b" was never asked.
    assert [call.request.url for call in real_ld.mock.calls] == [real_ld.url(f"{SEGMENT_PATH}/contexts/a")]


# --- last sent by ----------------------------------------------------------------------------------


def finished_import(
    user: Any, tmp_path: Path, name: str, parts: list[list[str]] | None, minutes_ago: int
) -> ImportRecord:
    """A completed import of shop/live/vip; `parts` None: its files are no longer kept."""
    folder = tmp_path / name
    record = ImportRecord.objects.create(
        user=user,
        project_key="shop",
        environment_key="live",
        segment_key="vip",
        original_filename=f"{name}.csv",
        size_bytes=10,
        sha256="0" * 64,
        mode="merge",
        status="complete",
        key_count=sum(map(len, parts or [])),
        part_count=len(parts or [[]]),
        finished_at=timezone.now() - timedelta(minutes=minutes_ago),
        storage_dir=str(folder) if parts is not None else "",
    )
    for number, keys in enumerate(parts or [[]], start=1):
        path = ""
        if parts is not None:
            folder.mkdir(exist_ok=True)
            part = folder / f"part-{number:03d}.csv"
            part.write_text("".join(f'"{k}"\n' if "," in k else f"{k}\n" for k in keys))
            path = str(part)
        ImportPart.objects.create(
            record=record, number=number, key_count=len(keys), size_bytes=10, mode="merge", file_path=path
        )
    return record


def test_the_most_recent_import_holding_a_key_is_named(user: Any, tmp_path: Path) -> None:
    newer = finished_import(user, tmp_path, "newer", [["a"], ["b,c"]], minutes_ago=1)
    older = finished_import(user, tmp_path, "older", [["a", "d"]], minutes_ago=5)
    found, complete, read = lookup.last_sent("shop", "live", "vip", ["a", "b,c", "d", "e"])
    assert {key: sent.record_id for key, sent in found.items()} == {
        "a": newer.pk,
        "b,c": newer.pk,
        "d": older.pk,
    }
    assert (complete, read) == (True, 2)


def test_a_key_last_removed_is_not_named_as_sent_by_the_remove_import(user: Any, tmp_path: Path) -> None:
    finished_import(user, tmp_path, "older", [["a", "b"]], minutes_ago=5)
    removal = finished_import(user, tmp_path, "removal", [["a"]], minutes_ago=1)
    ImportRecord.objects.filter(pk=removal.pk).update(mode=ImportRecord.Mode.REMOVE)
    found, complete, read = lookup.last_sent("shop", "live", "vip", ["a", "b"])
    # "a" was taken out last: no import sent it since, and the older one must not be named either.
    assert {key: sent.record_id for key, sent in found.items()} == {
        "b": ImportRecord.objects.get(original_filename="older.csv").pk
    }
    assert (complete, read) == (True, 2)


def test_an_import_whose_files_are_gone_ends_the_trail(user: Any, tmp_path: Path) -> None:
    newest = finished_import(user, tmp_path, "newest", [["a"]], minutes_ago=1)
    finished_import(user, tmp_path, "purged", None, minutes_ago=3)
    finished_import(user, tmp_path, "oldest", [["b"]], minutes_ago=5)
    found, complete, read = lookup.last_sent("shop", "live", "vip", ["a", "b"])
    # "b" is in the oldest import's files, but the purged one between may have sent it: unknown.
    assert {key: sent.record_id for key, sent in found.items()} == {"a": newest.pk}
    assert (complete, read) == (False, 1)


def test_at_most_the_newest_imports_are_read(user: Any, tmp_path: Path) -> None:
    for n in range(3):
        finished_import(user, tmp_path, f"i{n}", [[f"k{n}"]], minutes_ago=n)
    found, complete, read = lookup.last_sent("shop", "live", "vip", ["k0", "k1", "k2"], limit=2)
    assert sorted(found) == ["k0", "k1"]
    assert (complete, read) == (False, 2)


# --- the page and the download ---------------------------------------------------------------------


def test_the_page_answers_and_the_download_has_every_key(
    logged_in: Any, real_ld: Any, user: Any, tmp_path: Path
) -> None:
    big_segment(real_ld)
    membership(real_ld, "alice", True)
    membership(real_ld, "=1+1", False, quoted="%3D1%2B1")
    membership(real_ld, "bob", True)
    sent = finished_import(user, tmp_path, "crm", [["alice"]], minutes_ago=2)
    response = logged_in.post(PAGE, {"keys": "alice\n=1+1\nbob\nalice\n"}, follow=True)
    assert response.redirect_chain == [(f"{PAGE}?answer={response.context['token']}", 302)]
    page = response.content.decode()
    assert "<strong>2</strong> are members of VIP now" in page
    assert f"Import #{sent.pk}</a> · crm.csv" in page
    token = response.context["token"]
    download = logged_in.get(f"{PAGE}{token}.csv")
    assert download.status_code == 200
    assert download["Content-Type"] == "text/csv; charset=utf-8"
    assert download["Content-Disposition"] == 'attachment; filename="lookup-vip.csv"'
    rows = parse(b"".join(download.streaming_content))
    assert rows == [
        lookup.ANSWER_COLUMNS,
        ["alice", "yes", f"#{sent.pk}", sent.finished_at.isoformat(), "crm.csv"],
        ["'=1+1", "no", "none", "", ""],  # formula-safe: a spreadsheet shows it as text
        ["bob", "yes", "none", "", ""],
    ]


def test_an_answer_downloads_only_to_the_session_that_asked(
    logged_in: Any, real_ld: Any, make_user: Any, client: Any
) -> None:
    big_segment(real_ld)
    membership(real_ld, "alice", True)
    token = logged_in.post(PAGE, {"keys": "alice"}, follow=True).context["token"]
    from django.test import Client

    other = Client()
    other.force_login(make_user("viewer"))
    refused = other.get(f"{PAGE}{token}.csv")
    assert refused.status_code == 302
    assert refused["Location"] == PAGE


def test_answers_older_than_an_hour_are_removed(settings: Any, tmp_path: Path) -> None:
    settings.IMPORT_STORAGE_DIR = str(tmp_path)
    answer = lookup.Answer(answers=[lookup.KeyAnswer("a", True, None)], trail_complete=True, imports_read=0)
    old = lookup.new_token()
    lookup.keep_answer(old, answer, lookup.KeyList(["a"]))
    assert lookup.kept_answer(old) == (answer, lookup.KeyList([]))
    hour_ago = time.time() - lookup.ANSWER_KEEP_SECONDS - 1
    for path in (tmp_path / "lookups").iterdir():
        os.utime(path, (hour_ago, hour_ago))
    new = lookup.new_token()
    lookup.keep_answer(new, answer, lookup.KeyList(["a"]))
    assert lookup.kept_csv(old) is None
    assert lookup.kept_answer(old) is None
    kept = lookup.kept_csv(new)
    assert kept is not None
    kept.close()
    assert lookup.kept_csv("../../etc/passwd") is None


def test_a_paste_larger_than_a_form_takes_is_refused_in_words(
    logged_in: Any, real_ld: Any, settings: Any
) -> None:
    big_segment(real_ld)
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = logged_in.post(PAGE, {"keys": "k" * 2000})
    assert response.status_code == 400
    assert lookup_views.TOO_BIG in html.unescape(response.content.decode())


def test_launchdarkly_down_is_said_on_the_form(logged_in: Any, real_ld: Any) -> None:
    big_segment(real_ld)
    real_ld.mock.get(
        real_ld.url(f"{SEGMENT_PATH}/contexts/alice"), status=503, json={"code": "x", "message": "down"}
    )
    response = logged_in.post(PAGE, {"keys": "alice"})
    assert response.status_code == 200
    page = response.content.decode()
    assert "Nothing was looked up; try again." in page
    assert real_ld.token not in page
    assert "token" not in response.context


def test_a_viewer_may_look_keys_up_and_an_account_without_a_role_may_not(
    client: Any, make_user: Any, real_ld: Any
) -> None:
    big_segment(real_ld)
    membership(real_ld, "alice", True)
    client.force_login(make_user("no_group"))
    refused = client.post(PAGE, {"keys": "alice"})
    assert refused.status_code == 403
    assert "Your account has no role yet" in refused.content.decode()
    assert real_ld.calls_to(f"{SEGMENT_PATH}/contexts/alice") == []
    client.force_login(make_user("viewer"))
    assert "Look keys up" in client.get("/segments/shop/live/vip/").content.decode()
    answered = client.post(PAGE, {"keys": "alice"}, follow=True)
    assert answered.status_code == 200
    assert answered.context["answer"].members == 1


# --- "last sent by" when import files are not kept -----------------------------------------------


def looked_up(logged_in: Any, real_ld: Any, *keys: str) -> tuple[str, list[list[str]]]:
    """The answer page's text (tags kept, entities undone) and its download, for `keys`, all members."""
    big_segment(real_ld)
    for key in keys:
        membership(real_ld, key, True)
    response = logged_in.post(PAGE, {"keys": "\n".join(keys)}, follow=True)
    assert response.status_code == 200
    token = response.context["token"]
    download = parse(b"".join(logged_in.get(f"{PAGE}{token}.csv").streaming_content))
    return html.unescape(response.content.decode()), download


def note(page: str) -> str:
    """The paragraph that says what "last sent by" can tell, in one line of words."""
    paragraph = page.split('<p id="sender-note">', 1)[1].split("</p>", 1)[0]
    return " ".join(paragraph.split())


def test_with_no_import_file_kept_last_sent_by_is_left_out_and_said_why(
    logged_in: Any, real_ld: Any, user: Any, tmp_path: Path, settings: Any
) -> None:
    settings.IMPORT_RETENTION_HOURS = 0
    finished_import(user, tmp_path, "purged", None, minutes_ago=1)
    page, download = looked_up(logged_in, real_ld, "alice", "bob")
    assert "Last sent by" not in page
    assert "Unknown" not in page
    assert "most recent" not in page
    assert note(page) == (
        "Who last sent each key is not shown: this dashboard deletes import files when an import finishes, "
        "and only those files hold the keys an import sent. An administrator can keep them longer with the "
        "<code>IMPORT_RETENTION_HOURS</code> setting. The answer can be downloaded for 60 minutes."
    )
    assert page.count("Who last sent each key is not shown") == 1
    # The download leaves the columns out too, rather than a column of "unknown".
    assert download == [["key", "member"], ["alice", "yes"], ["bob", "yes"]]


def test_with_files_kept_a_while_the_note_says_how_long(
    logged_in: Any, real_ld: Any, user: Any, tmp_path: Path, settings: Any
) -> None:
    settings.IMPORT_RETENTION_HOURS = 1
    finished_import(user, tmp_path, "purged", None, minutes_ago=90)
    page, _ = looked_up(logged_in, real_ld, "alice")
    assert note(page).startswith(
        "Who last sent each key is not shown: this dashboard keeps an import’s files for 1 hour after it "
        "finishes, and the files of this segment’s latest import are already gone, "
    )
    settings.IMPORT_RETENTION_HOURS = 0.5
    page, _ = looked_up(logged_in, real_ld, "alice")
    assert "keeps an import’s files for 0.5 hours after it finishes" in note(page)


def test_one_import_read_before_the_files_end_is_counted_in_the_singular(
    logged_in: Any, real_ld: Any, user: Any, tmp_path: Path
) -> None:
    newest = finished_import(user, tmp_path, "newest", [["alice"]], minutes_ago=1)
    finished_import(user, tmp_path, "purged", None, minutes_ago=5)
    page, download = looked_up(logged_in, real_ld, "alice", "bob")
    assert '<th scope="col">Last sent by</th>' in page
    assert note(page).startswith(
        "<strong>Last sent by</strong> names the most recent completed import of this dashboard whose kept "
        "file holds the key. Only the most recent completed import could be read: the files of older "
        "imports are no longer kept. So a key none of them holds says “unknown”"
    )
    assert f"Import #{newest.pk}</a>" in page
    assert "<td>Unknown</td>" in page
    assert download[0] == lookup.ANSWER_COLUMNS
    assert [row[:3] for row in download[1:]] == [["alice", "yes", f"#{newest.pk}"], ["bob", "yes", "unknown"]]


def test_several_imports_read_are_counted_in_the_plural(
    logged_in: Any, real_ld: Any, user: Any, tmp_path: Path
) -> None:
    finished_import(user, tmp_path, "newest", [["alice"]], minutes_ago=1)
    finished_import(user, tmp_path, "older", [["carol"]], minutes_ago=2)
    finished_import(user, tmp_path, "purged", None, minutes_ago=5)
    page, _ = looked_up(logged_in, real_ld, "alice", "bob")
    assert "Only the 2 most recent completed imports could be read: the files of older imports" in note(page)


def test_reading_stops_at_the_limit_and_says_so(
    logged_in: Any, real_ld: Any, user: Any, tmp_path: Path
) -> None:
    for n in range(lookup.SCAN_IMPORTS + 1):
        finished_import(user, tmp_path, f"i{n}", [[f"k{n}"]], minutes_ago=n + 1)
    page, _ = looked_up(logged_in, real_ld, "nobody")
    assert (
        f"Only the {lookup.SCAN_IMPORTS} most recent completed imports could be read: at most "
        f"{lookup.SCAN_IMPORTS} are read, so that a lookup stays quick."
    ) in note(page)


def test_every_import_read_is_counted_and_none_explained(
    logged_in: Any, real_ld: Any, user: Any, tmp_path: Path
) -> None:
    page, download = looked_up(logged_in, real_ld, "bob")
    assert "No import of this dashboard has completed in this segment: “none” means the key" in note(page)
    assert download[0] == lookup.ANSWER_COLUMNS
    assert download[1][:3] == ["bob", "yes", "none"]
    finished_import(user, tmp_path, "only", [["alice"]], minutes_ago=1)
    page, _ = looked_up(logged_in, real_ld, "bob")
    assert "1 completed import of this segment was read: “none” means" in note(page)


def test_the_kept_answer_without_senders_downloads_without_their_columns(
    settings: Any, tmp_path: Path
) -> None:
    settings.IMPORT_STORAGE_DIR = str(tmp_path)
    answer = lookup.Answer([lookup.KeyAnswer("=a", False, None)], trail_complete=False, imports_read=0)
    assert not answer.shows_sender
    token = lookup.new_token()
    lookup.keep_answer(token, answer, lookup.KeyList(["=a"]))
    kept_file = lookup.kept_csv(token)
    assert kept_file is not None
    with kept_file:
        assert parse(kept_file.read()) == [lookup.MEMBER_COLUMNS, ["'=a", "no"]]
    kept = lookup.kept_answer(token)
    assert kept is not None
    assert kept[0].shows_sender is False


# --- a long list waits for a member snapshot -------------------------------------------------------


def long_list(count: int = lookup.IN_REQUEST_MAX_KEYS + 1) -> list[str]:
    return [f"user-{n:05d}" for n in range(count)]


def ready(snapshot: Any, members: list[str], tmp_path: Path) -> None:
    """What the worker does to a snapshot once LaunchDarkly's export is downloaded."""
    from segments_app.models import MemberSnapshot

    path = tmp_path / f"snapshot-{snapshot.pk}.csv"
    path.write_text("".join(f"{key}\n" for key in members))
    MemberSnapshot.objects.filter(pk=snapshot.pk).update(
        status="ready", file_path=str(path), finished_at=timezone.now(), member_count=len(members)
    )


def test_a_long_list_waits_for_a_snapshot_then_is_answered_from_it(
    logged_in: Any, real_ld: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    from segments_app.models import MemberSnapshot

    big_segment(real_ld)
    keys = long_list()
    posted = logged_in.post(PAGE, {"keys": "\n".join(keys)})
    assert posted.status_code == 302
    snapshot = MemberSnapshot.objects.get()
    assert (snapshot.project_key, snapshot.environment_key, snapshot.segment_key) == ("shop", "live", "vip")
    assert snapshot.status == "requested"
    waiting = logged_in.get(posted["Location"])
    page = waiting.content.decode()
    assert f"Looking {len(keys)} keys up" in page
    assert 'hx-trigger="every 2s"' in page
    # htmx's poll gets the block alone, still waiting.
    poll = logged_in.get(posted["Location"], headers={"HX-Request": "true"})
    assert poll.content.decode().lstrip().startswith('<section id="lookup-answer"')
    assert "hx-trigger" in poll.content.decode()

    ready(snapshot, ["user-00003", "user-00500", "someone-else"], tmp_path)
    # The members are ready, but no page reads them: polls only read, the worker answers.
    scans: list[int] = []
    real_scan = lookup.SnapshotMembership.__call__

    def counted(membership: Any, keys: list[str]) -> dict[str, bool | None]:
        scans.append(len(keys))
        return real_scan(membership, keys)

    monkeypatch.setattr(lookup.SnapshotMembership, "__call__", counted)
    still = logged_in.get(posted["Location"], headers={"HX-Request": "true"}).content.decode()
    assert "being read against your list" in still
    assert "hx-trigger" in still
    assert scans == []
    assert KeyLookup.objects.get().status == LookupStatus.WAITING
    assert lookup_job.run_once("worker-a")  # the worker's turn: the one scan
    assert scans == [len(keys)]
    assert KeyLookup.objects.get().status == LookupStatus.READY
    assert not lookup_job.run_once("worker-b")  # answered once: nothing left to do
    answered = logged_in.get(posted["Location"], headers={"HX-Request": "true"})
    body = answered.content.decode()
    assert "hx-trigger" not in body  # the polling stops
    assert "<strong>2</strong> are members of VIP now" in body
    # Not one key was asked of LaunchDarkly one by one.
    assert [c for c in real_ld.mock.calls if "/contexts/" in c.request.url] == []
    token = posted["Location"].split("answer=")[1]
    rows = parse(b"".join(logged_in.get(f"{PAGE}{token}.csv").streaming_content))
    assert [row[0] for row in rows[1:]] == keys
    assert {row[0] for row in rows[1:] if row[1] == "yes"} == {"user-00003", "user-00500"}


def test_a_failed_snapshot_sends_the_person_back_to_the_form_with_why(logged_in: Any, real_ld: Any) -> None:
    from segments_app.models import MemberSnapshot

    big_segment(real_ld)
    posted = logged_in.post(PAGE, {"keys": "\n".join(long_list())})
    MemberSnapshot.objects.update(status="failed", error_message="LaunchDarkly refused the export.")
    assert lookup_job.run_once("worker-a")
    assert KeyLookup.objects.get().status == LookupStatus.FAILED
    back = logged_in.get(posted["Location"], follow=True)
    assert back.redirect_chain == [(PAGE, 302)]
    assert "LaunchDarkly's members could not be read: LaunchDarkly refused the export." in html.unescape(
        back.content.decode()
    )


# --- 10,000 keys against the sandbox ---------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_ten_thousand_keys_against_the_sandbox_answer_correctly_and_download(
    sandbox: str, logged_in: Any, settings: Any
) -> None:
    """The whole way: the form, a snapshot the import worker exports from the sandbox, the polled
    answer, and the CSV, every row checked."""
    import threading

    from sandbox.models import SandboxMember, SandboxSegment
    from segments_app.imports import worker

    settings.IMPORT_POLL_SECONDS = 0.2
    segment = SandboxSegment.objects.get(key="churn-risk", environment__key="staging")
    members = {f"user-{n:05d}" for n in range(0, 10_000, 3)}  # every third key: 3,334 members
    SandboxMember.objects.bulk_create(
        [
            SandboxMember(segment=segment, context_key=key, generation=segment.live_generation)
            for key in members
        ]
    )
    SandboxSegment.objects.filter(pk=segment.pk).update(included_count=len(members))
    keys = long_list(10_000)
    page = "/segments/demo/staging/churn-risk/lookup/"
    stop = threading.Event()
    thread = threading.Thread(target=worker.work, args=(stop,), kwargs={"idle_wait": 0.05})
    thread.start()
    try:
        started = time.monotonic()
        posted = logged_in.post(page, {"file": SimpleUploadedFile("keys.csv", "\n".join(keys).encode())})
        assert posted.status_code == 302, posted.content[:500]
        while True:
            response = logged_in.get(posted["Location"])
            assert response.status_code == 200
            if "answer" in response.context:
                break
            assert time.monotonic() - started < 120, "no answer within 120 s"
            time.sleep(0.2)
        took = time.monotonic() - started
    finally:
        stop.set()
        thread.join(timeout=60)
    answer = response.context["answer"]
    assert answer.members == len(members) == 3_334
    assert answer.non_members == 10_000 - 3_334
    rows = parse(b"".join(logged_in.get(f"{page}{response.context['token']}.csv").streaming_content))
    assert rows[0] == lookup.ANSWER_COLUMNS
    assert [row[0] for row in rows[1:]] == keys
    for row in rows[1:]:
        assert row[1:] == ["yes" if row[0] in members else "no", "none", "", ""], row
    print(f"10,000 keys looked up in {took:.1f} s")


def test_a_lookup_is_answered_by_one_worker_only(user: Any, tmp_path: Path, settings: Any) -> None:
    """Two workers look for lookups to answer at once: the lease gives it to one of them."""
    settings.IMPORT_STORAGE_DIR = str(tmp_path)
    snapshot = snapshots.request_snapshot(user, "shop", "live", "vip")
    job = lookup_job.start(
        lookup.new_token(), lookup.KeyList(["a"]), snapshot, project="shop", environment="live", segment="vip"
    )
    assert lookup_job.claim("worker-a") is None  # its members are not ready yet
    ready(snapshot, ["a"], tmp_path)
    first = lookup_job.claim("worker-a")
    assert first is not None
    assert first.pk == job.pk
    assert lookup_job.claim("worker-b") is None  # held by the first
    assert not first.move(LookupStatus.READY, owner="worker-b")  # only the holder may move it
    assert first.move(LookupStatus.READY, owner="worker-a")


def test_a_header_set_aside_by_the_check_is_left_out_once_and_a_later_row_of_the_same_text_is_a_key(
    tmp_path: Path,
) -> None:
    source = tmp_path / "list.csv"
    source.write_bytes(b"email\nemail\nbob\n")
    found = lookup.read_keys(source, max_keys=2)
    assert found.keys == ["email", "bob"]
    assert found.header_left_out == "email"
    source.write_bytes(b"email\nalice\nemail\nbob\n")
    with pytest.raises(lookup.KeyListRefused, match="The list has 3 different keys; at most 2"):
        lookup.read_keys(source, max_keys=2)


def test_old_lookups_are_forgotten_by_the_housekeeping(user: Any, tmp_path: Path, settings: Any) -> None:
    settings.IMPORT_STORAGE_DIR = str(tmp_path)
    snapshot = snapshots.request_snapshot(user, "shop", "live", "vip")

    def started(status: str, hours_ago: float) -> KeyLookup:
        job = lookup_job.start(
            lookup.new_token(),
            lookup.KeyList(["a"]),
            snapshot,
            project="shop",
            environment="live",
            segment="vip",
        )
        created = timezone.now() - timedelta(hours=hours_ago)
        KeyLookup.objects.filter(pk=job.pk).update(status=status, created_at=created)
        return job

    kept = [started(LookupStatus.READY, 0.5), started(LookupStatus.WAITING, 20)]
    started(LookupStatus.READY, 2)  # its answer is no longer kept
    started(LookupStatus.FAILED, 2)
    started(LookupStatus.WAITING, settings.SNAPSHOT_TIMEOUT_HOURS + 2)  # its snapshot gave up long ago
    assert lookup_job.forget_old() == 3
    assert set(KeyLookup.objects.values_list("pk", flat=True)) == {job.pk for job in kept}
