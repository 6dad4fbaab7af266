"""The built-in sandbox, reached over real HTTP through the product's own LaunchDarkly client.

Every answer the client receives in these tests is checked against LaunchDarkly's OpenAPI contract
by the `contract` fixture.
"""

from __future__ import annotations

import io
import time
import uuid
from typing import Any

import pytest
import requests
from django.core.management import call_command

from sandbox.models import SandboxImport, SandboxMember, SandboxSegment, now_ms
from segments_app.connection import launchdarkly_client
from segments_app.launchdarkly import (
    ClientConfig,
    Conflict,
    InvalidRequest,
    LaunchDarklyClient,
    NotFound,
    RateLimited,
    SegmentMissing,
    Unauthorized,
    UpstreamUnavailable,
)
from tests.factories import visible, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ld(contract: list[str]) -> Any:
    with launchdarkly_client() as client:
        yield client


def keys_file(*keys: str) -> io.BytesIO:
    return io.BytesIO("".join(f"{k}\n" for k in keys).encode())


def wait_for_status(
    ld: LaunchDarklyClient,
    segment: str,
    import_id: str,
    wanted: str,
    env: str = "production",
    timeout: float = 10,
) -> dict:
    """LaunchDarkly's answer about the import once it says `wanted`; the test fails, showing the last
    answer, if it does not say so within `timeout` seconds."""
    answers: list[dict] = []

    def says_wanted() -> dict | None:
        answers.append(ld.get_import("demo", env, segment, import_id))
        return answers[-1] if answers[-1]["status"] == wanted else None

    return wait_until(
        f"import {import_id} of {env}/{segment} to be {wanted}",
        says_wanted,
        timeout=timeout,
        every=0.05,
        seen=lambda: answers[-1],
    )


# --- projects, environments, contract ----------------------------------------------------------------


def test_demo_project_with_two_environments(ld: LaunchDarklyClient, contract: list[str]) -> None:
    page = ld.list_projects()
    assert [p.key for p in page.items] == ["demo"]
    assert [e.key for e in page.items[0].environments] == ["production", "staging"]
    assert [e.key for e in ld.list_environments("demo").items] == ["production", "staging"]
    assert contract == [
        "GET 200 /sandbox/api/v2/projects?expand=environments&limit=20&offset=0",
        "GET 200 /sandbox/api/v2/projects/demo/environments?limit=20&offset=0",
    ]


def test_sandbox_sends_sdk_keys_like_launchdarkly_and_the_client_drops_them(
    sandbox: str, settings: Any
) -> None:
    raw = requests.get(
        f"{sandbox}/api/v2/projects/demo/environments",
        headers={"Authorization": settings.LD_SANDBOX_TOKEN},
        timeout=5,
    ).json()
    assert raw["items"][0]["apiKey"].startswith("sdk-")
    with launchdarkly_client() as client:
        environments = client.list_environments("demo").items
    assert "sdk-" not in repr(environments)


def test_missing_or_wrong_token_is_401(sandbox: str, contract: list[str]) -> None:
    assert requests.get(f"{sandbox}/api/v2/projects", timeout=5).status_code == 401
    client = LaunchDarklyClient(ClientConfig(base_url=sandbox, token="api-wrong"))
    with client, pytest.raises(Unauthorized) as caught:
        client.list_projects()
    assert caught.value.code == "unauthorized"


def test_unknown_project_environment_segment_and_import_are_404(ld: LaunchDarklyClient) -> None:
    with pytest.raises(NotFound):
        ld.list_environments("nope")
    with pytest.raises(NotFound):
        ld.list_segments("demo", "nope")
    with pytest.raises(NotFound):
        ld.get_segment("demo", "production", "nope")
    with pytest.raises(NotFound):
        ld.get_import("demo", "production", "vip-customers", str(uuid.uuid4()))
    with pytest.raises(NotFound):
        ld.get_import("demo", "production", "vip-customers", "not-a-uuid")


def test_sandbox_is_off_when_a_real_token_is_configured(sandbox: str, settings: Any) -> None:
    settings.LD_SANDBOX_ENABLED = False
    response = requests.get(
        f"{sandbox}/api/v2/projects", headers={"Authorization": settings.LD_SANDBOX_TOKEN}, timeout=5
    )
    assert response.status_code == 404


# --- segments ----------------------------------------------------------------------------------------


def test_list_search_filter_sort_and_page(ld: LaunchDarklyClient) -> None:
    everything = ld.list_segments("demo", "production")
    assert everything.total == 5
    assert [s.key for s in everything.items] == [
        "beta-testers",
        "churn-risk",
        "internal-staff",
        "mobile-early-access",
        "vip-customers",
    ]
    assert [s.key for s in ld.list_segments("demo", "production", query="VIP").items] == ["vip-customers"]
    assert [s.key for s in ld.list_segments("demo", "production", tags=["beta", "internal"]).items] == [
        "beta-testers",
        "internal-staff",
    ]
    big = ld.list_segments("demo", "production", unbounded=True)
    assert {s.key for s in big.items} == {"churn-risk", "mobile-early-access", "vip-customers"}
    standard = ld.list_segments("demo", "production", unbounded=False, sort="-name")
    assert [s.key for s in standard.items] == ["internal-staff", "beta-testers"]
    page = ld.list_segments("demo", "production", limit=2, offset=2)
    assert page.total == 5
    assert [s.key for s in page.items] == ["internal-staff", "mobile-early-access"]
    vip = next(s for s in everything.items if s.key == "vip-customers")
    assert vip.included_count == 120
    assert vip.context_kind == "user"


def test_invalid_list_parameters_are_400(sandbox: str, settings: Any) -> None:
    headers = {"Authorization": settings.LD_SANDBOX_TOKEN}
    for query in ("sort=colour", "limit=0", "limit=x", "filter=colour equals red"):
        response = requests.get(
            f"{sandbox}/api/v2/segments/demo/production?{query}", headers=headers, timeout=5
        )
        assert response.status_code == 400, query
        assert response.json()["code"] == "invalid_request"


# --- the documented filter syntax (getSegments, "Filtering segments") ---------------------------------

# The spec's own example, character for character.
SPEC_EXAMPLE = 'tags anyOf ["enterprise", "beta"],query equals "toggle"'


def add_segment(
    key: str, name: str, *, tags: list[str], description: str = "", unbounded: bool = False
) -> None:
    """A segment written straight into the sandbox: tags LaunchDarkly's create call would refuse (a space,
    a quote) can still be searched for."""
    from sandbox.models import SandboxEnvironment

    environment = SandboxEnvironment.objects.get(project__key="demo", key="production")
    SandboxSegment.objects.create(
        environment=environment, key=key, name=name, description=description, tags=tags, unbounded=unbounded
    )


def raw_list(ld: LaunchDarklyClient, sandbox: str, segment_filter: str) -> requests.Response:
    """GET the segment list with this exact `filter`, through the client's session: its answer is checked
    against the contract like every other."""
    return ld.session.get(
        f"{sandbox}/api/v2/segments/demo/production", params={"filter": segment_filter}, timeout=10
    )


def test_the_spec_example_filter_returns_the_right_segments(
    ld: LaunchDarklyClient, sandbox: str, contract: list[str]
) -> None:
    add_segment("toggle-enterprise", "Toggle rollout", tags=["enterprise"])
    add_segment("toggle-beta", "Beta", tags=["beta"], description="toggle testers")
    add_segment("toggle-untagged", "Toggle others", tags=["other"])
    add_segment("enterprise-only", "Enterprise", tags=["enterprise"])
    response = raw_list(ld, sandbox, SPEC_EXAMPLE)
    assert response.status_code == 200
    assert sorted(item["key"] for item in response.json()["items"]) == ["toggle-beta", "toggle-enterprise"]
    assert response.json()["totalCount"] == 2
    assert contract[-1].startswith("GET 200 /sandbox/api/v2/segments/demo/production?filter=tags+anyOf+")


@pytest.mark.parametrize(
    ("segment_filter", "keys"),
    [
        ('query equals "vip customers"', ["vip-customers"]),
        ('query equals ["vip", "staff"]', ["internal-staff", "vip-customers"]),
        ('tags anyOf ["beta", "internal"]', ["beta-testers", "internal-staff"]),
        ('tags anyOf [ "vip" ] , unbounded equals true', ["vip-customers"]),
        ("unbounded equals false", ["beta-testers", "internal-staff"]),
        ('includedKeys anyOf ["beta-testers", "churn-risk"]', ["beta-testers", "churn-risk"]),
        (
            'excludedKeys anyOf ["beta-testers", "churn-risk"]',
            ["internal-staff", "mobile-early-access", "vip-customers"],
        ),
        ('query equals "vip"|tags anyOf ["beta"]', ["beta-testers", "vip-customers"]),
        (
            '(query equals "vip"|tags anyOf ["beta"]),unbounded equals false',
            ["beta-testers"],
        ),
        ("external exists true", []),
    ],
)
def test_the_documented_syntax_filters(
    ld: LaunchDarklyClient, sandbox: str, segment_filter: str, keys: list[str]
) -> None:
    response = raw_list(ld, sandbox, segment_filter)
    assert response.status_code == 200, response.json()
    assert sorted(item["key"] for item in response.json()["items"]) == keys


@pytest.mark.parametrize(
    "segment_filter",
    [
        "query equals vip customers",  # the dashboard's old, unquoted form
        "tags anyOf [vip,marketing]",
        'tags anyOf "vip"',
        'query equals "vip',
        "unbounded equals yes",
        'unbounded equals "true"',
        "query equals 3",
        'tags anyOf ["vip", 3]',
        'colour equals "red"',
        'tags equals ["vip"]',
        '(query equals "vip"',
        'query equals "vip")',
        'query equals "vip",',
        'query equals"vip"',
        "(" * 40 + 'query equals "vip"' + ")" * 40,
    ],
)
def test_a_filter_launchdarkly_would_refuse_is_400_in_its_error_shape(
    ld: LaunchDarklyClient, sandbox: str, contract: list[str], segment_filter: str
) -> None:
    response = raw_list(ld, sandbox, segment_filter)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_request"
    assert body["message"].startswith("Invalid filter")
    assert response.headers["Content-Type"] == "application/json"
    assert len(contract) == 1  # checked: LaunchDarkly's error shape


def test_quotes_and_backslashes_are_searched_for_as_text(ld: LaunchDarklyClient) -> None:
    add_segment(
        "quoted", "Quoted", tags=['the "best"', "big spender", "a\\b"], description='say "hi" \\ there'
    )
    assert [s.key for s in ld.list_segments("demo", "production", query='say "hi" \\').items] == ["quoted"]
    for tag in ('the "best"', "big spender", "a\\b"):
        assert [s.key for s in ld.list_segments("demo", "production", tags=[tag]).items] == ["quoted"], tag
    # A quote is text, not the end of the value: nothing else matches it.
    assert ld.list_segments("demo", "production", query='"hi",tags anyOf ["vip"]').items == []


def test_a_multi_word_search_and_a_tag_through_the_client(
    ld: LaunchDarklyClient, contract: list[str]
) -> None:
    page = ld.list_segments("demo", "production", query="VIP customers", tags=["marketing"])
    assert [s.key for s in page.items] == ["vip-customers"]
    assert contract == [
        "GET 200 /sandbox/api/v2/segments/demo/production?limit=20&offset=0"
        "&filter=query+equals+%22VIP+customers%22%2Ctags+anyOf+%5B%22marketing%22%5D"
    ]


def test_create_get_duplicate_and_delete_segment(ld: LaunchDarklyClient) -> None:
    created = ld.create_segment(
        "demo",
        "staging",
        key="new-big",
        name="New big",
        description="d",
        tags=["t1"],
        unbounded=True,
        unbounded_context_kind="device",
    )
    assert (created.key, created.unbounded, created.context_kind, created.included_count) == (
        "new-big",
        True,
        "device",
        0,
    )
    fetched = ld.get_segment("demo", "staging", "new-big")
    assert fetched.name == "New big"
    assert fetched.tags == ("t1",)
    with pytest.raises(Conflict):
        ld.create_segment("demo", "staging", key="new-big", name="Again")
    # The same key is free in another environment.
    ld.create_segment("demo", "production", key="new-big", name="Elsewhere")
    ld.delete_segment("demo", "staging", "new-big")
    with pytest.raises(NotFound):
        ld.get_segment("demo", "staging", "new-big")
    with pytest.raises(NotFound):
        ld.delete_segment("demo", "staging", "new-big")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"key": "-starts-with-dash", "name": "n"},
        {"key": "has space", "name": "n"},
        {"key": "ok", "name": "   "},
        {"key": "ok", "name": "n", "tags": ["bad tag"]},
        {"key": "ok", "name": "n", "tags": ["x" * 65]},
    ],
)
def test_invalid_segment_bodies_are_400(ld: LaunchDarklyClient, kwargs: dict) -> None:
    with pytest.raises(InvalidRequest):
        ld.create_segment("demo", "production", **kwargs)
    assert not SandboxSegment.objects.filter(key="ok").exists()


def test_context_membership_for_big_and_standard_segments(
    ld: LaunchDarklyClient, sandbox: str, settings: Any, contract: list[str]
) -> None:
    """As the spec says: a member is 200 `BigSegmentTarget`; a key the big segment never held is 404
    `not_found` (the client then finds the segment and answers "not a member"); a standard segment is
    400 (the operation "does not support standard segments")."""
    assert ld.get_context_membership("demo", "production", "vip-customers", "vip-0007") == {
        "userKey": "vip-0007",
        "included": True,
        "excluded": False,
    }
    headers = {"Authorization": settings.LD_SANDBOX_TOKEN}
    base = f"{sandbox}/api/v2/segments/demo/production"
    never_seen = requests.get(f"{base}/vip-customers/contexts/nobody", headers=headers, timeout=5)
    assert (never_seen.status_code, never_seen.json()["code"]) == (404, "not_found")
    standard = requests.get(f"{base}/beta-testers/contexts/user-2001", headers=headers, timeout=5)
    assert (standard.status_code, standard.json()["code"]) == (400, "invalid_request")
    assert ld.get_context_membership("demo", "production", "vip-customers", "nobody") == {
        "userKey": "nobody",
        "included": False,
        "excluded": False,
    }
    with pytest.raises(InvalidRequest):
        ld.get_context_membership("demo", "production", "beta-testers", "user-2001")
    assert contract == [
        "GET 200 /sandbox/api/v2/segments/demo/production/vip-customers/contexts/vip-0007",
        "GET 404 /sandbox/api/v2/segments/demo/production/vip-customers/contexts/nobody",
        "GET 200 /sandbox/api/v2/segments/demo/production/vip-customers",
        "GET 400 /sandbox/api/v2/segments/demo/production/beta-testers/contexts/user-2001",
    ]


def test_membership_of_a_deleted_segment_is_segment_missing_not_a_non_member(ld: LaunchDarklyClient) -> None:
    ld.delete_segment("demo", "production", "vip-customers")
    with pytest.raises(SegmentMissing) as caught:
        ld.get_context_membership("demo", "production", "vip-customers", "vip-0007")
    assert caught.value.status == 404


def test_empty_answers_carry_no_content_type(ld: LaunchDarklyClient, sandbox: str, settings: Any) -> None:
    """The spec gives these answers no content: no body and no Content-Type (never Django's text/html)."""
    headers = {"Authorization": settings.LD_SANDBOX_TOKEN}
    base = f"{sandbox}/api/v2/segments/demo/production"
    answers = {
        "start import": requests.post(
            f"{base}/vip-customers/imports",
            headers=headers,
            files={"file": ("k.csv", b"new-1\n", "text/csv")},
            data={"mode": "merge", "waitOnApprovals": "false"},
            timeout=10,
        ),
        "start export": requests.post(f"{base}/churn-risk/exports", headers=headers, timeout=10),
        "context targets": requests.post(
            f"{base}/mobile-early-access/contexts",
            headers=headers,
            json={"included": {"add": ["x-1"]}},
            timeout=10,
        ),
        "delete segment": requests.delete(f"{base}/beta-testers", headers=headers, timeout=10),
    }
    statuses = {name: answer.status_code for name, answer in answers.items()}
    assert statuses == {
        "start import": 204,
        "start export": 200,
        "context targets": 204,
        "delete segment": 204,
    }
    for name, answer in answers.items():
        assert answer.content == b"", name
        assert "Content-Type" not in answer.headers, (name, answer.headers.get("Content-Type"))


# --- imports -----------------------------------------------------------------------------------------


def test_merge_import_runs_to_complete_and_updates_membership(ld: LaunchDarklyClient) -> None:
    started = ld.start_import(
        "demo",
        "production",
        "vip-customers",
        keys_file("vip-0001", "new-1", "new-2"),
        filename="more.csv",
        mode="merge",
    )
    assert started.import_id
    assert started.location.endswith(f"/imports/{started.import_id}")
    body = wait_for_status(ld, "vip-customers", started.import_id, "complete")
    assert body["status"] == "complete"
    assert body["mode"] == "merge"
    assert body["segmentKey"] == "vip-customers"
    assert body["files"] == [{"filename": "more.csv", "status": "complete"}]
    segment = ld.get_segment("demo", "production", "vip-customers")
    assert segment.included_count == 122
    assert segment.import_in_progress is False
    assert ld.get_context_membership("demo", "production", "vip-customers", "new-2")["included"] is True
    # The staging copy of the segment is untouched.
    assert ld.get_segment("demo", "staging", "vip-customers").included_count == 120


def test_replace_import_replaces_membership(ld: LaunchDarklyClient) -> None:
    started = ld.start_import(
        "demo", "production", "vip-customers", keys_file("only-1", "only-2"), mode="replace"
    )
    wait_for_status(ld, "vip-customers", started.import_id, "complete")
    assert ld.get_segment("demo", "production", "vip-customers").included_count == 2
    assert ld.get_context_membership("demo", "production", "vip-customers", "vip-0001")["included"] is False
    assert visible("vip-customers", "production") == {"only-1", "only-2"}


def test_import_takes_first_csv_column_and_skips_blank_lines(ld: LaunchDarklyClient) -> None:
    content = io.BytesIO(b'\xef\xbb\xbf"a,1",x\r\n\r\nb,y\r\n')
    started = ld.start_import("demo", "production", "churn-risk", content, mode="merge")
    wait_for_status(ld, "churn-risk", started.import_id, "complete")
    assert visible("churn-risk", "production") == {"a,1", "b"}


def test_keys_with_line_breaks_and_backslashes_survive_the_key_store(ld: LaunchDarklyClient) -> None:
    content = io.BytesIO(b'"two\nlines",x\r\nback\\slash\n"cr\rkey"\nplain\n')
    started = ld.start_import("demo", "production", "churn-risk", content, mode="merge")
    wait_for_status(ld, "churn-risk", started.import_id, "complete")
    assert visible("churn-risk", "production") == {"two\nlines", "back\\slash", "cr\rkey", "plain"}
    assert ld.get_segment("demo", "production", "churn-risk").included_count == 4


def test_status_moves_through_preparing_and_in_progress_while_running(
    ld: LaunchDarklyClient, settings: Any
) -> None:
    settings.SANDBOX_IMPORT_BASE_SECONDS = 1.5
    started = ld.start_import("demo", "production", "churn-risk", keys_file("k1"))
    seen = [ld.get_import("demo", "production", "churn-risk", started.import_id)["status"]]
    segment = ld.get_segment("demo", "production", "churn-risk")
    assert segment.import_in_progress is True
    assert [s.import_in_progress for s in ld.list_segments("demo", "production", query="churn").items] == [
        True
    ]

    def completed() -> bool:
        seen.append(ld.get_import("demo", "production", "churn-risk", started.import_id)["status"])
        return seen[-1] == "complete"

    wait_until("the import to complete", completed, timeout=30, every=0.1, seen=lambda: seen)
    ordered = list(dict.fromkeys(seen))
    assert ordered == ["preparing", "in_progress", "complete"]
    assert ld.get_segment("demo", "production", "churn-risk").import_in_progress is False


def test_status_timeline_grows_with_the_number_of_keys(settings: Any) -> None:
    settings.SANDBOX_IMPORT_BASE_SECONDS = 2.0
    settings.SANDBOX_IMPORT_SECONDS_PER_1000_KEYS = 0.01
    small = SandboxImport(key_count=1_000, created_ms=0)
    large = SandboxImport(key_count=1_000_000, created_ms=0)
    assert small.duration_seconds == pytest.approx(2.01)
    assert large.duration_seconds == pytest.approx(12.0)
    assert small.time_is_up(3_000)
    assert large.status_at(3_000) == "preparing"
    assert large.status_at(5_000) == "in_progress"
    assert not large.time_is_up(11_999)
    assert large.time_is_up(12_000)
    # The clock alone never says complete: only the applier does, when it has applied the keys.
    assert large.status_at(12_000) == "in_progress"
    assert SandboxImport(key_count=1, created_ms=0, final_status="complete").status_at(0) == "complete"


def test_second_import_in_same_environment_is_409_and_other_environment_is_free(
    ld: LaunchDarklyClient, settings: Any
) -> None:
    settings.SANDBOX_IMPORT_BASE_SECONDS = 60
    ld.start_import("demo", "production", "vip-customers", keys_file("a"))
    with pytest.raises(Conflict) as caught:
        ld.start_import("demo", "production", "churn-risk", keys_file("b"))
    assert caught.value.status == 409
    assert ld.start_import("demo", "staging", "churn-risk", keys_file("b")).import_id
    assert SandboxImport.objects.count() == 2


def test_wait_on_approvals_holds_until_approved(ld: LaunchDarklyClient, capsys: Any) -> None:
    started = ld.start_import(
        "demo", "production", "vip-customers", keys_file("approved-1"), wait_on_approvals=True
    )
    # The applier takes the unfinished imports oldest first: once an import started after this one is
    # complete, the applier has had this one too, and only the approval it waits for held it back.
    later = ld.start_import("demo", "staging", "vip-customers", keys_file("later-1"))
    wait_for_status(ld, "vip-customers", later.import_id, "complete", env="staging")
    assert (
        ld.get_import("demo", "production", "vip-customers", started.import_id)["status"]
        == "pending_approval"
    )
    assert ld.get_segment("demo", "production", "vip-customers").included_count == 120
    call_command("sandbox_approve", started.import_id)
    assert "approved" in capsys.readouterr().out
    wait_for_status(ld, "vip-customers", started.import_id, "complete")
    assert ld.get_segment("demo", "production", "vip-customers").included_count == 121


def test_approvals_page_approves_with_a_csrf_protected_post(ld: LaunchDarklyClient, logged_in: Any) -> None:
    started = ld.start_import("demo", "production", "churn-risk", keys_file("x"), wait_on_approvals=True)
    page = logged_in.get("/sandbox/approvals/")
    assert started.import_id in page.content.decode()
    response = logged_in.post("/sandbox/approvals/", {"import_id": started.import_id}, follow=True)
    assert "Import approved" in response.content.decode()
    assert SandboxImport.objects.get(pk=started.import_id).approved_ms is not None
    wait_for_status(ld, "churn-risk", started.import_id, "complete")


def test_stop_marker_ends_stopped_without_changing_membership(ld: LaunchDarklyClient, settings: Any) -> None:
    started = ld.start_import(
        "demo", "production", "vip-customers", keys_file("x1", settings.SANDBOX_STOP_MARKER), mode="replace"
    )
    body = wait_for_status(ld, "vip-customers", started.import_id, "stopped")
    assert body["status"] == "stopped"
    assert ld.get_segment("demo", "production", "vip-customers").included_count == 120


@pytest.mark.parametrize(
    ("segment", "content", "overrides", "message"),
    [
        ("beta-testers", b"a\n", {}, "only supported for big segments"),
        ("vip-customers", b"a\nb\nc\nd\n", {"SANDBOX_MAX_FILE_ROWS": 3}, "more than 3 rows"),
        ("vip-customers", b"a" * 64, {"SANDBOX_MAX_FILE_BYTES": 10}, "larger than the 10 byte limit"),
        ("vip-customers", b"ok\n\xff\xfe\n", {}, "not valid UTF-8"),
        ("vip-customers", b"\n  \n", {}, "no context keys"),
    ],
)
def test_invalid_imports_are_400_and_store_nothing(
    ld: LaunchDarklyClient, settings: Any, segment: str, content: bytes, overrides: dict, message: str
) -> None:
    for name, value in overrides.items():
        setattr(settings, name, value)
    with pytest.raises(InvalidRequest, match=message):
        ld.start_import("demo", "production", segment, io.BytesIO(content))
    assert SandboxImport.objects.count() == 0


@pytest.mark.parametrize(
    ("fields", "files", "message"),
    [
        ({"mode": "merge"}, None, "file is required"),
        ({"mode": "append"}, {"file": ("k.csv", b"a\n")}, "mode must be"),
        ({}, {"file": ("k.csv", b"a\n")}, "mode must be"),
        ({"mode": "merge", "waitOnApprovals": "maybe"}, {"file": ("k.csv", b"a\n")}, "waitOnApprovals"),
    ],
)
def test_malformed_import_requests_are_400(
    sandbox: str, settings: Any, fields: dict, files: Any, message: str
) -> None:
    response = requests.post(
        f"{sandbox}/api/v2/segments/demo/production/vip-customers/imports",
        headers={"Authorization": settings.LD_SANDBOX_TOKEN},
        data=fields,
        files=files,
        timeout=5,
    )
    assert response.status_code == 400
    assert message in response.json()["message"]


# --- fault injection ---------------------------------------------------------------------------------


def test_fault_latency(ld: LaunchDarklyClient, settings: Any) -> None:
    settings.SANDBOX_FAULTS = [{"method": "GET", "path": "/projects", "latency": 0.4}]
    started = time.monotonic()
    ld.list_projects()
    assert time.monotonic() - started >= 0.4


def test_fault_429_with_retry_after_is_waited_out_by_the_client(sandbox: str, settings: Any) -> None:
    settings.SANDBOX_FAULTS = [
        {"method": "GET", "path": "/projects$", "status": 429, "retry_after": 1, "times": 1}
    ]
    started = time.monotonic()
    with launchdarkly_client() as client:
        assert client.list_projects().total == 1
    assert time.monotonic() - started >= 1.0


def test_fault_429_beyond_the_wait_budget_is_rate_limited(sandbox: str, settings: Any) -> None:
    settings.SANDBOX_FAULTS = [{"path": "/projects$", "status": 429, "retry_after": 30}]
    with launchdarkly_client() as client, pytest.raises(RateLimited) as caught:
        client.list_projects()
    assert caught.value.retry_at is not None
    assert caught.value.retry_at >= time.time() + 25


@pytest.mark.parametrize("status", [500, 503])
def test_fault_5xx(sandbox: str, settings: Any, status: int) -> None:
    settings.SANDBOX_FAULTS = [{"method": "POST", "path": "/segments/", "status": status}]
    with launchdarkly_client() as client, pytest.raises(UpstreamUnavailable) as caught:
        client.create_segment("demo", "production", key="never", name="Never")
    assert caught.value.status == status
    assert not SandboxSegment.objects.filter(key="never").exists()


def test_fault_times_limits_how_often_a_rule_applies(sandbox: str, settings: Any) -> None:
    settings.SANDBOX_FAULTS = [{"method": "POST", "path": "/segments/", "status": 503, "times": 1}]
    with launchdarkly_client() as client:
        with pytest.raises(UpstreamUnavailable):
            client.create_segment("demo", "production", key="second-try", name="Second try")
        assert (
            client.create_segment("demo", "production", key="second-try", name="Second try").key
            == "second-try"
        )


def test_fault_import_accepted_without_location(ld: LaunchDarklyClient, settings: Any) -> None:
    settings.SANDBOX_FAULTS = [{"method": "POST", "path": "/imports$", "no_location": True}]
    settings.SANDBOX_IMPORT_BASE_SECONDS = 60
    started = ld.start_import("demo", "production", "vip-customers", keys_file("a"))
    assert started.import_id is None
    assert SandboxImport.objects.count() == 1  # accepted all the same
    assert ld.get_segment("demo", "production", "vip-customers").import_in_progress is True


# --- state lives in the database ------------------------------------------------------------------------


def test_state_is_read_from_the_database_on_every_request(ld: LaunchDarklyClient) -> None:
    segment = SandboxSegment.objects.get(key="churn-risk", environment__key="production")
    record = SandboxImport.objects.create(
        segment=segment,
        environment=segment.environment,
        mode="merge",
        filename="old.csv",
        key_count=1,
        created_ms=now_ms() - 600_000,
        keys_path="/nonexistent",
        final_status="complete",
    )
    body = ld.get_import("demo", "production", "churn-risk", str(record.pk))
    assert body["status"] == "complete"
    assert body["files"] == [{"filename": "old.csv", "status": "complete"}]


def test_complete_is_never_reported_before_the_membership_is_applied(
    ld: LaunchDarklyClient, settings: Any
) -> None:
    settings.SANDBOX_IMPORT_BASE_SECONDS = 0.3
    started = ld.start_import("demo", "production", "churn-risk", keys_file("late-1", "late-2"))
    deadline = time.monotonic() + 30
    while True:
        # Members and status change in one commit: members seen first mean the status read after says so.
        shown_before = visible("churn-risk", "production")
        status = ld.get_import("demo", "production", "churn-risk", started.import_id)["status"]
        count = ld.get_segment("demo", "production", "churn-risk").included_count
        if shown_before:
            assert status == "complete", shown_before
        if status == "complete":
            # By the time anyone is told "complete", the keys are applied and counted.
            assert visible("churn-risk", "production") == {"late-1", "late-2"}
            assert count == 2
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.01)
    # The applier wrote the keys before the clock ran out, but under a generation nobody was shown.
    assert (
        SandboxMember.objects.filter(
            segment__key="churn-risk", segment__environment__key="production"
        ).count()
        == 2
    )
