"""Segment pages: list, detail, create and delete, and the activity record of every change."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from responses import matchers

from sandbox.models import SandboxSegment
from segments_app.forms import UNAVAILABLE_NOTHING_CREATED, UNAVAILABLE_NOTHING_DELETED
from segments_app.models import SegmentActivity
from tests.factories import text
from tests.launchdarkly_answers import segment_json

LIST = "/api/v2/segments/shop/live"
PROJECTS = "/api/v2/projects"


def segments_page(count: int, total: int) -> dict[str, Any]:
    return {"items": [segment_json(f"s{i}") for i in range(count)], "totalCount": total}


def ld_query(call: Any) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(call.request.url).query).items()}


# --- list ------------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "sent"),
    [
        ("", {"limit": "20", "offset": "0", "sort": "name"}),
        ("?page=3", {"limit": "20", "offset": "40", "sort": "name"}),
        ("?q=vip", {"limit": "20", "offset": "0", "sort": "name", "filter": 'query equals "vip"'}),
        ("?tag=beta", {"limit": "20", "offset": "0", "sort": "name", "filter": 'tags anyOf ["beta"]'}),
        ("?kind=big", {"limit": "20", "offset": "0", "sort": "name", "filter": "unbounded equals true"}),
        (
            "?kind=standard",
            {"limit": "20", "offset": "0", "sort": "name", "filter": "unbounded equals false"},
        ),
        ("?sort=-lastModified", {"limit": "20", "offset": "0", "sort": "-lastModified"}),
        ("?sort=-name&page=2", {"limit": "20", "offset": "20", "sort": "-name"}),
        (
            "?q=vip&tag=beta&kind=big&sort=lastModified&page=4",
            {
                "limit": "20",
                "offset": "60",
                "sort": "lastModified",
                "filter": 'query equals "vip",tags anyOf ["beta"],unbounded equals true',
            },
        ),
        ("?q=&tag=&kind=&sort=", {"limit": "20", "offset": "0", "sort": "name"}),
        ("?sort=bogus&kind=huge&page=zero", {"limit": "20", "offset": "0", "sort": "name"}),
    ],
)
def test_list_sends_the_right_query_to_launchdarkly(
    logged_in: Any, real_ld: Any, query: str, sent: dict
) -> None:
    real_ld.add_projects()
    real_ld.mock.get(real_ld.url(LIST), json=segments_page(20, 500))
    response = logged_in.get(f"/segments/shop/live/{query}")
    assert response.status_code == 200
    calls = real_ld.calls_to(LIST)
    assert len(calls) == 1
    assert ld_query(calls[0]) == sent


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("page", "count", "shown", "previous", "following"),
    [
        (1, 20, "1–20 of 312", None, "?q=s&page=2"),
        (8, 20, "141–160 of 312", "?q=s&page=7", "?q=s&page=9"),
        (16, 12, "301–312 of 312", "?q=s&page=15", None),
    ],
)
def test_pagination_links_on_first_middle_and_last_page(
    logged_in: Any,
    real_ld: Any,
    page: int,
    count: int,
    shown: str,
    previous: str | None,
    following: str | None,
) -> None:
    real_ld.add_projects()
    real_ld.mock.get(real_ld.url(LIST), json=segments_page(count, 312))
    html = text(logged_in.get(f"/segments/shop/live/?q=s&page={page}"))
    assert shown in html
    assert f"Page {page} of 16" in html
    prev_links = re.findall(r'<a href="([^"]+)" rel="prev"', html)
    next_links = re.findall(r'<a href="([^"]+)" rel="next"', html)
    assert prev_links == ([previous] if previous else [])
    assert next_links == ([following] if following else [])


@pytest.mark.django_db
def test_list_columns_and_import_marker(logged_in: Any, real_ld: Any) -> None:
    real_ld.add_projects()
    real_ld.mock.get(
        real_ld.url(LIST),
        json={
            "items": [
                segment_json(
                    "big-one",
                    name="Big one",
                    unbounded=True,
                    unboundedContextKind="device",
                    tags=["vip", "q4"],
                    _unboundedMetadata={"includedCount": 1204331},
                    _importInProgress=True,
                    lastModifiedDate=1_700_000_000_000,
                ),
                segment_json("std", name="Standard one", included=["a", "b"]),
            ],
            "totalCount": 2,
        },
    )
    html = text(logged_in.get("/segments/shop/live/"))
    assert 'href="/segments/shop/live/big-one/">Big one</a>' in html
    assert "<code>big-one</code>" in html
    assert "Big · device" in html
    assert "1,204,331" in html
    assert "Import running" in html
    assert 'href="/segments/shop/live/?tag=vip">vip</a>' in html
    assert 'datetime="2023-11-14T22:13:20+00:00"' in html
    assert 'title="2023-11-14 22:13:20 UTC"' in html
    assert html.count("Import running") == 1
    assert "Standard" in html


@pytest.mark.django_db
def test_htmx_search_returns_only_the_results_fragment(logged_in: Any, real_ld: Any) -> None:
    real_ld.add_projects()
    real_ld.mock.get(real_ld.url(LIST), json=segments_page(3, 3))
    response = logged_in.get("/segments/shop/live/?q=s", headers={"HX-Request": "true"})
    html = text(response)
    assert "<html" not in html
    assert "1–3 of 3" in html
    assert "<table" in html
    full = text(logged_in.get("/segments/shop/live/?q=s"))
    assert "<html" in full
    assert 'hx-push-url="true"' in full
    assert 'hx-trigger="input changed delay:300ms from:#id_q' in full
    assert 'value="s"' in full  # the same URL without JavaScript shows the same search


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?q=abc", "No segments match “abc”. The search looks at names, keys and descriptions"),
        ("?tag=zzz", "No segments match with tag “zzz”."),
        ("?q=abc", "or clear the filters to see all of Live’s segments."),
        ("", "Live has no segments yet. A segment is a list of contexts"),
        ("", "Create the first segment"),
    ],
)
def test_helpful_empty_states(logged_in: Any, real_ld: Any, query: str, message: str) -> None:
    real_ld.add_projects()
    real_ld.mock.get(real_ld.url(LIST), json={"items": [], "totalCount": 0})
    html = re.sub(r"<[^>]+>", "", text(logged_in.get(f"/segments/shop/live/{query}")))
    assert message in " ".join(html.split())


@pytest.mark.django_db
def test_environment_switcher_keeps_the_filters(logged_in: Any, real_ld: Any) -> None:
    real_ld.add_projects()
    real_ld.mock.get(real_ld.url(LIST), json=segments_page(1, 1))
    html = text(logged_in.get("/segments/shop/live/?q=vip&kind=big&page=2"))
    assert 'href="/segments/shop/test/?q=vip&kind=big"' in html
    assert 'href="/segments/shop/live/?q=vip&kind=big" aria-current="page"' in html


@pytest.mark.django_db
def test_list_makes_one_call_per_resource_and_caches_projects(logged_in: Any, real_ld: Any) -> None:
    real_ld.add_projects()
    real_ld.mock.get(real_ld.url(LIST), json=segments_page(2, 2))
    logged_in.get("/segments/shop/live/")
    logged_in.get("/segments/shop/live/?page=1")
    assert len(real_ld.calls_to(PROJECTS)) == 1
    assert len(real_ld.calls_to(LIST)) == 2  # segment data is always fresh


@pytest.mark.django_db
def test_unknown_environment_is_404_and_launchdarkly_failure_is_explained(
    logged_in: Any, real_ld: Any
) -> None:
    real_ld.add_projects()
    assert logged_in.get("/segments/shop/nowhere/").status_code == 404
    real_ld.mock.get(real_ld.url(LIST), status=503, json={"code": "unavailable", "message": "down"})
    response = logged_in.get("/segments/shop/live/")
    assert "LaunchDarkly is unavailable right now" in text(response)


# --- detail ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_detail_of_a_big_segment_shows_every_field(logged_in: Any, real_ld: Any) -> None:
    real_ld.add_projects()
    real_ld.mock.get(
        real_ld.url(f"{LIST}/vip"),
        json=segment_json(
            "vip",
            name="VIP customers",
            description="Top tier",
            tags=["vip"],
            unbounded=True,
            unboundedContextKind="user",
            version=7,
            _importInProgress=True,
            _unboundedMetadata={"includedCount": 1204331, "excludedCount": 3},
            _flags=[{"key": "vip-lounge", "name": "VIP lounge"}],
        ),
    )
    response = logged_in.get("/segments/shop/live/vip/")
    html = text(response)
    assert "<h1>VIP customers</h1>" in html
    assert '<code id="segment-key">vip</code>' in html
    assert 'data-copy="#segment-key"' in html
    assert "Top tier" in html
    assert "Big (list-based) segment of <strong>user</strong> contexts" in html
    assert 'title="2023-11-14 22:13:20 UTC"' in html
    assert "<dd>7</dd>" in html
    assert "1,204,331 contexts" in html
    assert "3 contexts" in html
    assert "VIP lounge <code>vip-lounge</code>" in html
    assert "Yes — LaunchDarkly is importing into this segment now." in html
    assert "Individual targets" not in html
    assert len(real_ld.calls_to(f"{LIST}/vip")) == 1
    assert len(real_ld.calls_to(PROJECTS)) == 1


@pytest.mark.django_db
def test_detail_of_a_standard_segment_lists_first_100_keys_and_rules(logged_in: Any, real_ld: Any) -> None:
    real_ld.add_projects()
    included = [f"user-{i:03d}" for i in range(150)]
    real_ld.mock.get(
        real_ld.url(f"{LIST}/beta"),
        json=segment_json(
            "beta",
            name="Beta",
            included=included,
            excluded=["blocked-1"],
            rules=[
                {
                    "clauses": [
                        {"attribute": "email", "op": "endsWith", "values": ["@acme.test"], "negate": False},
                        {"attribute": "country", "op": "in", "values": ["DE", "FR"], "negate": True},
                    ],
                    "weight": 25000,
                }
            ],
        ),
    )
    html = text(logged_in.get("/segments/shop/live/beta/"))
    assert "Included (150)" in html
    assert "<code>user-099</code>" in html
    assert "<code>user-100</code>" not in html
    assert "Showing the first 100 of 150." in html
    assert "Excluded (1)" in html
    assert "<code>blocked-1</code>" in html
    assert (
        "<code>email</code> endsWith <code>@acme.test</code> <em>and</em> <code>country</code> not in "
        "<code>DE</code>, <code>FR</code>" in html
    )
    assert "(25% rollout)" in html


@pytest.mark.django_db
def test_detail_of_a_missing_segment_is_404(logged_in: Any, real_ld: Any) -> None:
    real_ld.add_projects()
    real_ld.mock.get(real_ld.url(f"{LIST}/gone"), status=404, json={"code": "not_found", "message": "x"})
    response = logged_in.get("/segments/shop/live/gone/")
    assert response.status_code == 404
    assert "Page not found" in text(response)


# --- create -----------------------------------------------------------------------------------------


def create_data(**overrides: str) -> dict[str, str]:
    data = {
        "name": "VIP customers",
        "key": "vip-customers",
        "description": "Top tier",
        "tags": "vip, q4",
        "unbounded": "on",
        "context_kind": "user",
        "submission_token": "token-1",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


@pytest.mark.django_db
def test_create_sends_the_segment_and_shows_it(logged_in: Any, real_ld: Any, user: Any) -> None:
    real_ld.add_projects()
    expected = {
        "key": "vip-customers",
        "name": "VIP customers",
        "description": "Top tier",
        "tags": ["vip", "q4"],
        "unbounded": True,
        "unboundedContextKind": "user",
    }
    real_ld.mock.post(
        real_ld.url(LIST),
        status=201,
        json=segment_json("vip-customers", name="VIP customers"),
        match=[matchers.json_params_matcher(expected, strict_match=True)],
    )
    response = logged_in.post("/segments/shop/live/new/", create_data())
    assert response.status_code == 302
    assert response["Location"] == "/segments/shop/live/vip-customers/"
    assert json.loads(real_ld.calls_to(LIST)[0].request.body) == expected
    activity = SegmentActivity.objects.get()
    assert (
        activity.action,
        activity.outcome,
        activity.user,
        activity.project_key,
        activity.environment_key,
        activity.segment_key,
    ) == ("create", "succeeded", user, "shop", "live", "vip-customers")


@pytest.mark.django_db
def test_create_form_page(logged_in: Any, real_ld: Any) -> None:
    real_ld.add_projects()
    html = text(logged_in.get("/segments/shop/live/new/"))
    for field in ("name", "key", "description", "tags", "unbounded", "context_kind"):
        assert f'<label for="id_{field}">' in html
    assert 'value="user"' in html
    assert "data-key-from-name" in html
    assert re.search(r'name="submission_token" value="[0-9a-f]{32}"', html)


@pytest.mark.django_db
def test_invalid_form_never_reaches_launchdarkly(logged_in: Any, real_ld: Any) -> None:
    real_ld.add_projects()
    response = logged_in.post("/segments/shop/live/new/", create_data(key="bad key", tags="ok, bad tag"))
    html = text(response)
    assert "Use only letters, digits" in html
    assert "These tags are not allowed: bad tag." in html
    assert 'value="bad key"' in html
    assert 'value="ok, bad tag"' in html
    assert real_ld.calls_to(LIST) == []
    assert SegmentActivity.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("answer", "field", "message"),
    [
        (
            {"status": 409, "json": {"code": "conflict", "message": "exists"}},
            "key",
            'A segment with key "vip-customers" already exists in Live.',
        ),
        (
            {"status": 400, "json": {"code": "invalid_request", "message": "Tags are too many"}},
            None,
            "LaunchDarkly refused the segment: Tags are too many",
        ),
        (
            {"status": 401, "json": {"code": "unauthorized", "message": "Invalid access token"}},
            None,
            "LaunchDarkly did not accept the configured access token: it is invalid or expired. "
            "Ask an administrator to check the LD_API_TOKEN setting.",
        ),
        (
            {"status": 403, "json": {"code": "forbidden", "message": "Forbidden"}},
            None,
            "LaunchDarkly refused this: the configured access token lacks permission for it. "
            "Ask an administrator to give the token the role it needs.",
        ),
        (
            {"status": 404, "json": {"code": "not_found", "message": "Unknown"}},
            None,
            "LaunchDarkly does not know this project or environment.",
        ),
        (
            {"status": 429, "json": {"code": "rate_limited", "message": "slow"}},
            None,
            UNAVAILABLE_NOTHING_CREATED,
        ),
        ({"status": 500, "json": {"code": "internal", "message": "boom"}}, None, UNAVAILABLE_NOTHING_CREATED),
        ({"status": 503, "body": "<html>down</html>"}, None, UNAVAILABLE_NOTHING_CREATED),
        ({"body": requests.ReadTimeout("slow")}, None, UNAVAILABLE_NOTHING_CREATED),
        ({"body": requests.ConnectionError("refused")}, None, UNAVAILABLE_NOTHING_CREATED),
    ],
)
def test_launchdarkly_errors_map_onto_the_form_and_keep_what_was_typed(
    logged_in: Any, real_ld: Any, answer: dict, field: str | None, message: str
) -> None:
    real_ld.add_projects()
    real_ld.mock.post(real_ld.url(LIST), **answer)
    response = logged_in.post("/segments/shop/live/new/", create_data())
    html = text(response)
    assert response.status_code == 200
    assert message in html
    if field:
        # The message sits under its field.
        assert re.search(
            rf'id="id_{field}".*?<small class="field-error" role="alert">{re.escape(message)}', html, re.S
        )
    else:
        assert re.search(rf'<div class="error-panel" role="alert">\s*<p>{re.escape(message)}</p>', html)
    for value in (
        'value="VIP customers"',
        'value="vip-customers"',
        "Top tier",
        'value="vip, q4"',
        "checked",
        'value="token-1"',
    ):
        assert value in html
    assert real_ld.token not in html
    assert len(real_ld.calls_to(LIST)) == 1
    assert not SegmentActivity.objects.filter(outcome="succeeded").exists()
    assert SegmentActivity.objects.get().outcome == "failed"


@pytest.mark.django_db
def test_a_double_click_creates_one_segment_and_never_shows_a_409(logged_in: Any, real_ld: Any) -> None:
    real_ld.add_projects()
    real_ld.mock.post(real_ld.url(LIST), status=201, json=segment_json("vip-customers"))
    real_ld.mock.post(real_ld.url(LIST), status=409, json={"code": "conflict", "message": "exists"})
    first = logged_in.post("/segments/shop/live/new/", create_data())
    second = logged_in.post("/segments/shop/live/new/", create_data(), follow=True)
    assert first["Location"] == "/segments/shop/live/vip-customers/"
    assert second.redirect_chain[0][0] == "/segments/shop/live/vip-customers/"
    assert len(real_ld.calls_to(LIST)) == 1
    assert SegmentActivity.objects.filter(outcome="succeeded").count() == 1


@pytest.mark.django_db
def test_retry_after_no_answer_treats_our_own_409_as_created(logged_in: Any, real_ld: Any) -> None:
    real_ld.add_projects()
    real_ld.mock.post(real_ld.url(LIST), body=requests.ReadTimeout("slow"))
    real_ld.mock.post(real_ld.url(LIST), status=409, json={"code": "conflict", "message": "exists"})
    real_ld.mock.get(
        real_ld.url(f"{LIST}/vip-customers"),
        json=segment_json("vip-customers", name="VIP customers", unbounded=True),
    )
    first = logged_in.post("/segments/shop/live/new/", create_data())
    assert UNAVAILABLE_NOTHING_CREATED in text(first)
    second = logged_in.post("/segments/shop/live/new/", create_data())
    assert second.status_code == 302
    assert second["Location"] == "/segments/shop/live/vip-customers/"
    assert list(SegmentActivity.objects.order_by("id").values_list("outcome", "error_code")) == [
        ("failed", "unavailable"),
        ("succeeded", ""),
    ]


@pytest.mark.django_db
def test_a_409_for_someone_elses_segment_is_still_a_conflict_after_a_retry(
    logged_in: Any, real_ld: Any
) -> None:
    real_ld.add_projects()
    real_ld.mock.post(real_ld.url(LIST), body=requests.ReadTimeout("slow"))
    real_ld.mock.post(real_ld.url(LIST), status=409, json={"code": "conflict", "message": "exists"})
    real_ld.mock.get(
        real_ld.url(f"{LIST}/vip-customers"), json=segment_json("vip-customers", name="Other team's")
    )
    logged_in.post("/segments/shop/live/new/", create_data())
    second = logged_in.post("/segments/shop/live/new/", create_data())
    assert 'A segment with key "vip-customers" already exists in Live.' in text(second)


# --- delete -----------------------------------------------------------------------------------------


def delete_data(key: str = "vip", token: str = "del-1") -> dict[str, str]:
    return {"confirm_key": key, "submission_token": token}


@pytest.mark.django_db
def test_delete_needs_the_typed_key(logged_in: Any, real_ld: Any) -> None:
    real_ld.add_projects()
    page = text(logged_in.get("/segments/shop/live/vip/delete/"))
    assert '<label for="id_confirm_key">Type the segment key to confirm</label>' in page
    response = logged_in.post("/segments/shop/live/vip/delete/", delete_data(key="vi"))
    assert 'Type "vip" exactly to confirm.' in text(response)
    assert real_ld.calls_to(f"{LIST}/vip") == []
    assert SegmentActivity.objects.count() == 0


@pytest.mark.django_db
def test_delete_calls_launchdarkly_and_records_it(logged_in: Any, real_ld: Any, user: Any) -> None:
    real_ld.add_projects()
    real_ld.mock.delete(real_ld.url(f"{LIST}/vip"), status=204)
    response = logged_in.post("/segments/shop/live/vip/delete/", delete_data(), follow=True)
    assert response.redirect_chain[0][0] == "/segments/shop/live/"
    assert "Segment “vip” was deleted." in text(response)
    assert [c.request.method for c in real_ld.calls_to(f"{LIST}/vip")] == ["DELETE"]
    activity = SegmentActivity.objects.get()
    assert (activity.action, activity.outcome, activity.user) == ("delete", "succeeded", user)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (
            {"status": 404, "json": {"code": "not_found", "message": "x"}},
            "LaunchDarkly has no such segment any more: it may have been deleted already.",
        ),
        (
            {"status": 409, "json": {"code": "conflict", "message": "Segment is used by a flag"}},
            "LaunchDarkly refused to delete the segment: Segment is used by a flag",
        ),
        ({"status": 503, "json": {"code": "unavailable", "message": "down"}}, UNAVAILABLE_NOTHING_DELETED),
        ({"status": 403, "json": {"code": "forbidden", "message": "no"}}, "lacks permission"),
    ],
)
def test_delete_errors_are_shown(logged_in: Any, real_ld: Any, answer: dict, message: str) -> None:
    real_ld.add_projects()
    real_ld.mock.delete(real_ld.url(f"{LIST}/vip"), **answer)
    html = text(logged_in.post("/segments/shop/live/vip/delete/", delete_data()))
    assert message in html
    activity = SegmentActivity.objects.get()
    assert activity.outcome == "failed"
    assert activity.error_status == answer["status"]


# --- end to end against the sandbox -------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_create_and_delete_end_to_end_against_the_sandbox(
    logged_in: Any, contract: list[str], user: Any
) -> None:
    created = logged_in.post(
        "/segments/demo/staging/new/", create_data(key="e2e-segment", name="E2E segment"), follow=True
    )
    html = text(created)
    assert "Segment “E2E segment” was created." in html
    assert "<h1>E2E segment</h1>" in html
    stored = SandboxSegment.objects.get(key="e2e-segment", environment__key="staging")
    assert (stored.unbounded, stored.unbounded_context_kind, stored.tags) == (True, "user", ["vip", "q4"])
    listed = text(logged_in.get("/segments/demo/staging/?q=e2e"))
    assert "1–1 of 1" in listed
    deleted = logged_in.post(
        "/segments/demo/staging/e2e-segment/delete/", delete_data(key="e2e-segment"), follow=True
    )
    assert "Segment “e2e-segment” was deleted." in text(deleted)
    assert not SandboxSegment.objects.filter(key="e2e-segment").exists()
    activity = list(
        SegmentActivity.objects.order_by("id").values_list("action", "outcome", "segment_key", "user")
    )
    assert activity == [
        ("create", "succeeded", "e2e-segment", user.pk),
        ("delete", "succeeded", "e2e-segment", user.pk),
    ]
    page = text(logged_in.get("/activity/"))
    assert page.count("e2e-segment") == 2
    assert "Succeeded" in page


@pytest.mark.django_db(transaction=True)
def test_search_with_a_multi_word_query_and_a_tag_against_the_sandbox(
    logged_in: Any, contract: list[str]
) -> None:
    """The list page's search reaches the sandbox as the documented filter (quoted values) and finds by
    several words and by a tag, a tag with a space included."""
    both = text(logged_in.get("/segments/demo/production/", {"q": "VIP customers", "tag": "marketing"}))
    assert "1–1 of 1" in both
    assert "/segments/demo/production/vip-customers/" in both
    assert contract[-1] == (
        "GET 200 /sandbox/api/v2/segments/demo/production?limit=20&offset=0&sort=name"
        "&filter=query+equals+%22VIP+customers%22%2Ctags+anyOf+%5B%22marketing%22%5D"
    )
    words = text(logged_in.get("/segments/demo/production/", {"q": "opted in to try"}))
    assert "1–1 of 1" in words
    assert "/segments/demo/production/beta-testers/" in words
    SandboxSegment.objects.filter(key="churn-risk", environment__key="production").update(
        tags=["at risk", 'the "old" list']
    )
    for tag in ("at risk", 'the "old" list'):
        tagged = text(logged_in.get("/segments/demo/production/", {"tag": tag}))
        assert "1–1 of 1" in tagged, tag
        assert "/segments/demo/production/churn-risk/" in tagged
    none = text(logged_in.get("/segments/demo/production/", {"q": "VIP customers", "tag": "beta"}))
    assert "/segments/demo/production/vip-customers/" not in none


@pytest.mark.django_db(transaction=True)
def test_duplicate_key_against_the_sandbox_is_shown_on_the_key_field(
    logged_in: Any, contract: list[str]
) -> None:
    response = logged_in.post("/segments/demo/production/new/", create_data(key="vip-customers"))
    assert 'A segment with key "vip-customers" already exists in Production.' in text(response)
    failed = SegmentActivity.objects.get()
    assert (failed.outcome, failed.error_status) == ("failed", 409)


@pytest.mark.django_db
def test_activity_page_shows_launchdarkly_errors(logged_in: Any, user: Any) -> None:
    SegmentActivity.objects.create(
        action="create",
        outcome="failed",
        user=user,
        project_key="shop",
        environment_key="live",
        segment_key="k",
        error_status=400,
        error_code="invalid_request",
        error_message="Bad tags",
    )
    html = text(logged_in.get("/activity/"))
    assert "HTTP 400 invalid_request: Bad tags" in html
    assert "pm" in html
