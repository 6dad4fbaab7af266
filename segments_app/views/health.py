"""The health check load balancers and monitoring ask (`/healthz`, no sign-in)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from segments_app.models import WorkerCheckin


@require_GET
@login_not_required
def healthz(request: HttpRequest) -> JsonResponse:
    """For load balancers and monitoring: the process answers and its database is reachable, and
    whether an import worker has checked in lately ("ok", "stale" or "none"). A stale worker does not
    make this web process unhealthy, unless `?require_worker=1` asks (then 503): imports stop moving,
    but pages still work, so a load balancer should keep sending traffic here."""
    try:
        connection.ensure_connection()
        worker, last_seen = WorkerCheckin.health()
    except DatabaseError:
        return JsonResponse({"status": "error", "database": "unreachable"}, status=503)
    body = {"status": "ok", "database": "ok", "worker": worker, "worker_last_seen_seconds": last_seen}
    if request.GET.get("require_worker") == "1" and worker != "ok":
        return JsonResponse({**body, "status": "error"}, status=503)
    return JsonResponse(body)
