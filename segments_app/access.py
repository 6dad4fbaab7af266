"""Who may do what: the one place that decides, so views and templates only ask.

Three roles, Django groups created by a migration and managed in the admin:

* *Segment viewers* browse segments, imports, history and activity.
* *Segment editors* also create segments, upload, send and cancel imports, delete segments.
* *Production editors* are editors who may also act in a **protected environment**
  (`settings.PROTECTED_ENVIRONMENTS`, by environment key, default `production`). In a protected
  environment an editor without this role may look but not change anything.

Superusers may do everything. An account in no group may do nothing but log in, out, and change its
password: the pages explain why instead of failing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied

from segments_app.models import ImportRecord

VIEWERS = "Segment viewers"
EDITORS = "Segment editors"
PRODUCTION_EDITORS = "Production editors"
ROLES = (VIEWERS, EDITORS, PRODUCTION_EDITORS)

_CACHE_ATTRIBUTE = "_segment_dashboard_roles"


def roles(user: Any) -> frozenset[str]:
    """The user's roles, read once per request (cached on the user object the request holds)."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return frozenset()
    cached = getattr(user, _CACHE_ATTRIBUTE, None)
    if cached is None:
        cached = frozenset(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        setattr(user, _CACHE_ATTRIBUTE, cached)
    return cached


def is_protected(environment_key: str) -> bool:
    """True for environments where changes need the Production editors role."""
    return environment_key in settings.PROTECTED_ENVIRONMENTS


def may_view(user: Any) -> bool:
    """Any role (or superuser) may see segments, imports, history and activity."""
    return bool(getattr(user, "is_authenticated", False) and user.is_active) and (
        user.is_superuser or bool(roles(user))
    )


def may_edit(user: Any, environment_key: str) -> bool:
    """Change anything in this environment: create or delete segments, import, cancel."""
    if not may_view(user):
        return False
    if user.is_superuser:
        return True
    held = roles(user)
    if is_protected(environment_key):
        return PRODUCTION_EDITORS in held
    return bool(held & {EDITORS, PRODUCTION_EDITORS})


def may_create_segment(user: Any, environment_key: str) -> bool:
    return may_edit(user, environment_key)


def may_delete_segment(user: Any, environment_key: str) -> bool:
    return may_edit(user, environment_key)


def may_import(user: Any, environment_key: str, mode: str | None = None) -> bool:
    """Upload a file into a big segment. Replace mode needs the same rights: editor in the environment."""
    return may_edit(user, environment_key)


def may_send(user: Any, record: ImportRecord) -> bool:
    """Send (or answer the header question of) a draft: its uploader, with rights in its environment."""
    return may_edit(user, record.environment_key) and (user.pk == record.user_id or user.is_superuser)


def may_cancel(user: Any, record: ImportRecord) -> bool:
    """Cancel or discard an import that has not reached LaunchDarkly: any editor of its environment."""
    return may_edit(user, record.environment_key)


@dataclass(frozen=True)
class Permissions:
    """What the user may do on one page. Views hand it to templates as `can`, so a template shows a
    button only when the endpoint behind it would accept the user, and never tests a group itself."""

    create_segment: bool = False
    delete_segment: bool = False
    import_csv: bool = False
    send: bool = False
    cancel: bool = False
    # Why the page shows no change buttons at all, and who may act here: a hidden button explains nothing.
    why_read_only: str = ""


def for_environment(user: Any, environment_key: str) -> Permissions:
    """The user's rights on a segment list or segment page of this environment."""
    return Permissions(
        create_segment=may_create_segment(user, environment_key),
        delete_segment=may_delete_segment(user, environment_key),
        import_csv=may_import(user, environment_key),
        why_read_only="" if may_edit(user, environment_key) else read_only_reason(environment_key),
    )


def read_only_reason(environment_key: str) -> str:
    """What a person who may only look is told on an environment's pages: who may change it."""
    role = role_needed(environment_key)
    where = (
        f"“{environment_key}” is a protected environment: only {role}"
        if is_protected(environment_key)
        else f"In “{environment_key}” only {role}"
    )
    return (
        f"{where} may create or delete segments and upload files here. "
        f"Ask {settings.ACCESS_CONTACT} to add you to {role} if your work needs it."
    )


def for_import(user: Any, record: ImportRecord) -> Permissions:
    """The user's rights on one import's page."""
    return Permissions(
        create_segment=may_create_segment(user, record.environment_key),
        import_csv=may_import(user, record.environment_key),
        send=may_send(user, record),
        cancel=may_cancel(user, record),
    )


def role_needed(environment_key: str) -> str:
    """The role that lets someone change things in this environment."""
    return PRODUCTION_EDITORS if is_protected(environment_key) else EDITORS


def refusal(action: str, environment_key: str) -> str:
    """A sentence for the 403 page: what was refused and which role it needs here.

    `action` reads as the start of a sentence: "Deleting segments", "Uploading CSV files"."""
    role = role_needed(environment_key)
    where = (
        f"in the protected environment “{environment_key}”"
        if is_protected(environment_key)
        else f"in “{environment_key}”"
    )
    # Whom to ask is the 403 page's to say (ACCESS_CONTACT), once: saying it here too made it read twice.
    return f"{action} {where} needs the {role} role."


def send_refusal(user: Any, record: ImportRecord) -> str:
    """Why `may_send` said no: the environment needs a role the user lacks, or the draft is not theirs."""
    if not may_edit(user, record.environment_key):
        return refusal("Sending imports", record.environment_key)
    return (
        f"Only {record.user.get_username()}, who uploaded import #{record.pk}, can send it. "
        "Nothing was changed; you may still discard it."
    )


def require(allowed: bool, sentence: str) -> None:
    """Turn a refusal into the app's own 403 page (the handler shows `sentence`)."""
    if not allowed:
        raise PermissionDenied(sentence)
