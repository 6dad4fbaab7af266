from django.urls import path

from sandbox import api, views

app_name = "sandbox"

SEGMENT = "api/v2/segments/<str:project_key>/<str:env_key>/<str:segment_key>"

urlpatterns = [
    path("api/v2/projects", api.projects, name="projects"),
    path("api/v2/projects/<str:project_key>/environments", api.environments, name="environments"),
    path("api/v2/segments/<str:project_key>/<str:env_key>", api.segments, name="segments"),
    path(SEGMENT, api.segment, name="segment"),
    path(f"{SEGMENT}/contexts/<str:context_key>", api.context_membership, name="context"),
    path(f"{SEGMENT}/imports", api.start_import, name="imports"),
    path(f"{SEGMENT}/imports/<str:import_id>", api.import_status, name="import"),
    path("approvals/", views.approvals, name="approvals"),
]
