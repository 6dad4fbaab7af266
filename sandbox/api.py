"""The sandbox's REST API v2 endpoints, answering in LaunchDarkly's shapes and status codes.

These endpoints authenticate like LaunchDarkly: by the `Authorization` header, not by a session
cookie. So they are exempt from login and CSRF (no browser cookie can authorise them).
"""

from __future__ import annotations

import hmac
import json
import re
import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from sandbox import exports, faults, imports, representations
from sandbox.errors import ApiError, conflict, invalid, not_found
from sandbox.faults import Fault
from sandbox.models import (
    SandboxEnvironment,
    SandboxExport,
    SandboxImport,
    SandboxMember,
    SandboxProject,
    SandboxSegment,
    now_ms,
)
from sandbox.segment_query import apply_sort, filter_q, int_param, parse_segment_filter

KEY_PATTERN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
TAG_PATTERN = re.compile(r"^[a-zA-Z0-9_.-]{1,64}$")

View = Callable[..., HttpResponse]


def endpoint(*methods: str) -> Callable[[View], View]:
    """Authentication, fault injection, allowed methods and error rendering for one endpoint."""

    def decorate(view: View) -> View:
        @csrf_exempt
        @login_not_required
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            try:
                if not settings.LD_SANDBOX_ENABLED:
                    raise not_found("The sandbox is off: a LaunchDarkly token is configured")
                token = request.headers.get("Authorization", "")
                if not hmac.compare_digest(token.encode(), settings.LD_SANDBOX_TOKEN.encode()):
                    raise ApiError(401, "unauthorized", "Invalid access token")
                api_path = request.path.removeprefix("/sandbox")
                fault = faults.match(request, api_path)
                if fault is not None and (error := fault.error_response()) is not None:
                    return error
                if request.method not in methods:
                    raise ApiError(405, "method_not_allowed", "Method not allowed")
                return view(request, *args, fault=fault, **kwargs)
            except ApiError as exc:
                return exc.response()

        wrapper.checks_its_own_methods = True  # type: ignore[attr-defined]  # PATCH, DELETE: see middleware
        return wrapper

    return decorate


def no_content(status: int = 204) -> HttpResponse:
    """An answer with no body, as the spec gives it (204s, and the 200 of "start export"): no
    Content-Type at all. Django's default, `text/html`, would claim a page that is not there."""
    response = HttpResponse(status=status)
    del response["Content-Type"]
    return response


# --- lookups ------------------------------------------------------------------------------------


def _environment(project_key: str, env_key: str) -> SandboxEnvironment:
    try:
        return SandboxEnvironment.objects.select_related("project").get(project__key=project_key, key=env_key)
    except SandboxEnvironment.DoesNotExist:
        raise not_found("Unknown project or environment") from None


def _segment(project_key: str, env_key: str, segment_key: str) -> SandboxSegment:
    environment = _environment(project_key, env_key)
    try:
        return SandboxSegment.objects.get(environment=environment, key=segment_key)
    except SandboxSegment.DoesNotExist:
        raise not_found("Unknown segment") from None


def _segment_json(segment: SandboxSegment, project_key: str, env_key: str) -> dict[str, Any]:
    running = segment.imports.filter(final_status="").exists()
    return representations.segment(segment, project_key=project_key, env_key=env_key, import_running=running)


# --- projects and environments ----------------------------------------------------------------------


@endpoint("GET")
def projects(request: HttpRequest, fault: Fault | None) -> HttpResponse:
    limit = int_param(request.GET.get("limit"), "limit", 20, lowest=1, highest=1000)
    offset = int_param(request.GET.get("offset"), "offset", 0, lowest=0, highest=10**9)
    expand = {part.strip() for part in request.GET.get("expand", "").split(",")}
    queryset = SandboxProject.objects.order_by("key")
    if "environments" in expand:
        queryset = queryset.prefetch_related("environments")
    page = list(queryset[offset : offset + limit])
    return JsonResponse(
        {
            "_links": {"self": {"href": "/api/v2/projects", "type": "application/json"}},
            "totalCount": SandboxProject.objects.count(),
            "items": [representations.project(p, with_environments="environments" in expand) for p in page],
        }
    )


@endpoint("GET")
def environments(request: HttpRequest, project_key: str, fault: Fault | None) -> HttpResponse:
    limit = int_param(request.GET.get("limit"), "limit", 20, lowest=1, highest=1000)
    offset = int_param(request.GET.get("offset"), "offset", 0, lowest=0, highest=10**9)
    try:
        project = SandboxProject.objects.get(key=project_key)
    except SandboxProject.DoesNotExist:
        raise not_found("Unknown project") from None
    envs = project.environments.all()
    page = list(envs[offset : offset + limit])
    return JsonResponse(representations.environments(page, project.key, envs.count()))


# --- segments ------------------------------------------------------------------------------------


@endpoint("GET", "POST")
def segments(request: HttpRequest, project_key: str, env_key: str, fault: Fault | None) -> HttpResponse:
    environment = _environment(project_key, env_key)
    if request.method == "POST":
        return _create_segment(request, environment)
    limit = int_param(request.GET.get("limit"), "limit", 20, lowest=1, highest=50)
    offset = int_param(request.GET.get("offset"), "offset", 0, lowest=0, highest=10**9)
    queryset = SandboxSegment.objects.filter(environment=environment).annotate(
        import_running=Exists(SandboxImport.objects.filter(segment=OuterRef("pk"), final_status=""))
    )
    if request.GET.get("filter"):
        queryset = queryset.filter(filter_q(parse_segment_filter(request.GET["filter"]), environment))
    queryset = (
        apply_sort(queryset, request.GET["sort"])
        if request.GET.get("sort")
        else queryset.order_by("name", "key")
    )
    page = list(queryset[offset : offset + limit])
    self_href = f"/api/v2/segments/{project_key}/{env_key}"
    return JsonResponse(
        {
            "_links": {"self": {"href": self_href, "type": "application/json"}},
            "totalCount": queryset.count(),
            "items": [
                representations.segment(
                    s, project_key=project_key, env_key=env_key, import_running=s.import_running
                )
                for s in page
            ],
        }
    )


def _create_segment(request: HttpRequest, environment: SandboxEnvironment) -> HttpResponse:
    try:
        body = json.loads(request.body or b"null")
    except ValueError:
        raise invalid("Request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise invalid("Request body must be a JSON object")
    key, name = body.get("key"), body.get("name")
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        raise invalid(
            "key must start with a letter or digit and contain only letters, digits, '.', '_' or '-'"
        )
    if not isinstance(name, str) or not name.strip():
        raise invalid("name is required")
    tags = body.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) and TAG_PATTERN.match(t) for t in tags):
        raise invalid("tags must be 1-64 characters of letters, digits, '.', '_' or '-'")
    description = body.get("description") or ""
    unbounded = body.get("unbounded", False)
    if not isinstance(description, str) or not isinstance(unbounded, bool):
        raise invalid("description must be a string and unbounded a boolean")
    context_kind = body.get("unboundedContextKind") or ("user" if unbounded else "")
    if not isinstance(context_kind, str):
        raise invalid("unboundedContextKind must be a string")
    try:
        with transaction.atomic():
            segment = SandboxSegment.objects.create(
                environment=environment,
                key=key,
                name=name.strip(),
                description=description,
                tags=tags,
                unbounded=unbounded,
                unbounded_context_kind=context_kind if unbounded else "",
            )
    except IntegrityError:
        raise conflict(f"A segment with key '{key}' already exists") from None
    body = representations.segment(
        segment, project_key=environment.project.key, env_key=environment.key, import_running=False
    )
    return JsonResponse(body, status=201)


@endpoint("GET", "DELETE")
def segment(
    request: HttpRequest, project_key: str, env_key: str, segment_key: str, fault: Fault | None
) -> HttpResponse:
    seg = _segment(project_key, env_key, segment_key)
    if request.method == "DELETE":
        seg.delete()
        return no_content()
    return JsonResponse(_segment_json(seg, project_key, env_key))


@endpoint("GET")
def context_membership(
    request: HttpRequest,
    project_key: str,
    env_key: str,
    segment_key: str,
    context_key: str,
    fault: Fault | None,
) -> HttpResponse:
    """A big segment's target: 200 for a key it holds; like LaunchDarkly, 404 (`not_found`) for a key it
    has never held, and 400 for a standard segment ("This operation does not support standard segments")."""
    seg = _segment(project_key, env_key, segment_key)
    if not seg.unbounded:
        raise invalid("This operation does not support standard segments")
    # Big segments here hold no excluded targets: a key is either a member or was never seen.
    if not seg.visible_members().filter(context_key=context_key).exists():
        raise not_found()
    return JsonResponse({"userKey": context_key, "included": True, "excluded": False})


# --- imports ----------------------------------------------------------------------------------------


@endpoint("POST")
def start_import(
    request: HttpRequest, project_key: str, env_key: str, segment_key: str, fault: Fault | None
) -> HttpResponse:
    seg = _segment(project_key, env_key, segment_key)
    upload = request.FILES.get("file")
    if upload is None:
        raise invalid("file is required")
    mode = request.POST.get("mode", "")
    if mode not in ("merge", "replace"):
        raise invalid("mode must be 'merge' or 'replace'")
    wait = request.POST.get("waitOnApprovals", "false").lower()
    if wait not in ("true", "false"):
        raise invalid("waitOnApprovals must be true or false")
    record = imports.start_import(seg, upload, mode=mode, wait_on_approvals=wait == "true")
    response = no_content()
    if fault is None or not fault.no_location:
        response["Location"] = f"/api/v2/segments/{project_key}/{env_key}/{segment_key}/imports/{record.id}"
    return response


@endpoint("GET")
def import_status(
    request: HttpRequest,
    project_key: str,
    env_key: str,
    segment_key: str,
    import_id: str,
    fault: Fault | None,
) -> HttpResponse:
    seg = _segment(project_key, env_key, segment_key)
    try:
        record = seg.imports.get(pk=uuid.UUID(import_id))
    except (SandboxImport.DoesNotExist, ValueError):
        raise not_found("Unknown import") from None
    # Read-only: `complete` comes from the row the applier commits together with the membership change.
    status = record.status_at(now_ms())
    body = representations.import_(
        record, project_key=project_key, env_key=env_key, segment_key=segment_key, status=status
    )
    return JsonResponse(body)


# --- exports ----------------------------------------------------------------------------------------


@endpoint("POST")
def start_export(
    request: HttpRequest, project_key: str, env_key: str, segment_key: str, fault: Fault | None
) -> HttpResponse:
    seg = _segment(project_key, env_key, segment_key)
    record = exports.start_export(seg)
    # LaunchDarkly answers 200 with no body; the export ID is the last part of `Location`.
    response = no_content(200)
    if fault is None or not fault.no_location:
        response["Location"] = f"/api/v2/segments/{project_key}/{env_key}/{segment_key}/exports/{record.id}"
    return response


@endpoint("GET")
def export_status(
    request: HttpRequest,
    project_key: str,
    env_key: str,
    segment_key: str,
    export_id: str,
    fault: Fault | None,
) -> HttpResponse:
    seg = _segment(project_key, env_key, segment_key)
    try:
        record = seg.exports.get(pk=uuid.UUID(export_id))
    except (SandboxExport.DoesNotExist, ValueError):
        raise not_found("Unknown export") from None
    status = exports.status(record)
    record.refresh_from_db()
    links = {
        "self": {
            "href": f"/api/v2/segments/{project_key}/{env_key}/{segment_key}/exports/{record.id}",
            "type": "application/json",
        }
    }
    if status == "complete":
        # Absolute, like a storage service's signed URL: it needs no token, only its signature.
        path = reverse("sandbox:export_file", args=[project_key, env_key, segment_key, record.id])
        href = request.build_absolute_uri(f"{path}?signature={exports.file_signature(record)}")
        links["file"] = {"href": href, "type": "text/csv"}
    return JsonResponse(
        {
            "_links": links,
            "id": str(record.id),
            "segmentKey": segment_key,
            "creationTime": record.created_ms,
            "status": status,
            "sizeBytes": record.size_bytes,
            "size": f"{record.size_bytes} B",
            "initiator": {"name": "Sandbox", "email": "sandbox@example.com"},
        }
    )


@csrf_exempt
@login_not_required
def export_file(
    request: HttpRequest, project_key: str, env_key: str, segment_key: str, export_id: str
) -> HttpResponse:
    """The export's file, for whoever holds its signed link (no token: it may be fetched from anywhere)."""
    if not settings.LD_SANDBOX_ENABLED or request.method != "GET":
        raise Http404
    if not exports.signature_matches(export_id, request.GET.get("signature", "")):
        # Like every other sandbox API address: 401 to whoever lacks the credential (here, the signature).
        return ApiError(401, "unauthorized", "Invalid or missing signature").response()
    try:
        record = SandboxExport.objects.get(
            pk=uuid.UUID(export_id),
            segment__key=segment_key,
            segment__environment__key=env_key,
            segment__environment__project__key=project_key,
        )
    except (SandboxExport.DoesNotExist, ValueError):
        raise Http404 from None
    if not record.file_path:
        raise Http404
    # FileResponse streams the file in blocks and closes it.
    return FileResponse(open(record.file_path, "rb"), content_type="text/csv")


# --- context targets --------------------------------------------------------------------------------


@endpoint("POST")
def context_targets(
    request: HttpRequest, project_key: str, env_key: str, segment_key: str, fault: Fault | None
) -> HttpResponse:
    """Add or remove included targets of a big segment, visible at once (in the live generation)."""
    seg = _segment(project_key, env_key, segment_key)
    if not seg.unbounded:
        raise invalid("Context targets can only be updated on big segments")
    try:
        body = json.loads(request.body or b"null")
    except ValueError:
        raise invalid("Request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise invalid("Request body must be a JSON object")
    included = body.get("included") or {}
    if not isinstance(included, dict):
        raise invalid("included must be an object")
    lists = {}
    for name in ("add", "remove"):
        keys = included.get(name) or []
        if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
            raise invalid(f"included.{name} must be a list of context keys")
        lists[name] = list(dict.fromkeys(keys))
    with transaction.atomic():
        seg = SandboxSegment.objects.select_for_update().get(pk=seg.pk)
        visible = seg.visible_members()
        if lists["remove"]:
            visible.filter(context_key__in=lists["remove"]).delete()
        if lists["add"]:
            present = set(visible.filter(context_key__in=lists["add"]).values_list("context_key", flat=True))
            SandboxMember.objects.bulk_create(
                [
                    SandboxMember(segment=seg, context_key=key, generation=seg.live_generation)
                    for key in lists["add"]
                    if key not in present
                ],
                ignore_conflicts=True,
            )
        seg.included_count = seg.visible_members().count()
        seg.version += 1
        seg.last_modified = now_ms()
        seg.save(update_fields=["included_count", "version", "last_modified"])
    return no_content()
