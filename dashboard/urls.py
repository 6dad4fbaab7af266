from django.apps import apps
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.templatetags.static import static
from django.urls import include, path
from django.utils.functional import lazy
from django.views.decorators.http import require_safe
from django.views.generic import RedirectView

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Own template names, so the admin's password pages keep theirs.
    path(
        "accounts/password/",
        auth_views.PasswordChangeView.as_view(template_name="registration/password_change.html"),
        name="password_change",
    ),
    path(
        "accounts/password/done/",
        auth_views.PasswordChangeDoneView.as_view(template_name="registration/password_changed.html"),
        name="password_change_done",
    ),
    path("admin/", admin.site.urls),
    # Browsers ask every site for /favicon.ico, signed in or not: the icon is a static SVG. Its address
    # is looked up per request (lazily), as the hashed static file names are known only once collected.
    path(
        "favicon.ico",
        login_not_required(require_safe(RedirectView.as_view(url=lazy(static, str)("favicon.svg")))),
        name="favicon",
    ),
    path("", include("segments_app.urls")),
]

if apps.is_installed("sandbox"):
    # The built-in sandbox (LD_SANDBOX=1 only, which installs its app): its LaunchDarkly API and its
    # approvals page. Outside sandbox mode /sandbox/ does not exist. Asked of the app registry, fixed at
    # start-up, not of a setting a test may change after the URLs were first built.
    urlpatterns.insert(-1, path("sandbox/", include("sandbox.urls")))

# Refusals show the app's own page, saying which role is needed and whom to ask.
handler403 = "segments_app.views.errors.permission_denied"
