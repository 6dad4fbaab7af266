"""Fixtures shared by the whole suite."""

from __future__ import annotations

import copy
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache

from sandbox import faults

pytest_plugins = ["tests.object_storage"]  # s3_endpoint, s3_bucket: a real S3 server for `s3` tests

# LaunchDarkly's published contract, kept in the repository (tests/contract/README.md says where it came from).
SPEC_PATH = Path(__file__).resolve().parent / "contract" / "openapi-segments.json"


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> None:
    """The test database holds the sandbox's demo account, as `make run` gives it (`sandbox_seed`;
    no migration seeds it any more)."""
    from django.core.management import call_command

    with django_db_blocker.unblock():
        call_command("sandbox_seed", verbosity=0)


@pytest.fixture(autouse=True)
def _isolation() -> Iterator[None]:
    cache.clear()
    faults.reset()
    yield
    faults.reset()


@pytest.fixture(autouse=True)
def _postgres_only(request: pytest.FixtureRequest) -> None:
    """Tests marked `postgres` need the PostgreSQL pass; in CI a skip here is a failure."""
    if request.node.get_closest_marker("postgres") is None:
        return
    from django.db import connection

    if connection.vendor != "postgresql":
        reason = "needs PostgreSQL: set POSTGRES_TEST_URL (make test then runs a PostgreSQL pass)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run PostgreSQL tests, but {reason}")
        pytest.skip(reason)


REDIS_TEST_URL = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(autouse=True)
def _redis_only(request: pytest.FixtureRequest) -> None:
    """Tests marked `redis` need a Redis server (REDIS_TEST_URL); in CI a skip here is a failure."""
    if request.node.get_closest_marker("redis") is None:
        return
    import redis

    try:
        redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=1, socket_timeout=2).ping()
    except redis.RedisError as exc:
        reason = f"needs Redis at {REDIS_TEST_URL} (set REDIS_TEST_URL): {exc}"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run Redis tests, but {reason}")
        pytest.skip(reason)


# The roles a test can ask `make_user` for, as the groups each one is given (superuser: a flag, no group).
ROLE_GROUPS: dict[str, tuple[str, ...]] = {
    "no_group": (),
    "viewer": ("Segment viewers",),
    "editor": ("Segment editors",),
    "production_editor": ("Production editors",),
    "editor_everywhere": ("Segment editors", "Production editors"),
    "superuser": (),
}


@pytest.fixture
def make_user(django_user_model: Any) -> Any:
    """`make_user(role, username=...)`: a user holding one of ROLE_GROUPS' roles.

    Groups are fetched or created here: the migration makes them, but transactional tests flush them."""
    from django.contrib.auth.models import Group

    def make(role: str, username: str | None = None) -> Any:
        account = django_user_model.objects.create_user(
            username=username or role.replace("_", "-"),
            password="a-long-test-password",
            is_superuser=role == "superuser",
            is_staff=role == "superuser",
        )
        for name in ROLE_GROUPS[role]:
            account.groups.add(Group.objects.get_or_create(name=name)[0])
        return account

    return make


@pytest.fixture
def user(make_user: Any) -> Any:
    """The product manager most tests act as: an editor everywhere, protected environments included,
    so tests written before roles keep meaning what they meant."""
    return make_user("editor_everywhere", username="pm")


@pytest.fixture
def logged_in(client: Any, user: Any) -> Any:
    client.force_login(user)
    return client


@pytest.fixture
def sandbox(live_server: Any, settings: Any) -> Iterator[str]:
    """The built-in sandbox served over real HTTP by a live server; the app's client points at it.

    Its imports are applied as under `make run`: by the applier loop (`sandbox.applier.run`, what
    `manage.py sandbox_applier` runs), here in a thread beside the live server, stopped at teardown."""
    from django.db import connection

    from sandbox import applier
    from sandbox.models import SandboxEnvironment, SandboxMember, SandboxProject, SandboxSegment
    from sandbox.seed import seed

    # Transactional tests flush the database between tests; put the demo account back.
    seed(SandboxProject, SandboxEnvironment, SandboxSegment, SandboxMember)
    settings.LD_SANDBOX_URL = f"{live_server.url}/sandbox"
    stop = threading.Event()
    failures: list[BaseException] = []

    def apply() -> None:
        try:
            applier.run(stop, interval=0.02, deadline=time.monotonic() + 3600)
        except BaseException as exc:  # reported at teardown
            failures.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=apply, name="sandbox-applier", daemon=True)
    thread.start()
    yield settings.LD_SANDBOX_URL
    stop.set()
    thread.join(timeout=120)
    assert not thread.is_alive(), "the sandbox applier did not stop within 120 s"
    assert failures == [], failures


@pytest.fixture(scope="session")
def openapi_spec() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text())


@pytest.fixture
def contract(sandbox: str, openapi_spec: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Validate every answer any LaunchDarklyClient receives against LaunchDarkly's OpenAPI contract.

    Returns the list of validated calls, so a test can prove validation really happened.
    """
    from openapi_core import OpenAPI
    from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse
    from openapi_core.templating.responses.exceptions import ResponseNotFound

    from segments_app.launchdarkly import LaunchDarklyClient

    spec = copy.deepcopy(openapi_spec)
    spec["servers"] = [{"url": sandbox}]
    openapi = OpenAPI.from_dict(spec)
    validated: list[str] = []

    def validate(response: Any, *args: Any, **kwargs: Any) -> Any:
        # Multipart request bodies are not re-read here; the answer is what is being checked.
        try:
            openapi.validate_response(
                RequestsOpenAPIRequest(_without_body(response.request)), RequestsOpenAPIResponse(response)
            )
        except ResponseNotFound:
            # LaunchDarkly documents some errors (e.g. 409 on create) outside the spec; those must
            # still be LaunchDarkly's error shape.
            body = response.json()
            assert response.status_code >= 400, response.status_code
            assert isinstance(body.get("code"), str), body
            assert isinstance(body.get("message"), str), body
        validated.append(f"{response.request.method} {response.status_code} {response.request.path_url}")
        return response

    original_init = LaunchDarklyClient.__init__

    def init(self: LaunchDarklyClient, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.session.hooks["response"].append(validate)

    monkeypatch.setattr(LaunchDarklyClient, "__init__", init)
    return validated


def _without_body(prepared: Any) -> Any:
    if prepared.body is None or isinstance(prepared.body, (bytes, str)):
        return prepared
    copy_ = prepared.copy()
    copy_.body = b""
    return copy_


class RealLaunchDarkly:
    """The app configured for a real LaunchDarkly account, its HTTP mocked with `responses`."""

    base = "https://app.eu.launchdarkly.com"
    token = "api-real-token-0000-secret"

    def __init__(self, mock: Any) -> None:
        self.mock = mock

    def url(self, path: str) -> str:
        return self.base + path

    def add_projects(self) -> None:
        self.mock.get(
            self.url("/api/v2/projects"),
            json={
                "items": [
                    {
                        "key": "shop",
                        "name": "Shop",
                        "environments": {
                            "items": [
                                {
                                    "key": "live",
                                    "name": "Live",
                                    "color": "00ff00",
                                    "apiKey": "sdk-LEAK",
                                    "mobileKey": "mob-LEAK",
                                },
                                {
                                    "key": "test",
                                    "name": "Test",
                                    "color": "0000ff",
                                    "apiKey": "sdk-LEAK2",
                                    "mobileKey": "mob-LEAK2",
                                },
                            ]
                        },
                    }
                ],
                "totalCount": 1,
            },
        )

    def calls_to(self, path: str) -> list[Any]:
        return [c for c in self.mock.calls if c.request.path_url.split("?")[0] == path]


@pytest.fixture
def real_ld(settings: Any) -> Iterator[RealLaunchDarkly]:
    import responses

    settings.LD_SANDBOX_ENABLED = False
    settings.LD_API_TOKEN = RealLaunchDarkly.token
    settings.LD_BASE_URL = RealLaunchDarkly.base
    settings.LD_MAX_RETRIES = 0
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield RealLaunchDarkly(mock)
