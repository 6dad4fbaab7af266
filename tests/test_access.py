"""Who may do what, over the whole site: one table that names every URL pattern and its rule.

`test_every_url_pattern_has_a_rule` fails when a URL is added without a row here, so no page can slip
in untested. The matrix then requests every row, GET and POST, six kinds of user, and a protected and an
unprotected environment, and asserts exactly the answer the issue describes: anonymous users are sent
to log in, an account with no role gets the explanation page, a refusal is the app's own 403 page
naming the role it needs, and whatever is allowed is answered (never 403, never 500).

The expectations are written out here (`EDITS_IN`), not computed by segments_app/access.py, so a
wrong decision there fails the table. LaunchDarkly is mocked with `responses` (`real_ld`); allowed
POSTs carry no form data, so they change nothing upstream and only prove they were let through.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.urls import URLPattern, URLResolver, get_resolver

from segments_app.models import ImportRecord
from tests import factories
from tests.factories import text
from tests.launchdarkly_answers import big_segment_json

pytestmark = pytest.mark.django_db

PROTECTED, UNPROTECTED = "production", "test"
ENVIRONMENTS = (PROTECTED, UNPROTECTED)
ROLES = ("anonymous", "no_group", "viewer", "editor", "production_editor", "superuser")

# The environments each kind of user may change. Viewers change nothing; editors change unprotected
# environments; Production editors (and superusers) change protected ones too.
EDITS_IN: dict[str, frozenset[str]] = {
    "anonymous": frozenset(),
    "no_group": frozenset(),
    "viewer": frozenset(),
    "editor": frozenset({UNPROTECTED}),
    "production_editor": frozenset({UNPROTECTED, PROTECTED}),
    "superuser": frozenset({UNPROTECTED, PROTECTED}),
}

# --- expected answers --------------------------------------------------------------------------------
LOGIN = "sent to log in"
NO_ROLE = "no-role explanation (403)"
FORBIDDEN = "the app's 403 page"
ALLOWED = "answered (not 403, not 500)"
NOT_ALLOWED_METHOD = "405"
TO_IMPORT_PAGE = "redirect to the import's page"
TOKEN = "401 without the API token"


def view(role: str, env: str) -> str:
    """Browsing: every role; an account without one is told why."""
    return {"anonymous": LOGIN, "no_group": NO_ROLE}.get(role, ALLOWED)


def edit(role: str, env: str) -> str:
    """Changing something in `env`."""
    if role in ("anonymous", "no_group"):
        return view(role, env)
    return ALLOWED if env in EDITS_IN[role] else FORBIDDEN


def method_refused(role: str, env: str) -> str:
    """A method the view does not take: people who may browse learn that (405), others as usual."""
    if role in ("anonymous", "no_group"):
        return view(role, env)
    return NOT_ALLOWED_METHOD


def to_import_page(role: str, env: str) -> str:
    if role in ("anonymous", "no_group"):
        return view(role, env)
    return TO_IMPORT_PAGE


def open_to_all(role: str, env: str) -> str:
    return ALLOWED


def open_to_all_but_405(role: str, env: str) -> str:
    return NOT_ALLOWED_METHOD


def account_page(role: str, env: str) -> str:
    """Logging in and out and changing a password: open to every signed-in account, no role needed."""
    return LOGIN if role == "anonymous" else ALLOWED


def account_page_get_only(role: str, env: str) -> str:
    return LOGIN if role == "anonymous" else NOT_ALLOWED_METHOD


def login_page(role: str, env: str) -> str:
    return ALLOWED


@dataclass(frozen=True)
class Rule:
    """How one URL pattern answers GET, POST and other methods, and what it needs to be requested.

    `record`: the pattern takes an import's pk — `own_draft` (a draft of the acting user, for Send),
    `others_queued` (someone else's queued import, for Cancel), `any` (someone else's finished one) —
    or `snapshot`: someone else's ready member snapshot.
    `per_environment`: the answer depends on the environment (else it is requested once)."""

    get: Callable[[str, str], str]
    post: Callable[[str, str], str]
    # PUT, PATCH and DELETE: no page of the site takes them; a 405 for everyone, signed in or not
    # (segments_app/middleware.py), before any view could take PUT as POST.
    other: Callable[[str, str], str] = open_to_all_but_405
    per_environment: bool = False
    record: str = ""
    sandbox: bool = False


SEGMENT = "segments/<str:project>/<str:env>/<str:segment>/"

# Every URL pattern of the site. Rows for whole included URLconfs are in PREFIX_RULES below.
TABLE: dict[str, Rule] = {
    # Django's auth views: every signed-in account, role or not, may use them.
    "accounts/login/": Rule(get=login_page, post=login_page),
    "accounts/logout/": Rule(get=account_page_get_only, post=account_page),
    "accounts/password/": Rule(get=account_page, post=account_page),
    "accounts/password/done/": Rule(get=account_page, post=account_page_get_only),
    # For load balancers: no login at all.
    "healthz": Rule(get=open_to_all, post=open_to_all_but_405),
    # Browsers ask for it on every page, the login page included: a redirect to the static icon.
    "favicon.ico": Rule(get=open_to_all, post=open_to_all_but_405),
    # Browsing.
    "": Rule(get=view, post=method_refused),
    "activity/": Rule(get=view, post=method_refused),
    "imports/": Rule(get=view, post=method_refused),
    "imports/export.csv": Rule(get=view, post=method_refused),
    "imports/statuses/": Rule(get=view, post=method_refused),
    "segments/<str:project>/<str:env>/": Rule(get=view, post=method_refused, per_environment=True),
    SEGMENT: Rule(get=view, post=method_refused, per_environment=True),
    "imports/<int:pk>/": Rule(get=view, post=method_refused, per_environment=True, record="any"),
    "imports/<int:pk>/badge/": Rule(get=view, post=method_refused, per_environment=True, record="any"),
    "imports/<int:pk>/problems.csv": Rule(get=view, post=method_refused, per_environment=True, record="any"),
    # Looking keys up only reads: every role, in every environment (tests/test_lookup.py has its own).
    f"{SEGMENT}lookup/": Rule(get=view, post=view, per_environment=True),
    f"{SEGMENT}lookup/<str:token>.csv": Rule(get=view, post=method_refused, per_environment=True),
    # Downloading a big segment's members only reads: every role, in every environment.
    f"{SEGMENT}members/": Rule(get=view, post=view, per_environment=True),
    f"{SEGMENT}members/<int:snapshot>.csv": Rule(
        get=view, post=method_refused, per_environment=True, record="snapshot"
    ),
    f"{SEGMENT}members/<int:snapshot>-for-spreadsheets.csv": Rule(
        get=view, post=method_refused, per_environment=True, record="snapshot"
    ),
    # Changing things.
    "segments/<str:project>/<str:env>/new/": Rule(get=edit, post=edit, per_environment=True),
    f"{SEGMENT}delete/": Rule(get=edit, post=edit, per_environment=True),
    f"{SEGMENT}imports/new/": Rule(get=edit, post=edit, per_environment=True),
    "imports/<int:pk>/send/": Rule(get=to_import_page, post=edit, per_environment=True, record="own_draft"),
    "imports/<int:pk>/cancel/": Rule(
        get=to_import_page, post=edit, per_environment=True, record="others_queued"
    ),
    # Restoring the members as they were before someone else's import: importing in its environment.
    "imports/<int:pk>/restore/": Rule(get=to_import_page, post=edit, per_environment=True, record="any"),
    # The sandbox's approvals page (sandbox/views.py): the list for every role, approving an import
    # needs `access.may_approve` in the import's environment.
    "sandbox/approvals/": Rule(get=view, post=edit, per_environment=True, sandbox=True),
}

# Whole URLconfs with rules of their own, tested on their own below.
PREFIX_RULES: dict[str, str] = {
    "admin/": "Django's admin: staff only (test_admin_is_djangos_staff_only)",
    "sandbox/api/": "the sandbox's LaunchDarkly API: by API token, never by session (test_sandbox_api_ignores_sessions)",
}


def walk(patterns: list[Any], prefix: str = "") -> Iterator[str]:
    """Every URL pattern's full route."""
    for entry in patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from walk(entry.url_patterns, route)
        elif isinstance(entry, URLPattern):
            yield route


ROUTES = sorted(set(walk(get_resolver().url_patterns)))


def test_every_url_pattern_has_a_rule() -> None:
    missing = [route for route in ROUTES if route not in TABLE and not route.startswith(tuple(PREFIX_RULES))]
    assert missing == [], f"URL patterns with no row in tests/test_access.py's TABLE: {missing}"


def test_every_row_is_a_real_pattern() -> None:
    # Sandbox pages exist only while no LaunchDarkly token is set, which is how the suite starts.
    stale = [route for route in TABLE if route not in ROUTES]
    assert stale == [], f"TABLE rows for URL patterns that no longer exist: {stale}"
    assert {route for route in ROUTES if route.startswith("admin/")}, "the walk must see the admin"


METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def cases() -> Iterator[Any]:
    """One test per row, method and environment; it asks as each of the six kinds of user in turn."""
    for route, rule in TABLE.items():
        for method in METHODS:
            for env in ENVIRONMENTS if rule.per_environment else (UNPROTECTED,):
                yield pytest.param(route, method, env, id=f"{method} /{route} {env}")


# --- the world each case runs in ---------------------------------------------------------------------


def mock_launchdarkly(real_ld: Any) -> None:
    """A project `shop` with a protected and an unprotected environment, each with a big segment."""
    real_ld.mock.get(
        real_ld.url("/api/v2/projects"),
        json={
            "items": [
                {
                    "key": "shop",
                    "name": "Shop",
                    "environments": {
                        "items": [
                            {"key": env, "name": env.title(), "color": "417505"} for env in ENVIRONMENTS
                        ]
                    },
                }
            ],
            "totalCount": 1,
        },
    )
    for env in ENVIRONMENTS:
        real_ld.mock.get(real_ld.url(f"/api/v2/segments/shop/{env}"), json={"items": [], "totalCount": 0})
        real_ld.mock.get(
            real_ld.url(f"/api/v2/segments/shop/{env}/vip"),
            json=big_segment_json(name="VIP"),
        )


def make_record(owner: Any, env: str, status: str) -> ImportRecord:
    """The factories' import record, in `env`, of 3 keys (a draft's report says so)."""
    report = {"keys_accepted": 3, "part_sizes": [{"keys": 3, "bytes": 10}]} if status == "draft" else {}
    return factories.make_record(owner, status, environment_key=env, key_count=3, report=report)


def make_snapshot(owner: Any, env: str) -> Any:
    """A ready member snapshot of `vip` in `env`, with its file, taken by someone else."""
    from django.conf import settings

    from segments_app.models import MemberSnapshot

    folder = Path(settings.IMPORT_STORAGE_DIR) / "snapshots"
    folder.mkdir(parents=True, exist_ok=True)
    snapshot = MemberSnapshot.objects.create(
        project_key="shop", environment_key=env, segment_key="vip", requested_by=owner, status="ready"
    )
    path = folder / f"access-{snapshot.pk}.csv"
    path.write_text("u-1\n")
    MemberSnapshot.objects.filter(pk=snapshot.pk).update(file_path=str(path), member_count=1)
    return snapshot


def waiting_sandbox_import(env: str) -> str:
    """An import waiting for approval in the sandbox's environment `env`; returns its id."""
    from sandbox.models import SandboxEnvironment, SandboxImport, SandboxProject, SandboxSegment

    project, _ = SandboxProject.objects.get_or_create(key="access-matrix", defaults={"name": "Matrix"})
    environment, _ = SandboxEnvironment.objects.get_or_create(
        project=project, key=env, defaults={"name": env}
    )
    segment, _ = SandboxSegment.objects.get_or_create(
        environment=environment, key="vip", defaults={"name": "VIP", "unbounded": True}
    )
    item = SandboxImport.objects.create(
        segment=segment, environment=environment, mode="merge", wait_on_approvals=True, filename="keys.csv"
    )
    return str(item.pk)


def path_for(route: str, env: str, pk: int | None) -> str:
    path = route.replace("<str:project>", "shop").replace("<str:env>", env).replace("<str:segment>", "vip")
    if pk is not None:
        path = path.replace("<int:pk>", str(pk))
    path = path.replace("<str:token>", "0" * 32)  # a lookup answer this session never asked for
    if pk is not None:
        path = path.replace("<int:snapshot>", str(pk))
    assert "<" not in path, path
    return "/" + path


def templates_of(response: Any) -> list[str]:
    return [template.name for template in getattr(response, "templates", []) or []]


def mismatch(response: Any, expected: str, env: str, pk: int | None) -> str:
    """Empty when the response is the expected answer, else what is wrong with it."""
    status = response.status_code
    location = response.get("Location", "")
    page = text(response) if status == 403 else ""
    if expected == LOGIN:
        ok = status == 302 and location.startswith("/accounts/login/?next=")
    elif expected == NO_ROLE:
        ok = (
            status == 403
            and "segments_app/no_role.html" in templates_of(response)
            and "Your account has no role yet" in page
            and "Segment viewers" in page
        )
    elif expected == FORBIDDEN:
        needed = "Production editors" if env == PROTECTED else "Segment editors"
        # The app's own page, in its layout, naming the role that is needed.
        ok = (
            status == 403
            and "403.html" in templates_of(response)
            and f"needs the {needed} role" in page
            and 'id="main"' in page
        )
    elif expected == ALLOWED:
        # A page (200), a redirect after a change or to the next step (302, never to log in), or a
        # form refused for its content (400): the request was let through. Not 404 or 405.
        ok = status in (200, 302, 400) and not location.startswith("/accounts/login/?next=")
    elif expected == NOT_ALLOWED_METHOD:
        ok = status == 405
    elif expected == TO_IMPORT_PAGE:
        ok = status == 302 and location == f"/imports/{pk}/"
    else:  # pragma: no cover - a typo in the table
        return f"unknown expectation {expected!r}"
    return "" if ok else f"expected {expected}, got {status} {location}".rstrip()


@pytest.fixture(scope="module")
def one_client() -> Any:
    """One test client for the module: each new one loads the middleware (and WhiteNoise scans every
    static file) again, which would make the matrix take half a minute instead of seconds."""
    from django.test import Client

    return Client()


@pytest.fixture
def client(one_client: Any) -> Iterator[Any]:
    one_client.logout()
    yield one_client
    one_client.logout()


@pytest.mark.parametrize(("route", "method", "env"), list(cases()))
def test_access_matrix(
    route: str,
    method: str,
    env: str,
    client: Any,
    make_user: Any,
    settings: Any,
    request: pytest.FixtureRequest,
) -> None:
    rule = TABLE[route]
    settings.PROTECTED_ENVIRONMENTS = [PROTECTED]
    if not rule.sandbox:
        mock_launchdarkly(request.getfixturevalue("real_ld"))
    uploader = make_user("editor", username="uploader")
    wrong: dict[str, str] = {}
    for role in ROLES:
        client.logout()
        actor = None if role == "anonymous" else make_user(role)
        if actor is not None:
            client.force_login(actor)
        pk = None
        if rule.record == "snapshot":
            pk = make_snapshot(uploader, env).pk
        elif rule.record:
            owner = actor if rule.record == "own_draft" and actor is not None else uploader
            status = {"own_draft": "draft", "others_queued": "queued", "any": "complete"}[rule.record]
            pk = make_record(owner, env, status).pk
        data: dict[str, str] = {}
        if rule.sandbox and method == "POST":
            data["import_id"] = waiting_sandbox_import(env)
        path = path_for(route, env, pk)
        response = client.post(path, data) if method == "POST" else client.generic(method, path)
        expected = {"GET": rule.get, "POST": rule.post}.get(method, rule.other)(role, env)
        problem = mismatch(response, expected, env, pk)
        if problem:
            wrong[role] = f"{method} {path}: {problem}"
    assert wrong == {}


# --- a refusal changes nothing -----------------------------------------------------------------------

REFUSED_CHANGES = [
    # (what, role refused, environment)
    ("cancel", "viewer", UNPROTECTED),
    ("cancel", "editor", PROTECTED),
    ("send", "viewer", UNPROTECTED),
    ("send", "editor", PROTECTED),
    ("approve", "viewer", UNPROTECTED),
    ("approve", "editor", PROTECTED),
    ("delete", "viewer", UNPROTECTED),
    ("delete", "editor", PROTECTED),
    ("create", "viewer", UNPROTECTED),
    ("create", "editor", PROTECTED),
    ("upload", "viewer", UNPROTECTED),
    ("upload", "editor", PROTECTED),
]


@pytest.mark.parametrize(("what", "role", "env"), REFUSED_CHANGES, ids=lambda v: str(v))
def test_a_refused_change_with_a_complete_form_changes_nothing(
    what: str, role: str, env: str, client: Any, make_user: Any, settings: Any, request: pytest.FixtureRequest
) -> None:
    """The matrix posts empty forms; here each refused request carries everything the change needs,
    so a view that acted before refusing would be caught: the record, the sandbox import, the import
    storage and LaunchDarkly (no call but lookups) are exactly as before."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from sandbox.models import SandboxImport

    settings.PROTECTED_ENVIRONMENTS = [PROTECTED]
    # The approvals page exists only with the sandbox; everything else talks to a mocked LaunchDarkly.
    real_ld = None if what == "approve" else request.getfixturevalue("real_ld")
    if real_ld is not None:
        mock_launchdarkly(real_ld)
    actor = make_user(role)
    client.force_login(actor)
    # The actor's own draft (Send), someone else's queued import (Cancel).
    record = make_record(actor if what == "send" else make_user("editor", username="uploader"), env,
                         "draft" if what == "send" else "queued")  # fmt: skip
    waiting = waiting_sandbox_import(env)
    records_before = ImportRecord.objects.count()
    storage = Path(settings.IMPORT_STORAGE_DIR)
    stored_before = sorted(storage.rglob("*")) if storage.exists() else []
    segment = f"/segments/shop/{env}/vip/"
    path, data = {
        "cancel": (f"/imports/{record.pk}/cancel/", {}),
        "send": (f"/imports/{record.pk}/send/", {"mode": "merge", "first_row": "key"}),
        "approve": ("/sandbox/approvals/", {"import_id": waiting}),
        "delete": (f"{segment}delete/", {"confirm_key": "vip", "submission_token": "t" * 32}),
        "create": (f"/segments/shop/{env}/new/", {"name": "New", "key": "new-one", "submission_token": "t" * 32}),
        "upload": (f"{segment}imports/new/", {
            "file": SimpleUploadedFile("keys.csv", b"a\nb\n", content_type="text/csv"),
            "mode": "merge", "submission_token": "u" * 32, "action": "send",
        }),
    }[what]  # fmt: skip
    response = client.post(path, data)
    assert response.status_code == 403, (response.status_code, text(response)[:300])

    before = (record.status, record.cancelled_by_id, record.sent_by_id, record.events.count())
    record.refresh_from_db()
    assert (record.status, record.cancelled_by_id, record.sent_by_id, record.events.count()) == before
    assert SandboxImport.objects.get(pk=waiting).approved_ms is None
    assert ImportRecord.objects.count() == records_before
    # Nothing new stored (earlier tests' clean-up may still be removing their own files meanwhile).
    assert set(storage.rglob("*") if storage.exists() else []) - set(stored_before) == set()
    if real_ld is not None:
        assert [call.request.method for call in real_ld.mock.calls if call.request.method != "GET"] == []


# --- the rules that live outside the table ----------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_admin_is_djangos_staff_only(client: Any, make_user: Any, role: str) -> None:
    if role != "anonymous":
        client.force_login(make_user(role))
    response = client.get("/admin/")
    if role == "superuser":
        assert response.status_code == 200
        assert "Groups" in text(response), "superusers manage users and groups in the admin"
    else:
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")


@pytest.mark.parametrize("role", ROLES)
def test_sandbox_api_ignores_sessions(client: Any, make_user: Any, role: str) -> None:
    api_routes = [route for route in ROUTES if route.startswith("sandbox/api/")]
    assert api_routes
    if role != "anonymous":
        client.force_login(make_user(role))
    for route in api_routes:
        path = "/" + re.sub(r"<(?:\w+:)?\w+>", "x1", route)
        response = client.get(path)
        assert response.status_code == 401, (path, response.status_code)


def test_sending_someone_elses_draft_is_refused_even_to_an_editor(
    client: Any, make_user: Any, settings: Any
) -> None:
    settings.PROTECTED_ENVIRONMENTS = [PROTECTED]
    draft = make_record(make_user("editor", username="uploader"), UNPROTECTED, "draft")
    client.force_login(make_user("editor"))
    response = client.post(f"/imports/{draft.pk}/send/", {"mode": "merge"})
    assert response.status_code == 403
    assert "Only uploader, who uploaded import" in text(response)
    assert f'href="/imports/{draft.pk}/"' in response.content.decode()
    draft.refresh_from_db()
    assert draft.status == "draft"


def test_a_protected_environment_is_a_setting(
    client: Any, make_user: Any, settings: Any, real_ld: Any
) -> None:
    mock_launchdarkly(real_ld)
    client.force_login(make_user("editor"))
    settings.PROTECTED_ENVIRONMENTS = [PROTECTED]
    assert client.get(f"/segments/shop/{UNPROTECTED}/new/").status_code == 200
    settings.PROTECTED_ENVIRONMENTS = [PROTECTED, UNPROTECTED]
    assert client.get(f"/segments/shop/{UNPROTECTED}/new/").status_code == 403
    settings.PROTECTED_ENVIRONMENTS = []
    assert client.get(f"/segments/shop/{PROTECTED}/new/").status_code == 200


def test_a_refusal_says_whom_to_ask_without_naming_accounts(
    client: Any, make_user: Any, real_ld: Any, settings: Any
) -> None:
    mock_launchdarkly(real_ld)
    make_user("superuser", username="alice-admin")
    client.force_login(make_user("viewer"))
    page = text(client.get(f"/segments/shop/{UNPROTECTED}/new/"))
    assert "Creating segments in “test” needs the Segment editors role." in page
    assert "ask an administrator of this dashboard" in page
    settings.ACCESS_CONTACT = "the Platform team in #feature-flags"
    no_role = make_user("no_group")
    client.force_login(no_role)
    page = text(client.get("/"))
    assert "ask the Platform team in #feature-flags to add you" in page
    assert "alice-admin" not in page


def test_a_refused_htmx_request_reloads_the_page_to_show_the_refusal(
    client: Any, make_user: Any, real_ld: Any
) -> None:
    mock_launchdarkly(real_ld)
    uploader = make_user("editor", username="uploader")
    record = make_record(uploader, PROTECTED, "complete")
    client.force_login(make_user("no_group"))
    poll = client.get(f"/imports/{record.pk}/", HTTP_HX_REQUEST="true")
    assert (poll.status_code, poll.get("HX-Refresh")) == (403, "true")
    client.force_login(make_user("editor"))
    upload = client.post(f"/segments/shop/{PROTECTED}/vip/imports/new/", {}, HTTP_HX_REQUEST="true")
    assert (upload.status_code, upload.get("HX-Refresh")) == (403, "true")
    page = client.get(f"/segments/shop/{PROTECTED}/vip/imports/new/")
    assert (page.status_code, page.get("HX-Refresh")) == (403, None)


def test_an_account_without_a_role_can_still_change_its_password_and_log_out(
    client: Any, make_user: Any
) -> None:
    client.force_login(make_user("no_group"))
    assert client.get("/accounts/password/").status_code == 200
    response = client.post("/accounts/logout/")
    assert (response.status_code, response["Location"]) == (302, "/accounts/login/")
    assert client.get("/").status_code == 302


def test_the_roles_are_groups_made_by_the_migration() -> None:
    from django.contrib.auth.models import Group

    from segments_app import access

    assert set(Group.objects.filter(name__in=access.ROLES).values_list("name", flat=True)) == set(
        access.ROLES
    )


def test_undoing_the_roles_migration_keeps_groups_people_are_in(make_user: Any) -> None:
    import importlib

    from django.apps import apps
    from django.contrib.auth.models import Group

    migration = importlib.import_module("segments_app.migrations.0005_roles")
    make_user("editor")
    migration.remove_roles(apps, None)
    assert list(Group.objects.values_list("name", flat=True)) == ["Segment editors"]
    migration.create_roles(apps, None)
    assert Group.objects.count() == 3


def test_first_admin_of_make_run_is_a_superuser(django_user_model: Any) -> None:
    from io import StringIO

    out = StringIO()
    call_command("ensure_admin", stdout=out)
    admin = django_user_model.objects.get(username="admin")
    assert (admin.is_superuser, admin.is_staff, admin.is_active) == (True, True, True)
    assert "password:" in out.getvalue()
    call_command("ensure_admin", stdout=StringIO())
    assert django_user_model.objects.filter(is_superuser=True).count() == 1


def test_ensure_admin_never_promotes_an_existing_account(django_user_model: Any, make_user: Any) -> None:
    from io import StringIO

    make_user("viewer", username="admin")
    err = StringIO()
    call_command("ensure_admin", stdout=StringIO(), stderr=err)
    assert not django_user_model.objects.filter(is_superuser=True).exists()
    assert "--username" in err.getvalue()
    call_command("ensure_admin", "--username", "root", stdout=StringIO())
    assert django_user_model.objects.get(username="root").is_superuser


# --- buttons a user may not use are not shown --------------------------------------------------------

BUTTONS = {
    "new": "New segment",
    "delete": "Delete segment…",
    "upload": "Upload CSV",
    "send": "Send to LaunchDarkly",
    "discard": ">Discard<",
    "cancel": "Cancel this import",
}


@pytest.mark.parametrize("env", ENVIRONMENTS)
@pytest.mark.parametrize("role", ["viewer", "editor", "production_editor", "superuser"])
def test_segment_pages_show_only_the_buttons_the_user_may_use(
    client: Any, make_user: Any, settings: Any, real_ld: Any, role: str, env: str
) -> None:
    settings.PROTECTED_ENVIRONMENTS = [PROTECTED]
    mock_launchdarkly(real_ld)
    client.force_login(make_user(role))
    may = env in EDITS_IN[role]
    listing = client.get(f"/segments/shop/{env}/").content.decode()
    assert (BUTTONS["new"] in listing) is may
    assert ("Create the first segment" in listing) is may
    fragment = client.get(f"/segments/shop/{env}/", HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in fragment
    assert ("Create the first segment" in fragment) is may
    detail = text(client.get(f"/segments/shop/{env}/vip/"))
    assert (BUTTONS["upload"] in detail) is may
    assert (BUTTONS["delete"] in detail) is may
    assert (f"/segments/shop/{env}/vip/delete/" in detail) is may


@pytest.mark.parametrize("env", ENVIRONMENTS)
@pytest.mark.parametrize("role", ["viewer", "editor", "production_editor", "superuser"])
def test_import_page_shows_only_the_buttons_the_user_may_use(
    client: Any, make_user: Any, settings: Any, role: str, env: str
) -> None:
    settings.PROTECTED_ENVIRONMENTS = [PROTECTED]
    actor = make_user(role)
    uploader = make_user("editor", username="uploader")
    client.force_login(actor)
    may = env in EDITS_IN[role]
    own_draft = make_record(actor, env, "draft")
    others_draft = make_record(uploader, env, "draft")
    queued = make_record(uploader, env, "queued")
    for fragment in (False, True):
        headers = {"HTTP_HX_REQUEST": "true"} if fragment else {}
        own = client.get(f"/imports/{own_draft.pk}/", **headers).content.decode()
        assert (BUTTONS["send"] in own) is may
        assert (BUTTONS["discard"] in own) is may
        others = client.get(f"/imports/{others_draft.pk}/", **headers).content.decode()
        # Only its uploader sends a draft (a superuser may too); any editor may discard it.
        assert (BUTTONS["send"] in others) is (role == "superuser")
        assert (BUTTONS["discard"] in others) is may
        waiting = client.get(f"/imports/{queued.pk}/", **headers).content.decode()
        assert (BUTTONS["cancel"] in waiting) is may
        assert ("<html" in waiting) is not fragment


@pytest.mark.parametrize("role", ["viewer", "editor"])
def test_a_failed_import_offers_a_corrected_upload_only_to_editors(
    client: Any, make_user: Any, settings: Any, role: str
) -> None:
    settings.PROTECTED_ENVIRONMENTS = [PROTECTED]
    client.force_login(make_user(role))
    failed = make_record(make_user("editor", username="uploader"), UNPROTECTED, "failed")
    failed.error_message = "LaunchDarkly refused the file."
    failed.save()
    page = text(client.get(f"/imports/{failed.pk}/"))
    assert "LaunchDarkly refused the file." in page
    assert ("Upload a corrected file" in page) is (role == "editor")
