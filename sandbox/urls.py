from django.urls import path

from sandbox import api, views

app_name = "sandbox"

SEGMENT = "api/v2/segments/<str:project_key>/<str:env_key>/<str:segment_key>"

# The LaunchDarkly API: what the sandbox's own server (`sandbox.wsgi`) answers.
api_urlpatterns = [
    path("api/v2/projects", api.projects, name="projects"),
    path("api/v2/projects/<str:project_key>/environments", api.environments, name="environments"),
    path("api/v2/segments/<str:project_key>/<str:env_key>", api.segments, name="segments"),
    path(SEGMENT, api.segment, name="segment"),
    path(f"{SEGMENT}/contexts", api.context_targets, name="contexts"),
    path(f"{SEGMENT}/contexts/<str:context_key>", api.context_membership, name="context"),
    path(f"{SEGMENT}/imports", api.start_import, name="imports"),
    path(f"{SEGMENT}/imports/<str:import_id>", api.import_status, name="import"),
    path(f"{SEGMENT}/exports", api.start_export, name="exports"),
    path(f"{SEGMENT}/exports/<str:export_id>", api.export_status, name="export"),
    path(f"{SEGMENT}/exports/<str:export_id>/file", api.export_file, name="export_file"),
]

# Mounted in the main site at /sandbox/: the approvals page is for the people who use the site.
urlpatterns = [
    *api_urlpatterns,
    path("approvals/", views.approvals, name="approvals"),
]
