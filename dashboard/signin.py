"""Who is signing in, and from where: the pieces of sign-in that depend on how the site is deployed.

- `client_ip`: the address login throttling (django-axes) counts failures against. Directly on the
  internet that is the connection's address; behind a reverse proxy it is the address the proxy saw,
  taken from the header the proxy sets (CLIENT_IP_HEADER), never from anything a client can send.
- `TrustedHeaderMiddleware` / `TrustedHeaderBackend`: single sign-on through a company proxy that
  authenticates people and passes the user name in a header (SSO_HEADER). Off unless that is set.

README, "Security and sign-in", says how to configure each.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth.backends import RemoteUserBackend
from django.contrib.auth.middleware import RemoteUserMiddleware
from django.core.exceptions import MiddlewareNotUsed
from django.http import HttpRequest, HttpResponse


def client_ip(request: HttpRequest) -> str:
    """The client's address as the nearest trusted proxy saw it, or the connection's own address.

    With CLIENT_IP_HEADER unset the header is ignored, so a client cannot escape a lockout by sending
    a made-up X-Forwarded-For. With it set, proxies append to the header, so the trustworthy entry is
    the one TRUSTED_PROXY_COUNT places from the right; entries further left were written by the client."""
    remote = request.META.get("REMOTE_ADDR", "")
    header = settings.CLIENT_IP_HEADER
    if not header:
        return remote
    entries = [entry.strip() for entry in request.META.get(header, "").split(",") if entry.strip()]
    count = max(1, settings.TRUSTED_PROXY_COUNT)
    if len(entries) < count:
        return remote
    candidate = entries[-count]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote


def vouched_by_proxy(request: HttpRequest | None, credentials: dict[str, Any] | None) -> bool:
    """django-axes' whitelist: a sign-in by the SSO header is not password guessing, so never counted.

    The proxy has already authenticated the person. Counting these would be worse than useless: they
    carry no username field, so every failure (a name with no account, a deactivated one, retried on
    each request) would land on one shared (no username, proxy address) pair and lock everyone out."""
    return bool(settings.SSO_HEADER and credentials and "remote_user" in credentials)


class TrustedHeaderMiddleware(RemoteUserMiddleware):
    """Signs in the user named in SSO_HEADER (e.g. HTTP_X_FORWARDED_USER), as the SSO proxy says.

    Not used at all unless SSO_HEADER is set: then a client-sent header of that name means nothing.
    The proxy in front must remove that header from every incoming request and set it itself."""

    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        if not settings.SSO_HEADER:
            raise MiddlewareNotUsed("SSO_HEADER is not set: single sign-on by header is off.")
        super().__init__(get_response)
        self.header = settings.SSO_HEADER


class TrustedHeaderBackend(RemoteUserBackend):
    """Accepts the user the SSO proxy vouched for; creates unknown users only if SSO_CREATE_USERS.

    A user it creates has no role, so sees the page explaining whom to ask, until an admin adds one."""

    def authenticate(self, request: HttpRequest | None, remote_user: str | None = None, **kwargs: Any) -> Any:
        if not settings.SSO_HEADER:  # switched off: nothing may sign in through this backend
            return None
        return super().authenticate(request, remote_user)

    @property
    def create_unknown_user(self) -> bool:  # type: ignore[override]
        return settings.SSO_CREATE_USERS

    def configure_user(self, request: HttpRequest | None, user: Any, created: bool = True) -> Any:
        """A created user signs in only through the proxy: no password works for them here."""
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        return user
