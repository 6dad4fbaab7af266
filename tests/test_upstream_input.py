"""What LaunchDarkly sends back, and what people type, is untrusted input (issue 8, point 5).

- Redaction: a stand-in that echoes the `Authorization` header into its error bodies (whole, URL-encoded,
  without `api-`, truncated, upper-cased; in `message`, `code` and `id`) for every call the client makes:
  the token appears in no exception text, page, log line or database row.
- Path parts: `.`, `..` and empty keys are refused before any request; every other key (`a/b`,
  `%2e%2e`, `?x`, `#`, spaces, Unicode) reaches LaunchDarkly as one quoted path segment.
- List filters: search and tag text is one quoted value of LaunchDarkly's `filter` expression: it cannot
  add clauses.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import responses
from django.utils import timezone

from sandbox.segment_query import FilterTerm, parse_segment_filter
from segments_app.error_messages import describe
from segments_app.imports import pipeline
from segments_app.launchdarkly import (
    ClientConfig,
    LaunchDarklyClient,
    LaunchDarklyError,
    NotFound,
    UnusableFilter,
    UnusableKey,
    build_segment_filter,
    parse_import_id,
)
from segments_app.models import ImportEvent, ImportPart, ImportRecord, SegmentActivity
from tests.factories import recorded_upload

BASE = "https://app.launchdarkly.com"
TOKEN = "api-5f1c2a9e-0b7d-4c3e-9a61-secret77aa"
SEGMENTS = "/api/v2/segments/shop/live"
IMPORTS = f"{SEGMENTS}/vip/imports"


def leaked(text: str, token: str) -> list[str]:
    """Which recognisable forms of the token occur in a text (an empty list when none do)."""
    forms = {token, quote(token, safe=""), token.removeprefix("api-"), token.upper(), token[:20]}
    return [form for form in forms if form.lower() in text.lower()]


def echo(status: int) -> Callable[[Any], tuple[int, dict[str, str], str]]:
    """A LaunchDarkly that repeats the caller's token back in every field of its error body."""

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        token = request.headers["Authorization"]
        body = {
            "code": f"bad_token_{token}",
            "message": (
                f"Token {token} is not valid (seen as {quote(token, safe='')}, "
                f"{token.removeprefix('api-')}, {token.upper()} and {token[:20]}…)"
            ),
            "id": token,
        }
        return status, {"X-Request-Id": token, "Content-Type": "application/json"}, json.dumps(body)

    return answer


# --- the client: every call kind -----------------------------------------------------------------------

CALLS: dict[str, tuple[str, str, Callable[[LaunchDarklyClient], Any]]] = {
    "list projects": ("GET", "/api/v2/projects", lambda c: c.list_projects()),
    "list environments": ("GET", "/api/v2/projects/shop/environments", lambda c: c.list_environments("shop")),
    "list segments": ("GET", SEGMENTS, lambda c: c.list_segments("shop", "live", query="x")),
    "get segment": ("GET", f"{SEGMENTS}/vip", lambda c: c.get_segment("shop", "live", "vip")),
    "create segment": ("POST", SEGMENTS, lambda c: c.create_segment("shop", "live", key="k", name="K")),
    "delete segment": ("DELETE", f"{SEGMENTS}/vip", lambda c: c.delete_segment("shop", "live", "vip")),
    "context membership": (
        "GET",
        f"{SEGMENTS}/vip/contexts/u1",
        lambda c: c.get_context_membership("shop", "live", "vip", "u1"),
    ),
    "start import": (
        "POST",
        IMPORTS,
        lambda c: c.start_import("shop", "live", "vip", io.BytesIO(b"a\n"), filename="k.csv"),
    ),
    "get import": ("GET", f"{IMPORTS}/imp-1", lambda c: c.get_import("shop", "live", "vip", "imp-1")),
}


@pytest.mark.parametrize("status", [400, 401, 404, 409, 429, 503])
@pytest.mark.parametrize("call", list(CALLS))
def test_an_echoed_token_never_reaches_an_exception_or_a_log_line(
    call: str, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    method, path, invoke = CALLS[call]
    client = LaunchDarklyClient(ClientConfig(base_url=BASE, token=TOKEN, max_retries=0), sleep=lambda _: None)
    with responses.RequestsMock() as mock:
        mock.add_callback(method, BASE + path, callback=echo(status))
        if call == "context membership" and status == 404:
            # That 404 is followed by a look at the segment itself: gone too, so SegmentMissing.
            mock.add_callback("GET", f"{BASE}{SEGMENTS}/vip", callback=echo(404))
        with pytest.raises(LaunchDarklyError) as caught:
            invoke(client)
        assert mock.calls[0].request.headers["Authorization"] == TOKEN  # the echo really had it
    error = caught.value
    assert error.status == status
    assert "[redacted]" in error.message  # LaunchDarkly's words are kept, only the token goes
    assert "is not valid" in error.message
    texts = [str(error), repr(error), repr(error.args), error.message, error.code, error.request_id]
    texts += [describe(error)] + [record.getMessage() for record in caplog.records]
    for text in texts:
        assert leaked(text, TOKEN) == [], text


def test_long_upstream_texts_are_cut_and_non_strings_ignored() -> None:
    client = LaunchDarklyClient(ClientConfig(base_url=BASE, token=TOKEN, max_retries=0))
    with responses.RequestsMock() as mock:
        mock.post(
            BASE + SEGMENTS,
            status=400,
            json={"code": {"nested": TOKEN}, "message": "x" * 100_000, "id": ["a"]},
        )
        with pytest.raises(LaunchDarklyError) as caught:
            client.create_segment("shop", "live", key="k", name="K")
    assert len(caught.value.message) == 500
    assert (caught.value.code, caught.value.request_id) == ("", "")


def test_a_location_header_is_kept_without_the_token() -> None:
    client = LaunchDarklyClient(ClientConfig(base_url=BASE, token=TOKEN))
    with responses.RequestsMock() as mock:
        mock.post(BASE + IMPORTS, status=204, headers={"Location": f"{IMPORTS}/imp-9?t={TOKEN}"})
        started = client.start_import("shop", "live", "vip", io.BytesIO(b"a\n"))
    assert started.import_id == "imp-9"
    assert leaked(started.location or "", TOKEN) == []


# --- pages, logs and records -------------------------------------------------------------------------


def _dump_rows() -> str:
    rows = []
    for model in (SegmentActivity, ImportRecord, ImportPart, ImportEvent):
        rows += [repr(row) for row in model.objects.values()]
    return "\n".join(rows)


def due(record: ImportRecord) -> None:
    """Let the poll interval pass."""
    past = timezone.now() - timedelta(seconds=60)
    ImportRecord.objects.filter(pk=record.pk).update(last_checked_at=past, next_attempt_at=past)


def _queued_import(user: Any) -> ImportRecord:
    record, _ = recorded_upload(user, b"a\nb\n")
    return pipeline.advance(record.pk)  # checked and queued: no LaunchDarkly call yet


@pytest.mark.django_db
def test_an_echoed_token_reaches_no_page_log_line_or_record(
    logged_in: Any, user: Any, real_ld: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = real_ld.token
    pages = []
    # list projects: the projects page
    real_ld.mock.add_callback("GET", real_ld.url("/api/v2/projects"), callback=echo(400))
    pages.append(logged_in.get("/"))
    real_ld.mock.remove("GET", real_ld.url("/api/v2/projects"))
    real_ld.add_projects()
    # list segments, get segment, create, delete
    real_ld.mock.add_callback("GET", real_ld.url(SEGMENTS), callback=echo(400))
    pages.append(logged_in.get("/segments/shop/live/", {"q": "x"}))
    real_ld.mock.add_callback("GET", real_ld.url(f"{SEGMENTS}/vip"), callback=echo(403))
    pages.append(logged_in.get("/segments/shop/live/vip/"))
    real_ld.mock.add_callback("POST", real_ld.url(SEGMENTS), callback=echo(400))
    pages.append(
        logged_in.post(
            "/segments/shop/live/new/",
            {"name": "VIP", "key": "vip2", "description": "", "tags": "", "submission_token": "t1"},
        )
    )
    real_ld.mock.add_callback("DELETE", real_ld.url(f"{SEGMENTS}/old"), callback=echo(409))
    pages.append(
        logged_in.post("/segments/shop/live/old/delete/", {"confirm_key": "old", "submission_token": "t2"})
    )
    assert [page.status_code for page in pages] == [200, 200, 502, 200, 200]
    for page in pages:
        assert leaked(page.content.decode(), token) == []
        assert b"[redacted]" in page.content or b"lacks permission" in page.content
    # start import and get import: the pipeline's records
    refused = _queued_import(user)
    real_ld.mock.add_callback("POST", real_ld.url(IMPORTS), callback=echo(400))
    refused = pipeline.advance(refused.pk)
    assert refused.status == "failed"
    real_ld.mock.replace(
        "POST", real_ld.url(IMPORTS), status=204, headers={"Location": f"{IMPORTS}/imp-1?token={token}"}
    )
    followed = pipeline.advance(_queued_import(user).pk)
    assert followed.status == "preparing"
    real_ld.mock.add_callback("GET", real_ld.url(f"{IMPORTS}/imp-1"), callback=echo(400))
    due(followed)
    followed = pipeline.advance(followed.pk)
    assert "[redacted]" in followed.error_message
    detail = logged_in.get(f"/imports/{refused.pk}/")
    assert b"[redacted]" in detail.content
    assert leaked(detail.content.decode(), token) == []
    rows = _dump_rows()
    assert SegmentActivity.objects.filter(error_message__contains="[redacted]").count() == 2
    assert leaked(rows, token) == []
    assert leaked("\n".join(r.getMessage() for r in caplog.records), token) == []


# --- path parts ------------------------------------------------------------------------------------


@pytest.fixture
def ld() -> LaunchDarklyClient:
    return LaunchDarklyClient(ClientConfig(base_url=BASE, token=TOKEN, max_retries=0))


KEY_CALLS: dict[str, Callable[[LaunchDarklyClient, str], Any]] = {
    "project of list environments": lambda c, k: c.list_environments(k),
    "project of list segments": lambda c, k: c.list_segments(k, "live"),
    "environment of create segment": lambda c, k: c.create_segment("shop", k, key="a", name="A"),
    "segment of get segment": lambda c, k: c.get_segment("shop", "live", k),
    "segment of delete segment": lambda c, k: c.delete_segment("shop", "live", k),
    "context of membership": lambda c, k: c.get_context_membership("shop", "live", "vip", k),
    "segment of start import": lambda c, k: c.start_import("shop", "live", k, io.BytesIO(b"a\n")),
    "import ID of get import": lambda c, k: c.get_import("shop", "live", "vip", k),
}


@pytest.mark.parametrize("key", ["..", ".", ""])
@pytest.mark.parametrize("call", list(KEY_CALLS))
def test_dot_keys_are_refused_before_any_request(ld: LaunchDarklyClient, call: str, key: str) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        with pytest.raises(UnusableKey) as caught:
            KEY_CALLS[call](ld, key)
        assert len(mock.calls) == 0
    assert isinstance(caught.value, NotFound)  # pages answer 404, as for any key that names nothing
    assert describe(caught.value) == caught.value.message
    assert f"“{key}” cannot be used as a" in describe(caught.value)


QUOTED = [
    ("a/b", "a%2Fb"),
    ("%2e%2e", "%252e%252e"),
    ("..a", "..a"),
    ("?x", "%3Fx"),
    ("#", "%23"),
    ("a b", "a%20b"),
    ("ключ", "%D0%BA%D0%BB%D1%8E%D1%87"),
    ("a\\..\\b", "a%5C..%5Cb"),
]


@pytest.mark.parametrize(("key", "sent"), QUOTED)
def test_other_keys_reach_launchdarkly_as_one_quoted_segment(
    ld: LaunchDarklyClient, key: str, sent: str
) -> None:
    with responses.RequestsMock() as mock:
        mock.get(f"{BASE}{SEGMENTS}/vip/contexts/{sent}", json={"included": False, "excluded": False})
        mock.get(f"{BASE}{SEGMENTS}/{sent}", json={"key": "k", "name": "N"})
        mock.get(f"{BASE}{IMPORTS}/{sent}", json={"status": "ready"})
        ld.get_context_membership("shop", "live", "vip", key)
        ld.get_segment("shop", "live", key)
        ld.get_import("shop", "live", "vip", key)
        paths = [call.request.path_url for call in mock.calls]
    assert paths == [
        f"{SEGMENTS}/vip/contexts/{sent}",
        f"{SEGMENTS}/{sent}",
        f"{IMPORTS}/{sent}",
    ]


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        (f"{IMPORTS}/..", None),
        (f"{IMPORTS}/.", None),
        (f"{IMPORTS}/%2e%2e", None),
        (f"{IMPORTS}/a%2Fb", None),
        (f"{IMPORTS}/a%0Ab", None),
        (f"{IMPORTS}/{'x' * 129}", None),
        (f"{IMPORTS}/abc%20def", "abc def"),
        (f"{IMPORTS}/3f0e-77", "3f0e-77"),
    ],
)
def test_an_import_id_that_could_not_name_an_import_is_no_id(location: str, expected: str | None) -> None:
    assert parse_import_id(location) == expected


@pytest.mark.django_db
def test_a_location_ending_in_dot_dot_is_never_followed(user: Any, real_ld: Any) -> None:
    record = _queued_import(user)
    real_ld.mock.post(real_ld.url(IMPORTS), status=204, headers={"Location": f"{IMPORTS}/%2E%2E"})
    record = pipeline.advance(record.pk)
    assert record.status == "unknown"
    assert "returned no import ID" in record.error_message
    due(record)
    pipeline.advance(record.pk)
    # Only the member count read before the upload (tests/test_outcomes.py) and the upload itself.
    assert [(call.request.method, call.request.path_url) for call in real_ld.mock.calls] == [
        ("GET", f"{SEGMENTS}/vip"),
        ("POST", IMPORTS),
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "ld_path"),
    [
        ("/segments/shop/live/%2e%2e/", None),  # Django decodes it to "..": refused, 404
        ("/segments/shop/live/./", None),
        ("/segments/shop/live/%252e%252e/", f"{SEGMENTS}/%252e%252e"),
        ("/segments/shop/live/a%3Fb%23c/", f"{SEGMENTS}/a%3Fb%23c"),
        ("/segments/shop/live/%D0%BA%D0%BB/", f"{SEGMENTS}/%D0%BA%D0%BB"),
    ],
)
def test_segment_pages_send_the_key_as_one_segment_or_answer_404(
    logged_in: Any, real_ld: Any, url: str, ld_path: str | None
) -> None:
    real_ld.add_projects()
    if ld_path:
        real_ld.mock.get(real_ld.url(ld_path), status=404, json={"code": "not_found", "message": "Unknown"})
    page = logged_in.get(url)
    assert page.status_code == 404
    segment_calls = [
        c.request.path_url for c in real_ld.mock.calls if c.request.path_url.startswith(SEGMENTS)
    ]
    assert segment_calls == ([ld_path] if ld_path else [])


# --- list filters ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("vip", 'query equals "vip"'),
        ("x,tags anyOf [a]", 'query equals "x,tags anyOf [a]"'),
        ("x|unbounded equals true", 'query equals "x|unbounded equals true"'),
        ('a"],query equals "b', 'query equals "a\\"],query equals \\"b"'),
        ("(a)\\b\x00c\nd", 'query equals "(a)\\\\b c d"'),
        (",|[]()", 'query equals ",|[]()"'),
        ('\\"', 'query equals "\\\\\\""'),
        ("  ключ  ", 'query equals "ключ"'),
    ],
)
def test_search_text_cannot_add_clauses(query: str, expected: str) -> None:
    """Whatever is typed stays one quoted value: read back by a parser of the documented syntax (the
    sandbox's), the filter is one `query equals` term holding the text as typed (spaces collapsed)."""
    built = build_segment_filter(query=query)
    assert built == expected
    assert parse_segment_filter(built) == FilterTerm(
        "query", "equals", " ".join(query.replace("\x00", " ").split())
    )


@pytest.mark.parametrize(
    "tag", ["a]", "a,b", "a|b", '"a"', "a b", "a[0]", "a\\", '\\"],query equals "x', "ключ"]
)
def test_a_tag_is_sent_whole_as_one_quoted_value(ld: LaunchDarklyClient, tag: str) -> None:
    with responses.RequestsMock() as mock:
        mock.get(f"{BASE}{SEGMENTS}", json={"items": [], "totalCount": 0})
        ld.list_segments("shop", "live", tags=[tag])
        sent = parse_qs(urlsplit(mock.calls[0].request.url).query)["filter"]
    assert parse_segment_filter(sent[0]) == FilterTerm("tags", "anyOf", [tag])


def test_a_tag_holding_a_control_character_is_refused(ld: LaunchDarklyClient) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        with pytest.raises(UnusableFilter, match="is not a tag"):
            ld.list_segments("shop", "live", tags=["a\nb"])
        assert len(mock.calls) == 0


def test_a_sort_that_is_not_a_field_is_refused(ld: LaunchDarklyClient) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        with pytest.raises(UnusableFilter):
            ld.list_segments("shop", "live", sort="name&filter=x")
        assert len(mock.calls) == 0


@pytest.mark.django_db
def test_the_segment_list_sends_search_text_as_one_clause(logged_in: Any, real_ld: Any) -> None:
    real_ld.add_projects()
    real_ld.mock.get(real_ld.url(SEGMENTS), json={"items": [], "totalCount": 0})
    page = logged_in.get(
        "/segments/shop/live/", {"q": 'x,tags anyOf [a]|unbounded equals "true', "tag": "beta"}
    )
    assert page.status_code == 200
    (call,) = real_ld.calls_to(SEGMENTS)
    assert call.request.url == real_ld.url(
        f"{SEGMENTS}?limit=20&offset=0&sort=name&filter=query+equals+"
        "%22x%2Ctags+anyOf+%5Ba%5D%7Cunbounded+equals+%5C%22true%22%2Ctags+anyOf+%5B%22beta%22%5D"
    )


@pytest.mark.django_db
def test_the_segment_list_sends_a_tag_that_looks_like_a_clause_as_one_value(
    logged_in: Any, real_ld: Any
) -> None:
    real_ld.add_projects()
    real_ld.mock.get(real_ld.url(SEGMENTS), json={"items": [], "totalCount": 0})
    page = logged_in.get("/segments/shop/live/", {"tag": "a],unbounded equals true"})
    assert page.status_code == 200
    (call,) = real_ld.calls_to(SEGMENTS)
    sent = parse_qs(urlsplit(call.request.url).query)["filter"][0]
    assert sent == 'tags anyOf ["a],unbounded equals true"]'
    assert parse_segment_filter(sent) == FilterTerm("tags", "anyOf", ["a],unbounded equals true"])


# --- keys LaunchDarkly sends ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_listed_keys_that_cannot_be_addressed_are_left_out_not_a_500(logged_in: Any, real_ld: Any) -> None:
    environments = {"items": [{"key": "live", "name": "Live"}, {"key": "..", "name": "Dots"}]}
    real_ld.mock.get(
        real_ld.url("/api/v2/projects"),
        json={
            "items": [
                {"key": "a/b", "name": "Slashed project", "environments": environments},
                {"key": "shop", "name": "Shop", "environments": environments},
            ],
            "totalCount": 2,
        },
    )
    real_ld.mock.get(
        real_ld.url(SEGMENTS),
        json={
            "items": [{"key": "x/y", "name": "Slashed segment"}, {"key": "ok", "name": "Fine"}],
            "totalCount": 2,
        },
    )
    real_ld.mock.get(real_ld.url(f"{SEGMENTS}/odd"), json={"key": "odd/../x", "name": "Odd"})
    home = logged_in.get("/")
    assert home.status_code == 200
    assert "Slashed project" not in home.content.decode()
    assert "Dots" not in home.content.decode()
    assert "/segments/shop/live/" in home.content.decode()
    listing = logged_in.get("/segments/shop/live/")
    assert listing.status_code == 200
    assert "Slashed segment" not in listing.content.decode()
    assert "/segments/shop/live/ok/" in listing.content.decode()
    odd = logged_in.get("/segments/shop/live/odd/")
    assert odd.status_code == 502
    assert "unavailable right now" in odd.content.decode()
