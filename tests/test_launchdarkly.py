"""The LaunchDarkly client: exact requests, typed errors, retries and secrecy of the token."""

from __future__ import annotations

import io
import json
import logging
import random
from typing import Any

import pytest
import requests
import responses
from requests_toolbelt.multipart.decoder import MultipartDecoder
from requests_toolbelt.multipart.encoder import MultipartEncoder
from responses import matchers
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from segments_app.error_messages import describe
from segments_app.launchdarkly import (
    ClientConfig,
    Conflict,
    FileLinkRefused,
    InvalidRequest,
    LaunchDarklyClient,
    LaunchDarklyError,
    NotFound,
    NotReached,
    RateLimited,
    SegmentMissing,
    Unauthorized,
    UpstreamUnavailable,
    build_segment_filter,
    parse_import_id,
)

BASE = "https://app.launchdarkly.com"
TOKEN = "api-0123456789-very-secret-token"
NOW = 1_800_000_000.0
SEGMENTS = f"{BASE}/api/v2/segments/demo/production"

EXPECTED_HEADERS = {
    "Authorization": TOKEN,
    "LD-API-Version": "20240415",
    "User-Agent": "SegmentDashboard/0.1 (+python-requests)",
    "Accept": "application/json",
}


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(sleeps: list[float]) -> LaunchDarklyClient:
    config = ClientConfig(base_url=BASE, token=TOKEN, max_retries=3, max_retry_wait=10.0)
    return LaunchDarklyClient(config, sleep=sleeps.append, clock=lambda: NOW, rng=random.Random(7))


@pytest.fixture
def mock() -> Any:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


def assert_headers(request: Any) -> None:
    for name, value in EXPECTED_HEADERS.items():
        assert request.headers[name] == value, name
    assert not request.headers["Authorization"].startswith("Bearer")


def segment_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "key": "vip",
        "name": "VIP",
        "description": "Top tier",
        "tags": ["vip"],
        "creationDate": 1_700_000_000_000,
        "lastModifiedDate": 1_700_000_500_000,
        "version": 3,
        "unbounded": True,
        "unboundedContextKind": "user",
        "_importInProgress": True,
        "_unboundedMetadata": {"includedCount": 1204331, "excludedCount": 2},
        "_flags": [{"key": "vip-lounge", "name": "VIP lounge"}],
        "rules": [],
        "_links": {},
        "deleted": False,
        "generation": 1,
    }
    body.update(overrides)
    return body


# --- requests: method, URL, query, headers, JSON and multipart ---------------------------------


def test_list_projects_sends_expand_and_paging_and_drops_sdk_keys(
    client: LaunchDarklyClient, mock: Any
) -> None:
    mock.get(
        f"{BASE}/api/v2/projects",
        match=[matchers.query_string_matcher("expand=environments&limit=50&offset=100")],
        json={
            "items": [
                {
                    "key": "demo",
                    "name": "Demo",
                    "environments": {
                        "items": [
                            {
                                "key": "production",
                                "name": "Production",
                                "color": "417505",
                                "apiKey": "sdk-SECRET",
                                "mobileKey": "mob-SECRET",
                            },
                        ],
                        "totalCount": 1,
                    },
                }
            ],
            "totalCount": 101,
        },
    )
    page = client.list_projects(limit=50, offset=100)
    assert_headers(mock.calls[0].request)
    assert page.total == 101
    assert page.items[0].key == "demo"
    assert page.items[0].environments[0].key == "production"
    assert page.items[0].environments[0].color == "417505"
    assert "SECRET" not in repr(page)


def test_iter_projects_follows_pages_until_total(client: LaunchDarklyClient, mock: Any) -> None:
    for offset, keys in ((0, ["a", "b"]), (2, ["c"])):
        mock.get(
            f"{BASE}/api/v2/projects",
            match=[matchers.query_string_matcher(f"expand=environments&limit=2&offset={offset}")],
            json={"items": [{"key": k, "name": k.upper()} for k in keys], "totalCount": 3},
        )
    assert [p.key for p in client.iter_projects(page_size=2)] == ["a", "b", "c"]
    assert len(mock.calls) == 2


def test_list_environments(client: LaunchDarklyClient, mock: Any) -> None:
    mock.get(
        f"{BASE}/api/v2/projects/demo/environments",
        match=[matchers.query_string_matcher("limit=20&offset=0")],
        json={"items": [{"key": "staging", "name": "Staging", "apiKey": "sdk-x"}], "totalCount": 1},
    )
    page = client.list_environments("demo")
    assert [e.key for e in page.items] == ["staging"]
    assert_headers(mock.calls[0].request)


@pytest.mark.parametrize(
    ("kwargs", "query_string"),
    [
        ({}, "limit=20&offset=0"),
        ({"limit": 50, "offset": 100, "sort": "-lastModified"}, "limit=50&offset=100&sort=-lastModified"),
        ({"query": "vip"}, "limit=20&offset=0&filter=query+equals+%22vip%22"),
        (
            {"query": "vip customers"},
            "limit=20&offset=0&filter=query+equals+%22vip+customers%22",
        ),
        (
            {"tags": ["a", "b"], "unbounded": True},
            "limit=20&offset=0&filter=tags+anyOf+%5B%22a%22%2C+%22b%22%5D%2Cunbounded+equals+true",
        ),
        (
            {"query": "x", "unbounded": False, "sort": "name"},
            "limit=20&offset=0&sort=name&filter=query+equals+%22x%22%2Cunbounded+equals+false",
        ),
        # A literal `+` must reach LaunchDarkly as %2B: a plain `+` reads as a space (NOTES, list filters).
        ({"query": "c++ 1+1"}, "limit=20&offset=0&filter=query+equals+%22c%2B%2B+1%2B1%22"),
    ],
)
def test_list_segments_sends_the_exact_query_string(
    client: LaunchDarklyClient, mock: Any, kwargs: dict, query_string: str
) -> None:
    mock.get(SEGMENTS, json={"items": [segment_body()], "totalCount": 312})
    page = client.list_segments("demo", "production", **kwargs)
    assert mock.calls[0].request.url == f"{SEGMENTS}?{query_string}"
    assert page.total == 312
    assert page.items[0].included_count == 1204331
    assert_headers(mock.calls[0].request)


def test_the_spec_example_filter_is_sent_as_the_spec_writes_it(client: LaunchDarklyClient, mock: Any) -> None:
    """getSegments' own example: `tags anyOf ["enterprise", "beta"],query equals "toggle"` (clause order
    aside: ours puts the search first), decoded exactly from what went over the wire."""
    mock.get(
        SEGMENTS,
        match=[
            matchers.query_param_matcher(
                {
                    "limit": "20",
                    "offset": "0",
                    "filter": 'query equals "toggle",tags anyOf ["enterprise", "beta"]',
                },
                strict_match=True,
            )
        ],
        json={"items": [], "totalCount": 0},
    )
    assert client.list_segments("demo", "production", query="toggle", tags=["enterprise", "beta"]).total == 0


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, ""),
        ({"query": "  beta  testers "}, 'query equals "beta testers"'),
        ({"query": "a,b|c"}, 'query equals "a,b|c"'),
        ({"query": 'say "hi"'}, 'query equals "say \\"hi\\""'),
        ({"query": "C:\\path\\"}, 'query equals "C:\\\\path\\\\"'),
        ({"query": "tab\there\nnext\x00end"}, 'query equals "tab here next end"'),
        ({"query": "ключ"}, 'query equals "ключ"'),
        ({"tags": ["x", " ", "y"]}, 'tags anyOf ["x", "y"]'),
        (
            {"tags": ["big spender", 'the "best"', "a\\b"]},
            'tags anyOf ["big spender", "the \\"best\\"", "a\\\\b"]',
        ),
        ({"unbounded": False}, "unbounded equals false"),
        (
            {"query": "q", "tags": ["t"], "unbounded": True},
            'query equals "q",tags anyOf ["t"],unbounded equals true',
        ),
    ],
)
def test_build_segment_filter(kwargs: dict, expected: str) -> None:
    assert build_segment_filter(**kwargs) == expected


def test_get_segment_parses_fields(client: LaunchDarklyClient, mock: Any) -> None:
    mock.get(f"{SEGMENTS}/vip", json=segment_body())
    segment = client.get_segment("demo", "production", "vip")
    assert (segment.key, segment.name, segment.unbounded, segment.context_kind) == (
        "vip",
        "VIP",
        True,
        "user",
    )
    assert segment.import_in_progress is True
    assert segment.included_count == 1204331
    assert segment.excluded_count == 2
    assert segment.version == 3
    assert segment.created is not None
    assert segment.created.year == 2023
    assert [f.key for f in segment.flags] == ["vip-lounge"]
    assert_headers(mock.calls[0].request)


def test_path_segments_are_quoted(client: LaunchDarklyClient, mock: Any) -> None:
    mock.get(
        f"{SEGMENTS}/vip/contexts/a%2Fb%3Fc%20d",
        json={"userKey": "a/b?c d", "included": True, "excluded": False},
    )
    assert client.get_context_membership("demo", "production", "vip", "a/b?c d")["included"] is True
    assert mock.calls[0].request.path_url == "/api/v2/segments/demo/production/vip/contexts/a%2Fb%3Fc%20d"


@pytest.mark.parametrize(
    ("kwargs", "body"),
    [
        (
            {"key": "beta", "name": "Beta"},
            {"key": "beta", "name": "Beta", "description": "", "tags": [], "unbounded": False},
        ),
        (
            {
                "key": "big",
                "name": "Big",
                "description": "d",
                "tags": ["a", "b"],
                "unbounded": True,
                "unbounded_context_kind": "device",
            },
            {
                "key": "big",
                "name": "Big",
                "description": "d",
                "tags": ["a", "b"],
                "unbounded": True,
                "unboundedContextKind": "device",
            },
        ),
    ],
)
def test_create_segment_sends_exact_json(
    client: LaunchDarklyClient, mock: Any, kwargs: dict, body: dict
) -> None:
    mock.post(
        SEGMENTS,
        json=segment_body(key=kwargs["key"]),
        status=201,
        match=[matchers.json_params_matcher(body, strict_match=True)],
    )
    created = client.create_segment("demo", "production", **kwargs)
    assert created.key == kwargs["key"]
    request = mock.calls[0].request
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body) == body
    assert_headers(request)


def test_delete_segment(client: LaunchDarklyClient, mock: Any) -> None:
    mock.delete(f"{SEGMENTS}/old", status=204)
    assert client.delete_segment("demo", "production", "old") is None
    assert mock.calls[0].request.method == "DELETE"
    assert_headers(mock.calls[0].request)


def _multipart(request: Any) -> dict[str, tuple[bytes, bytes]]:
    decoder = MultipartDecoder(request.body, request.headers["Content-Type"])
    parts = {}
    for part in decoder.parts:
        disposition = part.headers[b"Content-Disposition"]
        name = disposition.split(b'name="')[1].split(b'"')[0].decode()
        parts[name] = (part.content, disposition)
    return parts


@pytest.mark.parametrize(
    ("mode", "wait", "wait_field"), [("merge", False, b"false"), ("replace", True, b"true")]
)
def test_start_import_sends_multipart_fields_and_file_bytes(
    client: LaunchDarklyClient, mock: Any, mode: str, wait: bool, wait_field: bytes
) -> None:
    content = b"user-1\nuser-2\nuser-\xc3\xa9\n"
    mock.post(
        f"{SEGMENTS}/vip/imports",
        status=204,
        headers={"Location": "/api/v2/segments/demo/production/vip/imports/1234a567-bcd8"},
    )
    started = client.start_import(
        "demo",
        "production",
        "vip",
        io.BytesIO(content),
        filename="keys.csv",
        mode=mode,
        wait_on_approvals=wait,
    )
    assert started.import_id == "1234a567-bcd8"
    request = mock.calls[0].request
    assert_headers(request)
    assert request.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    parts = _multipart(request)
    assert list(parts) == ["file", "mode", "waitOnApprovals"]
    assert parts["file"][0] == content
    assert b'filename="keys.csv"' in parts["file"][1]
    assert parts["mode"][0] == mode.encode()
    assert parts["waitOnApprovals"][0] == wait_field


def test_start_import_streams_from_a_path(client: LaunchDarklyClient, tmp_path: Any) -> None:
    path = tmp_path / "normalised.csv"
    path.write_bytes(b"a\nb\n")
    seen: dict[str, Any] = {}

    def fake_request(method: str, url: str, **kwargs: Any) -> requests.Response:
        seen.update(kwargs, method=method, url=url)
        response = requests.Response()
        response.status_code = 204
        response.headers["Location"] = f"{url}/abc"
        return response

    client.session.request = fake_request  # type: ignore[method-assign]
    started = client.start_import("demo", "production", "vip", path)
    # A MultipartEncoder is read in chunks as it is sent; the file is never loaded whole.
    assert isinstance(seen["data"], MultipartEncoder)
    assert seen["timeout"] == (5.0, 300.0)
    assert started.import_id == "abc"


def test_start_import_without_location_reports_no_id(client: LaunchDarklyClient, mock: Any) -> None:
    mock.post(f"{SEGMENTS}/vip/imports", status=204)
    started = client.start_import("demo", "production", "vip", io.BytesIO(b"k\n"))
    assert started.import_id is None
    assert started.location is None


def test_start_import_rejects_unknown_mode_before_any_call(client: LaunchDarklyClient, mock: Any) -> None:
    with pytest.raises(ValueError, match="mode"):
        client.start_import("demo", "production", "vip", io.BytesIO(b"k\n"), mode="append")
    assert len(mock.calls) == 0


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("/api/v2/segments/p/e/s/imports/abc-123", "abc-123"),
        ("https://app.launchdarkly.com/api/v2/segments/p/e/s/imports/abc-123", "abc-123"),
        ("https://app.launchdarkly.com/api/v2/segments/p/e/s/imports/abc-123/", "abc-123"),
        ("/api/v2/segments/p/e/s/imports/abc-123?foo=bar", "abc-123"),
        ("abc-123", "abc-123"),
        ("/api/v2/segments/p/e/s/imports/", None),
        ("", None),
        ("   ", None),
        (None, None),
    ],
)
def test_parse_import_id(location: str | None, expected: str | None) -> None:
    assert parse_import_id(location) == expected


def test_get_import(client: LaunchDarklyClient, mock: Any) -> None:
    body = {
        "id": "abc",
        "segmentKey": "vip",
        "status": "in_progress",
        "mode": "merge",
        "creationTime": 1,
        "files": [{"filename": "keys.csv", "status": "in_progress"}],
        "_links": {},
    }
    mock.get(f"{SEGMENTS}/vip/imports/abc", json=body)
    assert client.get_import("demo", "production", "vip", "abc") == body
    assert_headers(mock.calls[0].request)


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, InvalidRequest),
        (401, Unauthorized),
        (403, Unauthorized),
        (404, NotFound),
        (409, Conflict),
        (429, RateLimited),
        (500, UpstreamUnavailable),
        (503, UpstreamUnavailable),
        (405, LaunchDarklyError),
    ],
)
def test_each_status_raises_its_error(
    client: LaunchDarklyClient, mock: Any, status: int, error_class: type
) -> None:
    client.config = ClientConfig(base_url=BASE, token=TOKEN, max_retries=0)
    mock.post(
        SEGMENTS, status=status, json={"code": "some_code", "message": "Something specific", "id": "req-42"}
    )
    with pytest.raises(error_class) as caught:
        client.create_segment("demo", "production", key="k", name="n")
    error = caught.value
    assert type(error) is error_class
    assert (error.status, error.code, error.message, error.request_id) == (
        status,
        "some_code",
        "Something specific",
        "req-42",
    )
    assert "Something specific" in str(error)
    assert "/api/v2/segments/demo/production" in str(error)


def test_error_without_json_body_still_has_a_message(client: LaunchDarklyClient, mock: Any) -> None:
    mock.delete(f"{SEGMENTS}/x", status=502, body="<html>Bad gateway</html>", content_type="text/html")
    with pytest.raises(UpstreamUnavailable) as caught:
        client.delete_segment("demo", "production", "x")
    assert caught.value.status == 502
    assert caught.value.message == "LaunchDarkly answered 502 Bad Gateway"


def test_success_with_a_body_that_is_not_json_is_upstream_unavailable(
    client: LaunchDarklyClient, mock: Any
) -> None:
    mock.get(f"{SEGMENTS}/x", status=200, body="<html>login page</html>", content_type="text/html")
    with pytest.raises(UpstreamUnavailable, match="not the JSON expected"):
        client.get_segment("demo", "production", "x")
    assert len(mock.calls) == 1


def test_rate_limited_carries_the_time_calls_may_resume(client: LaunchDarklyClient, mock: Any) -> None:
    client.config = ClientConfig(base_url=BASE, token=TOKEN, max_retries=0)
    mock.post(
        SEGMENTS,
        status=429,
        json={"code": "rate_limited", "message": "slow down"},
        headers={"Retry-After": "7"},
    )
    with pytest.raises(RateLimited) as caught:
        client.create_segment("demo", "production", key="k", name="n")
    assert caught.value.retry_at == NOW + 7


# --- retries ------------------------------------------------------------------------------------


def test_get_is_retried_on_503_then_succeeds(
    client: LaunchDarklyClient, mock: Any, sleeps: list[float]
) -> None:
    mock.get(f"{SEGMENTS}/x", status=503, json={"code": "unavailable", "message": "down"})
    mock.get(f"{SEGMENTS}/x", json=segment_body(key="x"))
    assert client.get_segment("demo", "production", "x").key == "x"
    assert len(mock.calls) == 2
    assert len(sleeps) == 1
    assert 0 <= sleeps[0] <= 0.5  # full jitter within the first backoff step


@pytest.mark.parametrize("status", [502, 504, 429])
def test_get_is_retried_on_retryable_statuses(client: LaunchDarklyClient, mock: Any, status: int) -> None:
    mock.get(f"{SEGMENTS}/x", status=status, json={"code": "c", "message": "m"})
    mock.get(f"{SEGMENTS}/x", json=segment_body(key="x"))
    client.get_segment("demo", "production", "x")
    assert len(mock.calls) == 2


def test_get_is_not_retried_on_500(client: LaunchDarklyClient, mock: Any, sleeps: list[float]) -> None:
    mock.get(f"{SEGMENTS}/x", status=500, json={"code": "internal", "message": "boom"})
    with pytest.raises(UpstreamUnavailable):
        client.get_segment("demo", "production", "x")
    assert len(mock.calls) == 1
    assert sleeps == []


def test_retry_after_is_honoured(client: LaunchDarklyClient, mock: Any, sleeps: list[float]) -> None:
    mock.get(
        f"{SEGMENTS}/x",
        status=429,
        json={"code": "rate_limited", "message": "m"},
        headers={"Retry-After": "3"},
    )
    mock.get(f"{SEGMENTS}/x", json=segment_body(key="x"))
    client.get_segment("demo", "production", "x")
    assert 3.0 <= sleeps[0] <= 3.5


def test_ratelimit_reset_in_epoch_milliseconds_is_honoured(
    client: LaunchDarklyClient, mock: Any, sleeps: list[float]
) -> None:
    reset_ms = int((NOW + 4.25) * 1000)
    mock.get(
        f"{SEGMENTS}/x",
        status=429,
        json={"code": "rate_limited", "message": "m"},
        headers={"X-Ratelimit-Reset": str(reset_ms)},
    )
    mock.get(f"{SEGMENTS}/x", json=segment_body(key="x"))
    client.get_segment("demo", "production", "x")
    assert 4.25 <= sleeps[0] <= 4.75


def rate_limited(mock: Any, headers: dict[str, str]) -> None:
    """A 429 for GET …/x with these headers, then the segment: the client's one sleep is the wait it chose."""
    mock.get(f"{SEGMENTS}/x", status=429, json={"code": "rate_limited", "message": "m"}, headers=headers)
    mock.get(f"{SEGMENTS}/x", json=segment_body(key="x"))


def reset_in(seconds: float) -> str:
    return str(int((NOW + seconds) * 1000))


# The jitter added on top of the server's wait with random.Random(7) and backoff_base 0.5.
JITTER = random.Random(7)
JITTER.uniform(0, 0.5)  # the first draw goes to the backoff the server's wait replaces
FIRST_JITTER = JITTER.uniform(0, 0.5)


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        # A token's limit reports its reset only in X-Ratelimit-Auth-Token-Reset.
        ({"X-Ratelimit-Auth-Token-Remaining": "0", "X-Ratelimit-Auth-Token-Reset": reset_in(6)}, 6.0),
        ({"X-Ratelimit-Auth-Token-Reset": reset_in(6)}, 6.0),
        # The token's limit is spent, the account's is not: the token's reset decides, not the sooner one.
        (
            {
                "X-Ratelimit-Global-Remaining": "40",
                "X-Ratelimit-Reset": reset_in(2),
                "X-Ratelimit-Auth-Token-Remaining": "0",
                "X-Ratelimit-Auth-Token-Reset": reset_in(7),
            },
            7.0,
        ),
        # The route's limit is spent, the token has calls left: the route's reset decides.
        (
            {
                "X-Ratelimit-Route-Remaining": "0",
                "X-Ratelimit-Reset": reset_in(2),
                "X-Ratelimit-Auth-Token-Remaining": "12",
                "X-Ratelimit-Auth-Token-Reset": reset_in(8),
            },
            2.0,
        ),
        # Both spent: calls resume only when the later one resets.
        (
            {
                "X-Ratelimit-Global-Remaining": "0",
                "X-Ratelimit-Reset": reset_in(5),
                "X-Ratelimit-Auth-Token-Remaining": "0",
                "X-Ratelimit-Auth-Token-Reset": reset_in(3),
            },
            5.0,
        ),
        # Retry-After (IP limits) is a floor: at least that long, whatever a reset says.
        ({"Retry-After": "4", "X-Ratelimit-Auth-Token-Reset": reset_in(1)}, 4.0),
        ({"Retry-After": "1", "X-Ratelimit-Auth-Token-Reset": reset_in(3.5)}, 3.5),
    ],
)
def test_the_wait_chosen_honours_the_token_reset_with_the_documented_precedence(
    client: LaunchDarklyClient, mock: Any, sleeps: list[float], headers: dict[str, str], wait: float
) -> None:
    rate_limited(mock, headers)
    client.get_segment("demo", "production", "x")
    assert sleeps == [pytest.approx(wait + FIRST_JITTER)]


def test_a_reset_whose_limits_all_have_calls_left_is_no_reason_to_wait(
    client: LaunchDarklyClient, mock: Any, sleeps: list[float]
) -> None:
    """LaunchDarkly sends its rate-limit headers with every call of a limited route: a 503 carrying a
    reset 9 s away, with calls left everywhere, is retried after the short backoff, not after 9 s."""
    mock.get(
        f"{SEGMENTS}/x",
        status=503,
        json={"code": "unavailable", "message": "down"},
        headers={
            "X-Ratelimit-Global-Remaining": "50",
            "X-Ratelimit-Reset": reset_in(9),
            "X-Ratelimit-Auth-Token-Remaining": "3",
            "X-Ratelimit-Auth-Token-Reset": reset_in(9),
        },
    )
    mock.get(f"{SEGMENTS}/x", json=segment_body(key="x"))
    client.get_segment("demo", "production", "x")
    assert len(sleeps) == 1
    assert 0 <= sleeps[0] <= 0.5


def test_a_token_reset_beyond_the_budget_raises_rate_limited_with_that_time(
    client: LaunchDarklyClient, mock: Any, sleeps: list[float]
) -> None:
    mock.get(
        f"{SEGMENTS}/x",
        status=429,
        json={"code": "rate_limited", "message": "m"},
        headers={"X-Ratelimit-Auth-Token-Remaining": "0", "X-Ratelimit-Auth-Token-Reset": reset_in(45)},
    )
    with pytest.raises(RateLimited) as caught:
        client.get_segment("demo", "production", "x")
    assert sleeps == []
    assert caught.value.retry_at == pytest.approx(NOW + 45)


def test_a_wait_beyond_the_budget_raises_rate_limited_without_sleeping(
    client: LaunchDarklyClient, mock: Any, sleeps: list[float]
) -> None:
    mock.get(
        f"{SEGMENTS}/x",
        status=429,
        json={"code": "rate_limited", "message": "m"},
        headers={"Retry-After": "60"},
    )
    with pytest.raises(RateLimited) as caught:
        client.get_segment("demo", "production", "x")
    assert sleeps == []
    assert caught.value.retry_at == NOW + 60
    assert len(mock.calls) == 1


def test_retries_stop_after_max_retries(client: LaunchDarklyClient, mock: Any, sleeps: list[float]) -> None:
    mock.get(f"{SEGMENTS}/x", status=503, json={"code": "c", "message": "m"})
    with pytest.raises(UpstreamUnavailable):
        client.get_segment("demo", "production", "x")
    assert len(mock.calls) == 4  # the first try and three retries
    assert len(sleeps) == 3
    # Exponential: each step's ceiling doubles (0.5, 1, 2).
    assert all(0 <= s <= 0.5 * 2**i for i, s in enumerate(sleeps))


@pytest.mark.parametrize(
    "failure", [requests.ConnectionError("refused"), requests.ConnectTimeout("t"), requests.ReadTimeout("t")]
)
def test_get_is_retried_on_connection_errors_and_timeouts(
    client: LaunchDarklyClient, mock: Any, failure: Exception
) -> None:
    mock.get(f"{SEGMENTS}/x", body=failure)
    mock.get(f"{SEGMENTS}/x", json=segment_body(key="x"))
    assert client.get_segment("demo", "production", "x").key == "x"
    assert len(mock.calls) == 2


@pytest.mark.parametrize("failure", [requests.ConnectionError("refused"), requests.ReadTimeout("slow")])
def test_connection_failures_become_upstream_unavailable(
    client: LaunchDarklyClient, mock: Any, failure: Exception
) -> None:
    mock.post(SEGMENTS, body=failure)
    with pytest.raises(UpstreamUnavailable) as caught:
        client.create_segment("demo", "production", key="k", name="n")
    assert caught.value.status is None
    assert len(mock.calls) == 1


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_post_is_never_retried(
    client: LaunchDarklyClient, mock: Any, sleeps: list[float], status: int
) -> None:
    mock.post(
        f"{SEGMENTS}/vip/imports",
        status=status,
        json={"code": "c", "message": "m"},
        headers={"Retry-After": "1"},
    )
    with pytest.raises(LaunchDarklyError):
        client.start_import("demo", "production", "vip", io.BytesIO(b"k\n"))
    assert len(mock.calls) == 1
    assert sleeps == []


def test_delete_is_never_retried(client: LaunchDarklyClient, mock: Any, sleeps: list[float]) -> None:
    mock.delete(f"{SEGMENTS}/x", body=requests.ReadTimeout("slow"))
    with pytest.raises(UpstreamUnavailable):
        client.delete_segment("demo", "production", "x")
    assert len(mock.calls) == 1
    assert sleeps == []


def test_every_call_has_connect_and_read_timeouts(client: LaunchDarklyClient) -> None:
    timeouts = []

    def fake_request(method: str, url: str, **kwargs: Any) -> requests.Response:
        timeouts.append(kwargs["timeout"])
        response = requests.Response()
        response.status_code = 200
        response._content = b'{"items": [], "totalCount": 0}'
        return response

    client.session.request = fake_request  # type: ignore[method-assign]
    client.list_projects()
    client.list_segments("demo", "production")
    assert timeouts == [(5.0, 30.0), (5.0, 30.0)]


# --- the token stays secret ---------------------------------------------------------------------


def test_token_appears_in_no_error_text_or_log_line(
    client: LaunchDarklyClient, mock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    mock.get(f"{SEGMENTS}/a", status=401, json={"code": "unauthorized", "message": "Invalid access token"})
    mock.get(f"{SEGMENTS}/b", body=requests.ConnectionError(f"failed with header {TOKEN[:4]}"))
    mock.get(f"{SEGMENTS}/b", body=requests.ConnectionError("again"))
    mock.get(f"{SEGMENTS}/b", body=requests.ConnectionError("again"))
    mock.get(f"{SEGMENTS}/b", body=requests.ConnectionError("again"))
    mock.post(SEGMENTS, status=429, json={"code": "rate_limited", "message": "m"})
    errors = []
    for call in (
        lambda: client.get_segment("demo", "production", "a"),
        lambda: client.get_segment("demo", "production", "b"),
        lambda: client.create_segment("demo", "production", key="k", name="n"),
    ):
        with pytest.raises(LaunchDarklyError) as caught:
            call()
        errors.append(caught.value)
    texts = [str(e) for e in errors] + [repr(e) for e in errors] + [repr(e.args) for e in errors]
    texts += [record.getMessage() for record in caplog.records]
    texts += [repr(client), repr(client.config)]
    assert caplog.records, "the client should log its calls"
    assert all(TOKEN not in text for text in texts)


# --- what a failure says about whether the request left -----------------------------------------------


def _refused() -> requests.ConnectionError:
    reason = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")
    return requests.ConnectionError(MaxRetryError(None, "/", reason))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("failure", "never_sent"),
    [
        (_refused(), True),
        (requests.ConnectTimeout("connect timed out"), True),
        (requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError(104))), False),
        (requests.ConnectionError("no detail"), False),
        (requests.ReadTimeout("read timed out"), False),
    ],
)
def test_only_a_connection_that_never_opened_is_not_reached(
    client: LaunchDarklyClient, mock: Any, failure: Exception, never_sent: bool
) -> None:
    mock.post(f"{SEGMENTS}/vip/imports", body=failure)
    with pytest.raises(UpstreamUnavailable) as caught:
        client.start_import("demo", "production", "vip", io.BytesIO(b"k\n"))
    assert isinstance(caught.value, NotReached) is never_sent
    assert caught.value.status is None


@pytest.mark.parametrize(
    ("answer", "fine"),
    [
        ({"status": 204}, True),
        ({"status": 200, "json": {"ok": True}}, True),
        ({"status": 200, "body": "<html>Sign in</html>", "content_type": "text/html"}, False),
    ],
)
def test_a_delete_answered_by_someone_elses_page_is_not_done(
    client: LaunchDarklyClient, mock: Any, answer: dict, fine: bool
) -> None:
    mock.delete(f"{SEGMENTS}/x", **answer)
    if fine:
        client.delete_segment("demo", "production", "x")
    else:
        with pytest.raises(UpstreamUnavailable, match="not the one expected") as caught:
            client.delete_segment("demo", "production", "x")
        assert caught.value.status == 200


def test_an_import_status_is_cleaned_of_the_token(client: LaunchDarklyClient, mock: Any) -> None:
    files = [{"filename": "keys.csv", "status": f"fetched with {TOKEN}"}]
    mock.get(f"{SEGMENTS}/vip/imports/abc", json={"id": "abc", "status": "ready", "files": files})
    body = client.get_import("demo", "production", "vip", "abc")
    assert body["files"] == [{"filename": "keys.csv", "status": "fetched with [redacted]"}]
    assert body["status"] == "ready"


# --- exports, membership and context targets (issue 10) ---


def export_body(**links: Any) -> dict[str, Any]:
    return {
        "id": "exp-1",
        "segmentKey": "vip",
        "creationTime": 1,
        "status": "complete",
        "sizeBytes": 12,
        "size": "12 B",
        "initiator": {"name": "Ann", "email": "ann@example.com"},
        "_links": links,
    }


def test_start_export_posts_no_body_and_parses_the_id_from_location(
    client: LaunchDarklyClient, mock: Any
) -> None:
    mock.post(
        f"{SEGMENTS}/vip/exports",
        status=200,
        headers={"Location": "/api/v2/segments/demo/production/vip/exports/exp-%41?x=1"},
    )
    started = client.start_export("demo", "production", "vip")
    assert started.export_id == "exp-A"
    request = mock.calls[0].request
    assert request.method == "POST"
    assert not request.body
    assert_headers(request)


@pytest.mark.parametrize(
    "location",
    [None, "", "/api/v2/segments/demo/production/vip/exports", "/x/..", "/x/.", "/x/a%2Fb", "/x/%0a"],
)
def test_start_export_refuses_an_id_that_could_name_another_url(
    client: LaunchDarklyClient, mock: Any, location: str | None
) -> None:
    headers = {"Location": location} if location is not None else {}
    mock.post(f"{SEGMENTS}/vip/exports", status=202, headers=headers)
    assert client.start_export("demo", "production", "vip").export_id is None


def test_start_export_is_not_retried(client: LaunchDarklyClient, mock: Any, sleeps: list[float]) -> None:
    mock.post(f"{SEGMENTS}/vip/exports", status=503, json={"code": "unavailable", "message": "busy"})
    with pytest.raises(UpstreamUnavailable):
        client.start_export("demo", "production", "vip")
    assert len(mock.calls) == 1
    assert sleeps == []


def test_get_export_picks_the_csv_link_and_makes_it_absolute(client: LaunchDarklyClient, mock: Any) -> None:
    body = export_body(
        self={"href": "/api/v2/segments/demo/production/vip/exports/exp-1", "type": "application/json"},
        file={"href": "/files/exp-1.csv", "type": "text/csv"},
    )
    mock.get(f"{SEGMENTS}/vip/exports/exp-1", json=body)
    status = client.get_export("demo", "production", "vip", "exp-1")
    assert status.is_complete
    assert status.size_bytes == 12
    assert status.file_url == f"{BASE}/files/exp-1.csv"
    assert_headers(mock.calls[0].request)


def test_get_export_without_a_typed_link_takes_the_one_that_is_not_self(
    client: LaunchDarklyClient, mock: Any
) -> None:
    body = export_body(self={"href": "/self"}, download={"href": "https://storage.example.net/exp-1?sig=abc"})
    body["status"] = "pending"
    mock.get(f"{SEGMENTS}/vip/exports/exp-1", json=body)
    status = client.get_export("demo", "production", "vip", "exp-1")
    assert not status.is_complete
    assert status.file_url == "https://storage.example.net/exp-1?sig=abc"


def test_export_file_on_another_host_gets_no_authorization_header(
    client: LaunchDarklyClient, mock: Any, tmp_path: Any
) -> None:
    mock.get(
        f"{SEGMENTS}/vip/exports/exp-1",
        json=export_body(
            file={"href": "https://storage.example.net/exp-1.csv?sig=s3cr3t", "type": "text/csv"}
        ),
    )
    mock.get("https://storage.example.net/exp-1.csv", body=b"u-1\nu-2\n")
    status = client.get_export("demo", "production", "vip", "exp-1")
    assert status.file_url is not None
    size = client.download_export(status.file_url, tmp_path / "members.csv", chunk_size=3)
    assert size == 8
    assert (tmp_path / "members.csv").read_bytes() == b"u-1\nu-2\n"
    status_request, file_request = (call.request for call in mock.calls)
    assert status_request.headers["Authorization"] == TOKEN
    assert "Authorization" not in file_request.headers
    assert TOKEN not in str(file_request.headers)
    assert file_request.headers["Accept"] == "text/csv, */*"
    assert "sig=s3cr3t" in file_request.url


def test_export_file_on_the_launchdarkly_host_is_fetched_with_the_token(
    client: LaunchDarklyClient, mock: Any, tmp_path: Any
) -> None:
    mock.get(f"{BASE}/files/exp-1.csv", body=b"u-1\n")
    client.download_export(f"{BASE}/files/exp-1.csv", tmp_path / "m.csv")
    assert mock.calls[0].request.headers["Authorization"] == TOKEN


def test_export_file_on_the_same_host_but_another_port_gets_no_token(
    client: LaunchDarklyClient, mock: Any, tmp_path: Any
) -> None:
    mock.get("https://app.launchdarkly.com:8443/files/exp-1.csv", body=b"u-1\n")
    client.download_export("https://app.launchdarkly.com:8443/files/exp-1.csv", tmp_path / "m.csv")
    assert "Authorization" not in mock.calls[0].request.headers


def test_a_refused_download_leaves_no_file_and_raises_a_typed_error(
    client: LaunchDarklyClient, mock: Any, tmp_path: Any
) -> None:
    mock.get("https://storage.example.net/exp-1.csv", status=403, body="expired")
    with pytest.raises(FileLinkRefused) as caught:
        client.download_export("https://storage.example.net/exp-1.csv?sig=s3cr3t", tmp_path / "m.csv")
    assert "s3cr3t" not in str(caught.value)
    assert caught.value.status == 403
    assert not isinstance(caught.value, Unauthorized)  # the token never went there: not its fault
    assert "Authorization" not in mock.calls[0].request.headers
    assert list(tmp_path.iterdir()) == []


def test_a_refused_download_on_launchdarklys_own_host_is_still_a_token_problem(
    client: LaunchDarklyClient, mock: Any, tmp_path: Any
) -> None:
    mock.get(f"{BASE}/files/exp-1.csv", status=403, json={"code": "forbidden", "message": "no"})
    with pytest.raises(Unauthorized):
        client.download_export(f"{BASE}/files/exp-1.csv", tmp_path / "m.csv")
    assert mock.calls[0].request.headers["Authorization"] == TOKEN


def test_a_download_is_streamed_not_read_whole(client: LaunchDarklyClient, tmp_path: Any) -> None:
    chunks_read: list[int] = []

    class Body(io.RawIOBase):
        def __init__(self) -> None:
            self.left = 10 * 1024 * 1024

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            n = min(len(buffer), self.left, 64 * 1024)
            buffer[:n] = b"k" * n
            self.left -= n
            chunks_read.append(n)
            return n

    def fake_get(url: str, **kwargs: Any) -> requests.Response:
        assert kwargs["stream"] is True
        response = requests.Response()
        response.status_code = 200
        response.raw = Body()
        return response

    client.session.get = fake_get  # type: ignore[method-assign]
    assert (
        client.download_export(f"{BASE}/f.csv", tmp_path / "m.csv", chunk_size=64 * 1024) == 10 * 1024 * 1024
    )
    assert max(chunks_read) <= 64 * 1024
    assert len(chunks_read) >= 160


def test_download_refuses_a_link_that_is_not_a_web_address(client: LaunchDarklyClient, tmp_path: Any) -> None:
    with pytest.raises(LaunchDarklyError):
        client.download_export("file:///etc/passwd", tmp_path / "m.csv")
    assert list(tmp_path.iterdir()) == []


def test_get_context_membership_asks_for_the_quoted_key(client: LaunchDarklyClient, mock: Any) -> None:
    mock.get(
        f"{SEGMENTS}/vip/contexts/a%2Fb%20c",
        json={"userKey": "a/b c", "included": True, "excluded": False},
    )
    assert client.get_context_membership("demo", "production", "vip", "a/b c")["included"] is True
    assert mock.calls[0].request.url == f"{SEGMENTS}/vip/contexts/a%2Fb%20c"


NOT_FOUND = {"code": "not_found", "message": "Invalid resource identifier"}


def test_a_404_for_a_key_of_a_segment_that_exists_is_not_a_member(
    client: LaunchDarklyClient, mock: Any
) -> None:
    """The spec gives both 404s one body, so the segment itself is asked for: there, so the key is no member."""
    mock.get(f"{SEGMENTS}/vip/contexts/never-seen", status=404, json=NOT_FOUND)
    mock.get(f"{SEGMENTS}/vip", json=segment_body())
    answer = client.get_context_membership("demo", "production", "vip", "never-seen")
    assert answer == {"userKey": "never-seen", "included": False, "excluded": False}
    assert [c.request.url for c in mock.calls] == [f"{SEGMENTS}/vip/contexts/never-seen", f"{SEGMENTS}/vip"]


def test_a_404_for_a_segment_that_is_gone_raises_segment_missing(
    client: LaunchDarklyClient, mock: Any
) -> None:
    mock.get(f"{SEGMENTS}/vip/contexts/u-1", status=404, json=NOT_FOUND)
    mock.get(f"{SEGMENTS}/vip", status=404, json=NOT_FOUND)
    with pytest.raises(SegmentMissing) as caught:
        client.get_context_membership("demo", "production", "vip", "u-1")
    assert not isinstance(caught.value, NotFound)  # never read as "not a member" by NotFound handlers
    assert caught.value.status == 404
    assert describe(caught.value) == (
        "This segment is no longer in LaunchDarkly: it, or its project or environment, has been deleted."
    )
    assert len(mock.calls) == 2


def test_a_404_then_a_standard_segment_answers_from_its_own_lists(
    client: LaunchDarklyClient, mock: Any
) -> None:
    standard = segment_body(unbounded=False, included=["u-in"], excluded=["u-out"])
    for key in ("u-in", "u-out", "u-other"):
        mock.get(f"{SEGMENTS}/vip/contexts/{key}", status=404, json=NOT_FOUND)
        mock.get(f"{SEGMENTS}/vip", json=standard)
    answers = [
        client.get_context_membership("demo", "production", "vip", k) for k in ("u-in", "u-out", "u-other")
    ]
    assert [(a["included"], a["excluded"]) for a in answers] == [(True, False), (False, True), (False, False)]


def test_a_failure_while_checking_the_segment_is_raised_as_itself(
    client: LaunchDarklyClient, mock: Any
) -> None:
    mock.get(f"{SEGMENTS}/vip/contexts/u-1", status=404, json=NOT_FOUND)
    mock.get(f"{SEGMENTS}/vip", status=401, json={"code": "unauthorized", "message": "Invalid access token"})
    with pytest.raises(Unauthorized):
        client.get_context_membership("demo", "production", "vip", "u-1")


def test_update_context_targets_sends_exact_json(client: LaunchDarklyClient, mock: Any) -> None:
    mock.post(
        f"{SEGMENTS}/vip/contexts",
        status=204,
        match=[matchers.json_params_matcher({"included": {"remove": ["u-1", "u-2"]}}, strict_match=True)],
    )
    client.update_context_targets("demo", "production", "vip", remove=["u-1", "u-2"])
    assert_headers(mock.calls[0].request)


def test_update_context_targets_adds_and_removes_in_one_call(client: LaunchDarklyClient, mock: Any) -> None:
    mock.post(
        f"{SEGMENTS}/vip/contexts",
        status=204,
        match=[
            matchers.json_params_matcher({"included": {"add": ["a"], "remove": ["b"]}}, strict_match=True)
        ],
    )
    client.update_context_targets("demo", "production", "vip", add=["a"], remove=["b"])


def test_update_context_targets_is_not_retried_on_429(
    client: LaunchDarklyClient, mock: Any, sleeps: list[float]
) -> None:
    mock.post(
        f"{SEGMENTS}/vip/contexts",
        status=429,
        json={"code": "rate_limited", "message": "slow down"},
        headers={"Retry-After": "3"},
    )
    with pytest.raises(RateLimited) as caught:
        client.update_context_targets("demo", "production", "vip", remove=["u-1"])
    assert caught.value.retry_at == NOW + 3
    assert len(mock.calls) == 1
    assert sleeps == []
