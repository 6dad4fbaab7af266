"""The finish of the pages: titles that name the page, numbers and times as people read them, empty
states that say what to do next, error pages in the product's look, the favicon, and the history's
forgiving text filters."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.test import Client, RequestFactory
from django.urls import include, path
from django.utils import timezone

from segments_app import import_display
from segments_app.models import ImportEvent, ImportRecord, ImportStatus
from tests import factories
from tests.launchdarkly_answers import segment_json

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
LIST = "/api/v2/segments/shop/live"
SITE = " · Segment Dashboard</title>"


def text(response: Any) -> str:
    """The page as a person reads it (factories.text), non-breaking spaces as plain ones."""
    return factories.text(response).replace("\xa0", " ")


def words(response: Any) -> str:
    """What a reader sees: the page's text without tags, its white space collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", text(response)).split())


def title(response: Any) -> str:
    found = re.search(r"<title>(.*?)</title>", text(response), re.S)
    assert found, "the page has no <title>"
    return " ".join(found.group(1).split())


def make_record(user: Any, status: str = ImportStatus.COMPLETE, **fields: Any) -> ImportRecord:
    """The factories' import record, finished unless `status` says otherwise."""
    return factories.make_record(user, status, **fields)


def at(record: ImportRecord, **fields: Any) -> ImportRecord:
    """Set times `auto_now_add` would not let a test choose."""
    ImportRecord.objects.filter(pk=record.pk).update(**fields)
    record.refresh_from_db()
    return record


def big_segment(real_ld: Any, key: str = "vip", name: str = "VIP customers", included: int = 1204331) -> None:
    """The factories' big segment, named and counted as these pages show it."""
    factories.big_segment(
        real_ld, key, name=name, _unboundedMetadata={"includedCount": included, "excludedCount": 0}
    )


# --- favicon -------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_favicon_answers_without_login() -> None:
    client = Client()
    response = client.get("/favicon.ico", follow=True)
    assert response.status_code == 200
    assert response.redirect_chain == [("/static/favicon.svg", 302)]
    assert response["Content-Type"].startswith("image/svg+xml")
    assert b"<svg" in b"".join(response.streaming_content)


@pytest.mark.django_db
def test_every_page_links_the_icon(client: Any) -> None:
    html = text(client.get("/accounts/login/"))
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in html


# --- titles --------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_titles_name_the_segment_pages(logged_in: Any, real_ld: Any) -> None:
    big_segment(real_ld)
    real_ld.mock.get(real_ld.url(LIST), json={"items": [segment_json("vip")], "totalCount": 1})
    assert title(logged_in.get("/")) == "Projects · Segment Dashboard"
    assert title(logged_in.get("/segments/shop/live/")) == "Segments · Live · Shop · Segment Dashboard"
    assert (
        title(logged_in.get("/segments/shop/live/vip/")) == "Segment VIP customers · Live · Segment Dashboard"
    )


@pytest.mark.django_db
def test_titles_name_the_import_pages(logged_in: Any, user: Any) -> None:
    record = make_record(user, original_filename="march.csv")
    assert title(logged_in.get(f"/imports/{record.pk}/")) == (
        f"Import #{record.pk}: march.csv · vip · Segment Dashboard"
    )
    assert title(logged_in.get("/imports/")) == "Import history · Segment Dashboard"
    assert title(logged_in.get("/activity/")) == "Segment activity · Segment Dashboard"
    assert title(logged_in.get("/sandbox/approvals/")) == "Sandbox approvals · Segment Dashboard"


NOSCRIPT_REFRESH = '<noscript><meta http-equiv="refresh" content="5"></noscript>'


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "reloads"),
    [
        (ImportStatus.VALIDATING, True),
        (ImportStatus.QUEUED, True),
        (ImportStatus.IN_PROGRESS, True),
        (ImportStatus.DRAFT, False),  # waits on a person (no preview running here)
        (ImportStatus.COMPLETE, False),
        (ImportStatus.REJECTED, False),
    ],
)
def test_without_javascript_a_running_imports_page_reloads_itself(
    logged_in: Any, user: Any, status: str, reloads: bool
) -> None:
    """Nothing polls without JavaScript: the page said "Checking the file — 0%" until reloaded by hand."""
    page = logged_in.get(f"/imports/{make_record(user, status=status).pk}/").content.decode()
    assert (NOSCRIPT_REFRESH in page) is reloads
    if reloads:
        assert page.index(NOSCRIPT_REFRESH) < page.index("</head>")


# --- numbers and times ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_big_counts_are_grouped_in_thousands(logged_in: Any, user: Any, real_ld: Any) -> None:
    record = make_record(user, key_count=1204331)
    history = text(logged_in.get("/imports/"))
    assert f'<span id="import-keys-{record.pk}">1,204,331</span>' in history
    assert "Complete — 1,204,331 keys" in history
    assert "<dt>Keys</dt><dd>1,204,331 keys</dd>" in text(logged_in.get(f"/imports/{record.pk}/"))
    big_segment(real_ld, included=2700)
    assert "2,700 contexts" in words(logged_in.get("/segments/shop/live/vip/"))
    upload = logged_in.get("/segments/shop/live/vip/imports/new/")
    assert "2,700 members now" in words(upload)
    assert title(upload) == "Upload CSV · VIP customers · Live · Segment Dashboard"


@pytest.mark.django_db
def test_page_numbers_and_list_counts_are_grouped(logged_in: Any, real_ld: Any) -> None:
    real_ld.add_projects()
    items = [segment_json(f"s{i}") for i in range(20)]
    real_ld.mock.get(real_ld.url(LIST), json={"items": items, "totalCount": 1_000_000})
    page = words(logged_in.get("/segments/shop/live/?page=1200"))
    assert "23,981–24,000 of 1,000,000" in page
    assert "Page 1,200 of 50,000" in page


@pytest.mark.django_db
def test_the_counted_filter_says_one_or_many() -> None:
    from segments_app.templatetags.dashboard_extras import counted

    assert counted(1204331, "key") == "1,204,331 keys"
    assert counted(1, "key") == "1 key"
    assert counted(0, "context") == "0 contexts"
    assert counted(3, "entry,entries") == "3 entries"


@pytest.mark.django_db
def test_times_read_ago_with_the_exact_time_on_hover(logged_in: Any, user: Any) -> None:
    record = at(make_record(user), created_at=timezone.now() - timedelta(minutes=3, seconds=5))
    exact = timezone.localtime(record.created_at).strftime("%Y-%m-%d %H:%M:%S")
    stamp = record.created_at.replace(microsecond=0).isoformat()
    element = f'<time datetime="{stamp}" title="{exact} UTC">3 minutes ago</time>'
    assert element in text(logged_in.get("/imports/"))
    assert element in text(logged_in.get(f"/imports/{record.pk}/"))


@pytest.mark.django_db
def test_timeline_and_activity_times_carry_the_exact_time(logged_in: Any, user: Any) -> None:
    from segments_app.models import SegmentActivity

    record = make_record(user)
    record.note("A note for the timeline.")
    SegmentActivity.objects.create(
        user=user,
        action=SegmentActivity.Action.CREATE,
        project_key="shop",
        environment_key="live",
        segment_key="vip",
        outcome=SegmentActivity.Outcome.SUCCEEDED,
    )
    pattern = r'<time datetime="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00" title="\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC">now</time>'
    assert re.search(
        pattern + " — <strong>Complete</strong>: A note for the timeline.",
        text(logged_in.get(f"/imports/{record.pk}/")),
    )
    assert re.search(pattern, text(logged_in.get("/activity/")))


@pytest.mark.django_db
def test_took_counts_from_when_the_draft_was_sent(logged_in: Any, user: Any) -> None:
    """A draft that waited three hours for someone to send it took five minutes, not three hours."""
    now = timezone.now()
    record = at(make_record(user, sent_by=user), created_at=now - timedelta(hours=3), finished_at=now)
    sent = ImportEvent.objects.create(
        record=record, status=ImportStatus.QUEUED, message="Sent.", actor=user, action=ImportEvent.Action.SENT
    )
    ImportEvent.objects.filter(pk=sent.pk).update(at=now - timedelta(minutes=5))
    assert f'<span id="import-took-{record.pk}">5 min</span>' in text(logged_in.get("/imports/"))
    assert "· took 5 min" in text(logged_in.get(f"/imports/{record.pk}/"))
    # An import sent as soon as it was checked counts from its upload.
    direct = at(make_record(user), created_at=now - timedelta(minutes=2), finished_at=now)
    assert f'<span id="import-took-{direct.pk}">2 min</span>' in text(logged_in.get("/imports/"))


@pytest.mark.django_db
def test_a_discarded_draft_says_discarded(logged_in: Any, user: Any, real_ld: Any) -> None:
    draft = make_record(user, status=ImportStatus.DRAFT)
    assert draft.cancel(user)
    queued = make_record(user, status=ImportStatus.QUEUED)
    assert queued.cancel(user)
    history = text(logged_in.get("/imports/"))
    assert re.search(rf'id="import-badge-{draft.pk}"[^>]*>Discarded<', history)
    assert re.search(rf'id="import-badge-{queued.pk}"[^>]*>Cancelled<', history)
    assert f'<span id="import-took-{draft.pk}"></span>' in history  # a draft never sent took nothing
    assert re.search(r">Discarded<", text(logged_in.get(f"/imports/{draft.pk}/")))
    big_segment(real_ld)
    segment_page = text(logged_in.get("/segments/shop/live/vip/"))
    assert re.search(rf'id="import-badge-{draft.pk}"[^>]*>Discarded<', segment_page)


@pytest.mark.django_db
def test_the_history_reads_list_facts_in_a_fixed_number_of_queries(
    logged_in: Any, user: Any, django_assert_max_num_queries: Any
) -> None:
    for _ in range(12):
        record = make_record(user, status=ImportStatus.DRAFT, sent_by=user)
        record.cancel(user)
    logged_in.get("/imports/")  # warm the session and permission caches
    with django_assert_max_num_queries(12):
        assert logged_in.get("/imports/").status_code == 200


# --- history filters -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_history_text_filters_match_any_part_in_any_case(
    logged_in: Any, user: Any, django_user_model: Any
) -> None:
    alice = django_user_model.objects.create_user("Alice.Smith", password="x-long-password-1")
    vip = make_record(user, segment_key="VIP-customers", original_filename="Q3-List.csv")
    churn = make_record(alice, segment_key="churn-risk", original_filename="weekly.csv")

    def shown(query: str) -> set[int]:
        html = text(logged_in.get(f"/imports/{query}"))
        return {int(pk) for pk in re.findall(r'href="/imports/(\d+)/"', html)}

    assert shown("?segment=vip") == {vip.pk}
    assert shown("?segment=RISK") == {churn.pk}
    assert shown("?file=list") == {vip.pk}
    assert shown("?file=.CSV") == {vip.pk, churn.pk}
    assert shown("?user=smith") == {churn.pk}
    assert shown("?user=smith&segment=vip") == set()
    assert shown("?project=sho") == set()  # project and environment stay exact keys


@pytest.mark.django_db
def test_history_filter_form_offers_the_file_name(logged_in: Any) -> None:
    html = text(logged_in.get("/imports/?file=march"))
    assert re.search(r'<label for="id_file">File name</label>', html)
    assert re.search(r'<input[^>]*name="file"[^>]*value="march"', html) or re.search(
        r'<input[^>]*value="march"[^>]*name="file"', html
    )


# --- empty states --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_empty_history_says_how_to_import(logged_in: Any) -> None:
    page = words(logged_in.get("/imports/"))
    assert "No imports yet." in page
    assert "open a big segment and choose “Upload CSV”" in page


@pytest.mark.django_db
def test_a_history_filter_that_matches_nothing_offers_to_clear_it(logged_in: Any, user: Any) -> None:
    make_record(user)
    response = logged_in.get("/imports/?segment=nothing-like-it")
    assert "No imports match these filters." in words(response)
    assert '<a href="/imports/">clear the filters</a>' in text(response)
    assert "No imports yet." not in words(response)


@pytest.mark.django_db
def test_empty_activity_says_what_will_appear(logged_in: Any) -> None:
    page = words(logged_in.get("/activity/"))
    assert "No segment has been created or deleted through the dashboard yet." in page
    assert "pick a project and environment" in page


@pytest.mark.django_db
def test_empty_segment_list_offers_to_create_one_only_to_editors(
    client: Any, make_user: Any, real_ld: Any
) -> None:
    real_ld.add_projects()
    real_ld.mock.get(real_ld.url(LIST), json={"items": [], "totalCount": 0})
    client.force_login(make_user("editor"))
    editor = text(client.get("/segments/shop/live/"))
    assert '<a role="button" href="/segments/shop/live/new/">Create the first segment</a>' in editor
    client.force_login(make_user("viewer"))
    viewer = text(client.get("/segments/shop/live/"))
    assert "Live has no segments yet." in viewer
    assert "/segments/shop/live/new/" not in viewer
    assert "for the Segment editors role" in viewer


@pytest.mark.django_db
def test_a_big_segment_with_no_imports_says_how_to_fill_it(logged_in: Any, real_ld: Any) -> None:
    big_segment(real_ld)
    page = words(logged_in.get("/segments/shop/live/vip/"))
    assert "No CSV has been imported into this segment through the dashboard yet." in page
    assert "it is checked before anything is sent to LaunchDarkly" in page


@pytest.mark.django_db
def test_nothing_to_approve_links_to_the_waiting_imports(logged_in: Any) -> None:
    response = logged_in.get("/sandbox/approvals/")
    assert "No import you may approve is waiting for approval." in words(response)
    assert 'href="/imports/?status=pending_approval"' in text(response)


# --- error pages ---------------------------------------------------------------------------------------


def in_the_layout(html: str) -> bool:
    """The product's page: its stylesheet, its header with the brand, and a main landmark."""
    return (
        '<link rel="stylesheet" href="/static/css/app.css">' in html
        and 'class="brand"' in html
        and '<main id="main" class="container">' in html
    )


@login_not_required
def explode(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("internal detail that must not leak")


urlpatterns = [path("boom/", explode), path("", include("dashboard.urls"))]


@pytest.mark.django_db
def test_404_is_in_the_layout_and_says_what_to_do(logged_in: Any) -> None:
    response = logged_in.get("/no/such/page/")
    assert response.status_code == 404
    html = text(response)
    assert in_the_layout(html)
    assert title(response) == "Page not found · Segment Dashboard"
    assert "Start again from the projects" in words(response)
    assert '<a role="button" href="/">Go to the projects</a>' in html


@pytest.mark.django_db
def test_500_is_in_the_layout_and_leaks_nothing(settings: Any) -> None:
    settings.ROOT_URLCONF = __name__
    settings.DEBUG = False
    response = Client(raise_request_exception=False).get("/boom/")
    assert response.status_code == 500
    html = text(response)
    assert in_the_layout(html)
    assert title(response) == "Something went wrong · Segment Dashboard"
    assert "Try again in a minute." in words(response)
    assert "internal detail" not in html
    assert "Traceback" not in html


def test_500_renders_without_the_database() -> None:
    """No django_db mark: any query while rendering would fail this test. The 500 page must show even
    when the database is what broke."""
    from django.views.defaults import server_error

    response = server_error(RequestFactory().get("/"))
    assert response.status_code == 500
    assert in_the_layout(response.content.decode())


def test_400_renders_without_the_database() -> None:
    from django.core.exceptions import BadRequest
    from django.views.defaults import bad_request

    response = bad_request(RequestFactory().get("/"), BadRequest("x"))
    assert response.status_code == 400
    html = response.content.decode()
    assert in_the_layout(html)
    assert "nothing was changed" in html


@pytest.mark.django_db
def test_403_is_in_the_layout_and_says_whom_to_ask(client: Any, make_user: Any, real_ld: Any) -> None:
    client.force_login(make_user("viewer"))
    response = client.get("/segments/shop/live/new/")
    assert response.status_code == 403
    html = text(response)
    assert in_the_layout(html)
    said = words(response)
    assert "Nothing was changed. If your work needs it, ask an administrator of this dashboard" in said
    assert said.count("administrator") == 1  # whom to ask, once


@pytest.mark.django_db
def test_csrf_failure_is_in_the_layout(user: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post("/accounts/logout/")
    assert response.status_code == 403
    assert in_the_layout(text(response))
    assert "Go back, reload the page, and send the form again." in words(response)


# --- layout --------------------------------------------------------------------------------------------


def test_every_table_sits_in_a_sideways_scrolling_box() -> None:
    """At 390 px a wide table scrolls inside its box instead of widening the page (app.css
    `.table-scroll`). A box without a link or button inside is focusable, so a keyboard can scroll it."""
    checked = 0
    for template in TEMPLATES.rglob("*.html"):
        source = template.read_text()
        for match in re.finditer(r"<table\b", source):
            opening = source[: match.start()].rstrip()
            box = re.search(r'<div class="table-scroll"[^>]*>$', opening)
            assert box, f"{template.relative_to(TEMPLATES)}: a <table> outside a .table-scroll box"
            table = source[match.start() : source.index("</table>", match.start())]
            if not re.search(r"<a |<button", table):
                assert 'tabindex="0"' in box.group(0), (
                    f"{template.name}: a scrolling box a keyboard cannot reach"
                )
            checked += 1
    assert checked >= 6


def test_the_stylesheet_shows_focus_and_folds_the_navigation() -> None:
    css = (Path(__file__).resolve().parents[1] / "static/css/app.css").read_text()
    assert re.search(r":focus-visible\s*\{\s*outline: 3px solid", css)
    assert "@media (max-width: 767px)" in css
    assert re.search(r"\.table-scroll \{ overflow-x: auto;", css)


@pytest.mark.django_db
def test_the_navigation_marks_where_you_are(logged_in: Any) -> None:
    approvals = text(logged_in.get("/sandbox/approvals/"))
    assert '<a href="/sandbox/approvals/" aria-current="page">Sandbox approvals</a>' in approvals
    assert '<a href="/imports/" aria-current="page">' not in approvals
    history = text(logged_in.get("/imports/"))
    assert '<a href="/imports/" aria-current="page">Import history</a>' in history
    # Sections and account are separate groups, so a narrow window can fold the sections under the brand.
    assert re.search(
        r'<ul class="site-links">.*?Import history.*?</ul>\s*<ul class="account">', history, re.S
    )


@pytest.mark.django_db
def test_a_record_read_before_its_draft_was_discarded_says_discarded_after(user: Any) -> None:
    draft = make_record(user, status=ImportStatus.DRAFT)
    assert import_display.badge_label(draft) == "Draft — not sent"  # was_discarded is read, as False
    assert draft.cancel(user)
    assert import_display.badge_label(draft) == "Discarded"
