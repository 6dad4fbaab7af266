"""htmx done the way django-htmx means it: one view answers the page and its fragment, the fragment only
to a real htmx request (never to a history restore), and every such view says `Vary: HX-Request`; and
every enhanced control still works as plain HTML."""

from __future__ import annotations

import re
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from segments_app import import_display
from segments_app.models import ImportRecord
from tests.factories import FORM, HTMX, big_segment, make_record, text

RESTORE = {"HX-Request": "true", "HX-History-Restore-Request": "true"}


def segment_list(real_ld: Any, user: Any) -> str:
    real_ld.add_projects()
    real_ld.mock.get(
        real_ld.url("/api/v2/segments/shop/live"),
        json={"items": [{"key": "vip", "name": "VIP", "tags": [], "creationDate": 1}], "totalCount": 1},
    )
    return "/segments/shop/live/?q=v"


def import_detail(real_ld: Any, user: Any) -> str:
    return f"/imports/{make_record(user).pk}/"


def import_history(real_ld: Any, user: Any) -> str:
    make_record(user)
    return "/imports/?status=in_progress"


# Each page that htmx updates in place, and what only its fragment starts with.
PAGES: dict[str, tuple[Callable[[Any, Any], str], str]] = {
    "segment list": (segment_list, '<p class="count">'),
    "import detail": (import_detail, '<div id="import-live"'),
    "import history": (import_history, '<p><a href="/imports/export.csv?status=in_progress" download>'),
}


@pytest.mark.django_db
@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize(
    ("headers", "whole_page"),
    [({}, True), (HTMX, False), (RESTORE, True)],
    ids=["plain request", "htmx request", "history restore"],
)
def test_one_view_answers_the_page_or_its_fragment(
    logged_in: Any, real_ld: Any, user: Any, page: str, headers: dict[str, str], whole_page: bool
) -> None:
    set_up, fragment_start = PAGES[page]
    response = logged_in.get(set_up(real_ld, user), headers=headers)
    assert response.status_code == 200
    html = text(response)
    if whole_page:
        # Back to a filtered list after htmx's cache is gone: the whole page, never a bare table.
        assert html.startswith("<!doctype html>")
        assert '<main id="main"' in html
        assert fragment_start in html
    else:
        assert html.lstrip().startswith(fragment_start)
        assert "<html" not in html
        assert "<main" not in html
    # Every answer, page or fragment, tells caches which request headers chose it.
    vary = {value.strip() for value in response["Vary"].split(",")}
    assert {"HX-Request", "HX-History-Restore-Request"} <= vary


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "page"),
    [("/imports/{pk}/badge/", "/imports/{pk}/"), ("/imports/statuses/?id={pk}", "/imports/")],
    ids=["badge", "table poll"],
)
def test_fragment_only_addresses_send_a_person_to_the_page(
    logged_in: Any, user: Any, path: str, page: str
) -> None:
    """A badge or a table's poll is only ever asked for by htmx; opened in a browser, it is a page."""
    record = make_record(user)
    address = path.format(pk=record.pk)
    plain = logged_in.get(address)
    assert (plain.status_code, plain["Location"]) == (302, page.format(pk=record.pk))
    assert "HX-Request" in plain["Vary"]
    fragment = logged_in.get(address, headers=HTMX)
    assert fragment.status_code == 200
    assert f'id="import-badge-{record.pk}"' in text(fragment)
    assert "<html" not in text(fragment)
    assert "HX-Request" in fragment["Vary"]


@pytest.mark.django_db
def test_history_filters_and_pages_work_with_and_without_javascript(logged_in: Any, user: Any) -> None:
    for i in range(60):
        make_record(user, status="complete", original_filename=f"file-{i:03d}.csv")
    html = text(logged_in.get("/imports/?status=complete"))
    form = re.search(r"<form method=\"get\"[^>]*class=\"history-filters\"[^>]*>", html, re.S)
    assert form is not None
    assert 'action="/imports/"' in form.group(0)  # without JavaScript the form is a plain GET
    assert 'hx-get="/imports/"' in form.group(0)
    assert 'hx-target="#history-results"' in form.group(0)
    assert 'hx-push-url="true"' in form.group(0)
    assert '<div id="history-results">' in html
    assert '<a href="?status=complete&page=2" rel="next" hx-get="?status=complete&page=2"' in html
    page_two = text(logged_in.get("/imports/?status=complete&page=2", headers=HTMX))
    assert "51–60 of 60" in page_two
    assert "file-009.csv" in page_two
    assert "file-010.csv" not in page_two
    assert "history-filters" not in page_two  # only the results are replaced


@pytest.mark.django_db
def test_every_htmx_control_keeps_a_plain_html_way(logged_in: Any, real_ld: Any, user: Any) -> None:
    """Each element that htmx enhances is a link with a real href or a form with a real action and
    method, so the page works the same without JavaScript."""
    pages = [
        segment_list(real_ld, user),
        import_history(real_ld, user),
        f"/imports/{make_record(user).pk}/",
    ]
    for address in pages:
        html = text(logged_in.get(address))
        for tag in re.findall(r"<(?:a|form|button|input|select)\b[^>]*\bhx-(?:get|post)=[^>]*>", html):
            if tag.startswith("<a "):
                assert re.search(r'href="[^"]+"', tag), tag
            elif tag.startswith("<form"):
                assert re.search(r'action="[^"]+"', tag), tag
                assert re.search(r'method="(get|post)"', tag), tag
            else:
                raise AssertionError(f"only links and forms may carry hx-get/hx-post: {tag}")


# --- forms: labels, help and errors tied to their inputs --------------------------------------------


class FormFields(HTMLParser):
    """The form controls of a page, each with its attributes, and every element's id and text."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: list[dict[str, str]] = []
        self.fieldsets: list[dict[str, str]] = []
        self.label_for: set[str] = set()
        self.wrapped: set[str] = set()  # controls inside their <label>
        self.texts: dict[str, str] = {}
        self._open_label = 0
        self._open_ids: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "label":
            self._open_label += 1
            if values.get("for"):
                self.label_for.add(values["for"])
        if tag in ("input", "select", "textarea") and values.get("type") not in ("hidden", "submit"):
            self.controls.append(values)
            if self._open_label:
                self.wrapped.add(values.get("id", ""))
        if tag == "fieldset":
            self.fieldsets.append(values)
        if values.get("id") and tag not in ("input", "br", "img"):
            self._open_ids.append((tag, values["id"]))
            self.texts[values["id"]] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._open_label -= 1
        if self._open_ids and self._open_ids[-1][0] == tag:
            self._open_ids.pop()

    def handle_data(self, data: str) -> None:
        for _, element_id in self._open_ids:
            self.texts[element_id] += data


def form_fields(html: str) -> FormFields:
    parser = FormFields()
    parser.feed(html)
    return parser


def assert_labelled_and_described(html: str, invalid: set[str]) -> FormFields:
    """Every control has a label; exactly the `invalid` ones say aria-invalid, and each of those names,
    in aria-describedby, an element on the page that holds its error message."""
    page = form_fields(html)
    assert page.controls
    for control in page.controls:
        name = control.get("id", "")
        assert name, control
        assert name in page.label_for or name in page.wrapped, f"no label for {name}"
        for described_by in control.get("aria-describedby", "").split():
            assert page.texts.get(described_by, "").strip(), f"{name} is described by missing {described_by}"
    said_invalid = {c["id"] for c in page.controls if c.get("aria-invalid") == "true"}
    groups = {
        fs["aria-describedby"].split()[-1].removesuffix("_error")
        for fs in page.fieldsets
        if "aria-describedby" in fs
    }
    assert {
        name.rsplit("_", 1)[0] if name.rsplit("_", 1)[-1].isdigit() else name for name in said_invalid
    } == invalid
    for name in invalid:
        if name in groups:  # a group of radios: the fieldset names the error
            continue
        (control,) = [c for c in page.controls if c["id"] == name]
        assert f"{name}_error" in control["aria-describedby"].split()
    return page


@pytest.mark.django_db
def test_segment_form_errors_are_tied_to_their_fields(logged_in: Any, real_ld: Any) -> None:
    real_ld.add_projects()
    response = logged_in.post(
        "/segments/shop/live/new/",
        {
            "name": "VIP",
            "key": "bad key",
            "unbounded": "on",
            "context_kind": "",
            "submission_token": "t" * 32,
        },
    )
    html = text(response)
    page = assert_labelled_and_described(html, {"id_key", "id_context_kind"})
    assert "Use only letters, digits" in page.texts["id_key_error"]
    assert "needs a context kind" in page.texts["id_context_kind_error"]
    # Help text is read with its input too.
    (name,) = [c for c in page.controls if c["id"] == "id_name"]
    assert name["aria-describedby"] == "id_name_helptext"
    assert page.texts["id_name_helptext"] == "What people will call this segment."


@pytest.mark.django_db
def test_delete_and_login_forms_tie_their_errors(client: Any, logged_in: Any, real_ld: Any) -> None:
    real_ld.add_projects()
    html = text(
        logged_in.post("/segments/shop/live/vip/delete/", {"confirm_key": "no", "submission_token": "t"})
    )
    page = assert_labelled_and_described(html, {"id_confirm_key"})
    assert 'Type "vip" exactly to confirm.' in page.texts["id_confirm_key_error"]
    logged_in.logout()
    html = text(logged_in.post("/accounts/login/", {"username": "", "password": ""}))
    page = assert_labelled_and_described(html, {"id_username", "id_password"})
    assert "This field is required." in page.texts["id_username_error"]


@pytest.mark.django_db
def test_every_filter_field_has_a_label(logged_in: Any, real_ld: Any, user: Any) -> None:
    for address in (segment_list(real_ld, user), import_history(real_ld, user)):
        assert_labelled_and_described(text(logged_in.get(address)), set())


# --- the upload form ---------------------------------------------------------------------------------


def test_the_upload_form_posts_without_javascript_and_htmx_replaces_only_the_form(
    logged_in: Any, real_ld: Any
) -> None:
    big_segment(real_ld)
    html = text(logged_in.get(FORM))
    (form,) = re.findall(r"<form id=\"upload-form\"[^>]*>", html)
    assert f'method="post" action="{FORM}" enctype="multipart/form-data"' in form
    assert f'hx-post="{FORM}"' in form
    assert 'hx-target="this" hx-swap="outerHTML"' in form
    assert "hx-select" not in form
    # A value no browser sends for the tick box: the form comes back to correct (no key is asked any more).
    wrong = {
        "mode": "replace",
        "wait_on_approvals": "maybe",
        "action": "upload",
        "submission_token": "t" * 32,
    }

    # Without JavaScript: a plain POST, and the whole page answers with the form to correct.
    plain = logged_in.post(FORM, {**wrong, "file": SimpleUploadedFile("k.csv", b"k\n")})
    assert plain.status_code == 200
    assert text(plain).startswith("<!doctype html>")
    assert_labelled_and_described(text(plain), {"id_wait_on_approvals"})
    assert "confirm_key" not in text(plain)

    # With htmx: only the form comes back, to replace the form.
    fragment = logged_in.post(FORM, {**wrong, "file": SimpleUploadedFile("k.csv", b"k\n")}, headers=HTMX)
    html = text(fragment)
    assert fragment.status_code == 200
    assert html.lstrip().startswith('<form id="upload-form"')
    assert "<main" not in html
    assert "HX-Request" in fragment["Vary"]
    page = assert_labelled_and_described(html, {"id_wait_on_approvals"})
    assert "Tick the box or leave it empty; “maybe” is neither." in page.texts["id_wait_on_approvals_error"]
    assert ImportRecord.objects.count() == 0


def test_a_file_refused_on_arrival_is_said_at_the_file_field(logged_in: Any, real_ld: Any) -> None:
    big_segment(real_ld)
    response = logged_in.post(
        FORM,
        {
            "file": SimpleUploadedFile("k.csv", b""),
            "mode": "merge",
            "action": "check",
            "submission_token": "t",
        },
        headers=HTMX,
    )
    page = assert_labelled_and_described(text(response), {"id_file"})
    assert "The submitted file is empty." in page.texts["id_file_error"]


def test_an_upload_refused_before_its_form_is_read_replaces_the_page_content(
    logged_in: Any, real_ld: Any, settings: Any
) -> None:
    settings.IMPORT_MAX_UPLOAD_BYTES = 1024
    big_segment(real_ld)
    response = logged_in.post(
        FORM,
        {"file": SimpleUploadedFile("k.csv", b"k\n" * 200_000), "mode": "merge", "action": "upload"},
        headers=HTMX,
    )
    assert response.status_code == 200
    # Not the form's place: htmx puts the refusal page's content where the page's content is.
    assert (response["HX-Retarget"], response["HX-Reselect"], response["HX-Reswap"]) == (
        "#main",
        "#main",
        "outerHTML",
    )
    assert "The file is too large" in text(response)
    plain = logged_in.post(FORM, {"file": SimpleUploadedFile("k.csv", b"k\n" * 200_000), "mode": "merge"})
    assert plain.status_code == 413
    assert "HX-Retarget" not in plain


# --- live status: announced when it changes, and only then ---------------------------------------------


def announcement_in(html: str, element_id: str) -> str | None:
    """The words an out-of-band update puts into the live region `element_id`, or None if it sends none."""
    found = re.search(rf'<p id="{element_id}" hx-swap-oob="innerHTML">(.*?)</p>', html, re.S)
    return found.group(1).strip() if found else None


def poll(client: Any, record: ImportRecord, said: str) -> str:
    return text(client.get(f"/imports/{record.pk}/", {"said": said}, headers=HTMX))


@pytest.mark.django_db
def test_the_import_page_announces_a_status_change_once(logged_in: Any, user: Any) -> None:
    record = make_record(user, status="validating", size_bytes=1000, bytes_read=100)
    page = text(logged_in.get(f"/imports/{record.pk}/"))
    said = f"Import #{record.pk}: checking the file"
    # The live region is outside the block each poll replaces, so it is the same element all along.
    region = (
        f'<p id="import-announcement" class="visually-hidden" role="status" aria-live="polite">{said}</p>'
    )
    assert region in page
    assert page.index(region) < page.index('<div id="import-live"')
    assert "aria-live" not in page[page.index('<div id="import-live"') :]
    assert f'hx-vals=\'{{"said": "Import #{record.pk}: checking the file"}}\'' in page

    # The percentage moves, the status does not: the badge shows it, nothing is announced.
    ImportRecord.objects.filter(pk=record.pk).update(bytes_read=600)
    quiet = poll(logged_in, record, said)
    assert "Checking the file — 60%" in quiet
    assert announcement_in(quiet, "import-announcement") is None

    ImportRecord.objects.filter(pk=record.pk).update(status="queued")
    changed = poll(logged_in, record, said)
    assert announcement_in(changed, "import-announcement") == f"Import #{record.pk}: Queued"
    assert "Queued" in re.search(r"hx-vals=\'([^\']*)\'", changed).group(
        1
    )  # the next poll says what was said
    assert (
        announcement_in(poll(logged_in, record, f"Import #{record.pk}: Queued"), "import-announcement")
        is None
    )


@pytest.mark.django_db
def test_a_table_announces_only_the_imports_whose_status_changed(logged_in: Any, user: Any) -> None:
    first, second = make_record(user), make_record(user, original_filename="b.csv")
    html = text(logged_in.get("/imports/"))
    assert (
        '<p id="imports-announcement" class="visually-hidden" role="status" aria-live="polite"></p>' in html
    )
    (poll_url,) = re.findall(r'hx-get="(/imports/statuses/\?[^"]*)"', html)
    poll_url = poll_url.replace("&amp;", "&")
    assert f"status={first.pk}.in_progress" in poll_url
    quiet = text(logged_in.get(poll_url, headers=HTMX))
    assert announcement_in(quiet, "imports-announcement") is None
    assert quiet.count('id="imports-announcement"') == 0  # the region itself is never replaced
    ImportRecord.objects.filter(pk=first.pk).update(status="complete")
    changed = text(logged_in.get(poll_url, headers=HTMX))
    assert (
        announcement_in(changed, "imports-announcement") == f"Import #{first.pk}: Complete — 1,204,331 keys."
    )
    assert f"#{second.pk}:" not in announcement_in(changed, "imports-announcement")


@pytest.mark.django_db
@pytest.mark.parametrize("status", [value for value, _ in ImportRecord._meta.get_field("status").choices])
def test_every_status_badge_says_its_status_in_words(logged_in: Any, user: Any, status: str) -> None:
    """Colour is a second signal only: each badge's text names the status."""
    record = make_record(user, status=status)
    badge = text(logged_in.get(f"/imports/{record.pk}/badge/", headers=HTMX))
    words = re.sub(r"<[^>]+>", "", badge).strip()
    assert words == import_display.badge_label(record)
    assert len(words) >= 5


def test_a_corrected_upload_shows_the_refused_files_problems_at_the_file_field(
    logged_in: Any, real_ld: Any, user: Any
) -> None:
    big_segment(real_ld)
    problems = [
        {"line": 3, "message": "Line 3 has an empty key."},
        {"line": 7, "message": "Line 7 is longer than 512 characters."},
    ]
    report = {"problems": problems, "problem_count": 5}
    refused = make_record(
        user,
        status="rejected",
        original_filename="bad.csv",
        report=report,
        error_message="The file has problems.",
    )
    elsewhere = make_record(user, status="rejected", segment_key="other", report=report)

    page = text(logged_in.get(f"/imports/{refused.pk}/"))
    link = f'href="{FORM}?corrects={refused.pk}">Upload a corrected file</a>'
    assert link in page

    html = text(logged_in.get(f"{FORM}?corrects={refused.pk}"))
    fields = assert_labelled_and_described(html, set())
    (file_input,) = [c for c in fields.controls if c["id"] == "id_file"]
    assert file_input["aria-describedby"] == "id_file_helptext id_file_problems"
    limit_mb = settings.IMPORT_MAX_UPLOAD_BYTES // (1024 * 1024)
    assert f"At most {limit_mb:,} MB" in fields.texts["id_file_helptext"]  # read with the field too
    shown = " ".join(fields.texts["id_file_problems"].split())
    assert shown.startswith("bad.csv was refused: correct these lines")
    assert "Line 3 has an empty key." in shown
    assert "Line 7 is longer than 512 characters." in shown
    assert "…and 3 more like them." in shown
    # The form posts back to the same address, so a failed attempt keeps the problems beside the field.
    assert f'action="{FORM}?corrects={refused.pk}"' in html

    # Without a refused import of this very segment, the form is the plain one.
    for query in (f"?corrects={elsewhere.pk}", "?corrects=abc", "?corrects=99999999999999999999", ""):
        plain = text(logged_in.get(f"{FORM}{query}"))
        assert "id_file_problems" not in plain, query
        assert "Line 3 has an empty key." not in plain, query


@pytest.mark.django_db
def test_a_search_answer_carries_the_environment_links_and_says_what_it_found(
    logged_in: Any, real_ld: Any, user: Any
) -> None:
    """The environment links sit outside the results htmx replaces, yet must keep the new search; and
    the count is announced once per search, not the whole table re-read as it would be from a live table."""
    address = segment_list(real_ld, user)
    page = text(logged_in.get(address))
    assert (
        '<p id="results-announcement" class="visually-hidden" role="status" aria-live="polite"></p>' in page
    )
    assert '<div id="segment-results">' in page  # the table itself is not a live region
    assert page.count('id="env-switcher"') == 1
    assert "hx-swap-oob" not in page
    fragment = text(logged_in.get(address, headers=HTMX))
    (switcher,) = re.findall(r'<nav aria-label="Environments"[^>]*>.*?</nav>', fragment, re.S)
    assert 'id="env-switcher" hx-swap-oob="true"' in switcher
    assert 'href="/segments/shop/test/?q=v"' in switcher
    assert 'href="/segments/shop/live/?q=v" aria-current="page"' in switcher
    assert announcement_in(fragment, "results-announcement") == "Segments 1 to 1 of 1 that match."


@pytest.mark.parametrize("template", sorted(Path(settings.BASE_DIR, "templates").rglob("*.html")), ids=str)
def test_every_htmx_link_and_form_in_the_templates_works_without_javascript(template: Path) -> None:
    """In every template: an element that htmx sends from is a link with an href or a form with an
    action and a method (so without JavaScript it does the same thing), or a poller (hx-trigger
    "every …"), which only keeps a page current."""
    source = template.read_text()
    for tag in re.findall(r"<[a-z]+\b(?:[^>{]|\{[^}]*\})*\bhx-(?:get|post)=(?:[^>{]|\{[^}]*\})*>", source):
        name = tag[1:].split()[0]
        if name == "a":
            assert 'href="' in tag, tag
        elif name == "form":
            assert 'action="' in tag, tag
            assert re.search(r'method="(get|post)"', tag), tag
        else:
            assert 'hx-trigger="every ' in tag, f"{template.name}: {tag}"


@pytest.mark.django_db
def test_a_refusal_says_it_varies_with_htmx(client: Any, make_user: Any) -> None:
    """To htmx a refusal reloads the page (HX-Refresh); to a browser it is the page: caches must not mix them."""
    client.force_login(make_user("viewer", username="looker"))
    for headers in ({}, HTMX):
        response = client.get("/segments/shop/live/new/", headers=headers)
        assert response.status_code == 403
        assert response.get("HX-Refresh") == ("true" if headers else None)
        assert "HX-Request" in response["Vary"]
