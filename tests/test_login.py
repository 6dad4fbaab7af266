"""Signing in: throttling of password guessing, session length, logout on password change, password
rules, and single sign-on by a trusted proxy header (off unless configured)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-test-password"  # the `user` fixture's
WRONG = "not-the-password"
LOCKED = "Sign-in paused"


@pytest.fixture(autouse=True)
def _throttling(settings: Any) -> None:
    """The suite runs with django-axes off (tests/settings.py); here it is on, as in production."""
    settings.AXES_ENABLED = True


def sign_in(client: Client, password: str, username: str = "pm", **extra: str) -> Any:
    return client.post("/accounts/login/", {"username": username, "password": password}, **extra)


def signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def fail(client: Client, times: int, **extra: str) -> None:
    for _ in range(times):
        response = sign_in(client, WRONG, **extra)
        assert response.status_code in (200, 429)
        assert not signed_in(client)


def test_a_wrong_password_is_answered_on_the_login_page(client: Client, user: Any) -> None:
    response = sign_in(client, WRONG)
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()


def test_the_tenth_failure_locks_and_the_eleventh_and_41st_are_refused_even_when_right(
    client: Client, user: Any
) -> None:
    fail(client, 9)
    tenth = sign_in(client, WRONG)
    assert tenth.status_code == 429
    assert LOCKED in tenth.content.decode()

    eleventh = sign_in(client, PASSWORD)
    html = eleventh.content.decode()
    assert eleventh.status_code == 429
    assert not signed_in(client)
    # It says what to do: how long to wait, and whom to ask.
    assert "Wait 15 min, then try again" in html
    assert "ask an administrator of this dashboard to unlock your account" in html
    assert "<strong>pm</strong>" in html
    assert 'href="/accounts/login/"' in html

    fail(client, 29)  # attempts 12 to 40
    forty_first = sign_in(client, PASSWORD)
    assert forty_first.status_code == 429
    assert LOCKED in forty_first.content.decode()
    assert not signed_in(client)

    call_command("axes_reset")
    response = sign_in(client, PASSWORD)
    assert response.status_code == 302
    assert signed_in(client)


def test_an_admin_unlocks_an_account_in_the_admin(client: Client, user: Any) -> None:
    fail(client, 10)
    assert sign_in(client, PASSWORD).status_code == 429
    attempt = AccessAttempt.objects.get(username="pm")

    admin = Client()
    admin.force_login(get_user_model().objects.create_superuser("boss", "boss@example.com", PASSWORD))
    listing = admin.get("/admin/axes/accessattempt/?locked_out=yes")
    assert listing.status_code == 200
    assert f"/admin/axes/accessattempt/{attempt.pk}/change/" in listing.content.decode()
    deleted = admin.post(f"/admin/axes/accessattempt/{attempt.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 302

    assert sign_in(client, PASSWORD).status_code == 302
    assert signed_in(client)


def test_the_lockout_ends_after_the_cool_off(client: Client, user: Any) -> None:
    fail(client, 10)
    assert sign_in(client, PASSWORD).status_code == 429
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    assert sign_in(client, PASSWORD).status_code == 302


def test_limit_and_cool_off_come_from_settings(client: Client, user: Any, settings: Any) -> None:
    settings.AXES_FAILURE_LIMIT = 3
    settings.AXES_COOLOFF_TIME = timedelta(minutes=2)
    fail(client, 2)
    third = sign_in(client, WRONG)
    assert third.status_code == 429
    assert "Wait 2 min, then try again" in third.content.decode()


def test_the_lockout_is_per_username_and_address(client: Client, user: Any) -> None:
    get_user_model().objects.create_user("other", password=PASSWORD)
    fail(client, 10)
    assert sign_in(client, PASSWORD).status_code == 429
    # Another account from the same address, and the same account from elsewhere, still sign in.
    assert sign_in(Client(), PASSWORD, username="other").status_code == 302
    assert sign_in(Client(REMOTE_ADDR="10.1.2.3"), PASSWORD).status_code == 302


def test_a_made_up_forwarded_for_header_does_not_escape_the_lockout(client: Client, user: Any) -> None:
    """Without CLIENT_IP_HEADER the header is the client's own word: ignored."""
    fail(client, 10, HTTP_X_FORWARDED_FOR="10.9.9.9")
    response = sign_in(client, PASSWORD, HTTP_X_FORWARDED_FOR="10.8.8.8")
    assert response.status_code == 429
    assert AccessAttempt.objects.get().ip_address == "127.0.0.1"


def test_behind_a_proxy_the_address_comes_from_the_configured_header(
    client: Client, user: Any, settings: Any
) -> None:
    settings.CLIENT_IP_HEADER = "HTTP_X_FORWARDED_FOR"
    settings.TRUSTED_PROXY_COUNT = 1
    # The proxy appends the address it saw; whatever the client put in front is not trusted.
    fail(client, 10, HTTP_X_FORWARDED_FOR="1.1.1.1, 203.0.113.7")
    assert AccessAttempt.objects.get().ip_address == "203.0.113.7"
    locked = sign_in(client, PASSWORD, HTTP_X_FORWARDED_FOR="9.9.9.9, 203.0.113.7")
    assert locked.status_code == 429
    # Another person behind the same proxy (another address in the header) is not locked out.
    other = sign_in(Client(), PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.4")
    assert other.status_code == 302


@pytest.mark.parametrize(
    ("header", "count", "expected"),
    [
        ("", 1, "127.0.0.1"),  # no proxy configured: the connection's address
        ("10.0.0.1, 203.0.113.7", 1, "203.0.113.7"),
        ("10.0.0.1, 203.0.113.7, 192.0.2.1", 2, "203.0.113.7"),  # two proxies append
        ("203.0.113.7", 2, "127.0.0.1"),  # fewer entries than proxies: the header is not trusted
        ("not-an-address", 1, "127.0.0.1"),
        ("2001:db8::1", 1, "2001:db8::1"),
    ],
)
def test_client_ip(settings: Any, rf: Any, header: str, count: int, expected: str) -> None:
    from dashboard.signin import client_ip

    settings.CLIENT_IP_HEADER = "HTTP_X_FORWARDED_FOR"
    settings.TRUSTED_PROXY_COUNT = count
    request = rf.get("/", HTTP_X_FORWARDED_FOR=header) if header else rf.get("/")
    assert client_ip(request) == expected


# --- sessions and passwords -------------------------------------------------------------------


def test_a_session_lasts_the_configured_hours(client: Client, user: Any, settings: Any) -> None:
    assert settings.SESSION_COOKIE_AGE == 8 * 3600  # the default, from SESSION_HOURS
    settings.SESSION_COOKIE_AGE = 3600
    sign_in(client, PASSWORD)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    assert cookie["max-age"] == 3600
    assert cookie["httponly"] is True


def test_changing_the_password_signs_out_other_sessions_but_not_this_one(user: Any) -> None:
    here, elsewhere = Client(), Client()
    assert sign_in(here, PASSWORD).status_code == 302
    assert sign_in(elsewhere, PASSWORD).status_code == 302
    assert elsewhere.get("/accounts/password/").status_code == 200

    response = here.post(
        "/accounts/password/",
        {
            "old_password": PASSWORD,
            "new_password1": "purple-kettle-47-orbit",
            "new_password2": "purple-kettle-47-orbit",
        },
        follow=True,
    )
    assert response.redirect_chain[-1][0] == "/accounts/password/done/"
    assert "Password changed" in response.content.decode()

    assert here.get("/accounts/password/").status_code == 200  # still signed in
    gone = elsewhere.get("/accounts/password/")
    assert gone.status_code == 302
    assert gone["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize(
    ("new", "message"),
    [
        ("short7", "This password is too short"),
        ("password123", "This password is too common"),
        ("839201746501", "This password is entirely numeric"),
        ("kettle.purple@example", "too similar to the email address"),
    ],
)
def test_weak_passwords_are_refused_with_the_reason(
    logged_in: Client, user: Any, new: str, message: str
) -> None:
    user.email = "kettle.purple@example.com"
    user.save()
    response = logged_in.post(
        "/accounts/password/", {"old_password": PASSWORD, "new_password1": new, "new_password2": new}
    )
    assert response.status_code == 200
    assert message in response.content.decode()
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


def test_the_user_menu_links_to_the_password_page(logged_in: Client) -> None:
    html = logged_in.get("/accounts/password/").content.decode()
    assert 'href="/accounts/password/"' in html
    assert "Changing it signs you out everywhere else" in html


# --- single sign-on by trusted header ------------------------------------------------------------


def test_the_sso_header_is_ignored_unless_configured(user: Any, settings: Any) -> None:
    assert settings.SSO_HEADER == ""
    client = Client(HTTP_X_FORWARDED_USER="pm")
    response = client.get("/accounts/password/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert not signed_in(client)


def test_the_sso_backend_refuses_everyone_while_switched_off(user: Any, rf: Any) -> None:
    from dashboard.signin import TrustedHeaderBackend

    assert TrustedHeaderBackend().authenticate(rf.get("/"), remote_user="pm") is None


def test_with_sso_on_the_proxy_header_signs_the_user_in(user: Any, settings: Any) -> None:
    settings.SSO_HEADER = "HTTP_X_FORWARDED_USER"
    client = Client(HTTP_X_FORWARDED_USER="pm")
    assert client.get("/accounts/password/").status_code == 200
    assert client.session["_auth_user_id"] == str(user.pk)
    # A request that did not come through the proxy (no header) loses the session it had.
    bare = Client()
    bare.cookies = client.cookies
    assert bare.get("/accounts/password/").status_code == 302
    assert not signed_in(bare)


def test_with_sso_on_unknown_users_are_created_only_if_allowed(settings: Any) -> None:
    settings.SSO_HEADER = "HTTP_X_FORWARDED_USER"
    users = get_user_model().objects
    refused = Client(HTTP_X_FORWARDED_USER="newcomer").get("/accounts/password/")
    assert refused.status_code == 302
    assert not users.filter(username="newcomer").exists()

    settings.SSO_CREATE_USERS = True
    client = Client(HTTP_X_FORWARDED_USER="newcomer")
    client.get("/")
    created = users.get(username="newcomer")
    assert not created.has_usable_password()
    assert not created.is_staff
    assert not created.groups.exists()  # no role until an admin gives one
    assert client.session["_auth_user_id"] == str(created.pk)


def test_with_sso_on_failed_header_sign_ins_never_lock_anyone_out(user: Any, settings: Any) -> None:
    """Header sign-ins carry no username field: counted, they would share one (None, proxy address)
    pair, and a stranger reloading a page would lock every SSO user out."""
    settings.SSO_HEADER = "HTTP_X_FORWARDED_USER"
    for _ in range(settings.AXES_FAILURE_LIMIT + 2):
        assert Client(HTTP_X_FORWARDED_USER="stranger").get("/").status_code == 302
    user.is_active = False
    user.save(update_fields=["is_active"])
    for _ in range(settings.AXES_FAILURE_LIMIT + 2):
        assert Client(HTTP_X_FORWARDED_USER="pm").get("/").status_code == 302
    assert not AccessAttempt.objects.exists()
    alice = get_user_model().objects.create_user("alice")
    client = Client(HTTP_X_FORWARDED_USER="alice")
    assert client.get("/accounts/password/").status_code == 200
    assert client.session["_auth_user_id"] == str(alice.pk)
    # Passwords typed on the login page are still throttled while SSO is on.
    fail(Client(), settings.AXES_FAILURE_LIMIT)
    assert AccessAttempt.objects.filter(username="pm").exists()


def test_the_lockout_page_says_whom_to_ask(client: Client, user: Any, settings: Any) -> None:
    settings.ACCESS_CONTACT = "the Platform team in #feature-flags"
    fail(client, settings.AXES_FAILURE_LIMIT)
    page = sign_in(client, PASSWORD).content.decode()
    assert "ask the Platform team in #feature-flags to unlock your account" in page
