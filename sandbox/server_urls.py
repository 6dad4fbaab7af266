"""The URLs of the sandbox's own server (`sandbox.wsgi`, started by `make run`): LaunchDarkly's API at the
same paths as in the main site, and a health check for whoever watches the process. Nothing else: the
approvals page belongs to the main site, where people are logged in."""

from django.urls import include, path

from sandbox import views
from sandbox.urls import api_urlpatterns

urlpatterns = [
    path("sandbox/", include((api_urlpatterns, "sandbox"))),
    path("healthz", views.healthz, name="healthz"),
]

# Errors in LaunchDarkly's shape, not the site's pages (which link to the site's own URLs).
handler404 = views.api_not_found
handler500 = views.api_server_error
