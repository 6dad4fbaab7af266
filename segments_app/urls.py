from django.urls import path

from segments_app.views import health
from segments_app.views import imports as import_views
from segments_app.views import lookup as lookup_views
from segments_app.views import members as member_views
from segments_app.views import segments as segment_views
from segments_app.views import undo as undo_views

SEGMENT = "segments/<str:project>/<str:env>/<str:segment>/"

urlpatterns = [
    path("", segment_views.home, name="home"),
    path("healthz", health.healthz, name="healthz"),
    path("activity/", segment_views.activity_list, name="activity_list"),
    path("segments/<str:project>/<str:env>/", segment_views.segment_list, name="segment_list"),
    path("segments/<str:project>/<str:env>/new/", segment_views.segment_create, name="segment_create"),
    path(SEGMENT, segment_views.segment_detail, name="segment_detail"),
    path(f"{SEGMENT}delete/", segment_views.segment_delete, name="segment_delete"),
    path(f"{SEGMENT}imports/new/", import_views.import_new, name="import_new"),
    path(f"{SEGMENT}members/", member_views.segment_members, name="segment_members"),
    path(
        f"{SEGMENT}members/<int:snapshot>.csv",
        member_views.segment_members_download,
        name="segment_members_download",
    ),
    path(
        f"{SEGMENT}members/<int:snapshot>-for-spreadsheets.csv",
        member_views.segment_members_spreadsheet,
        name="segment_members_spreadsheet",
    ),
    path(f"{SEGMENT}lookup/", lookup_views.lookup_keys, name="lookup_keys"),
    path(f"{SEGMENT}lookup/<str:token>.csv", lookup_views.lookup_download, name="lookup_download"),
    path("imports/", import_views.import_history, name="import_history"),
    path("imports/export.csv", import_views.import_export, name="import_export"),
    path("imports/statuses/", import_views.import_statuses, name="import_statuses"),
    path("imports/<int:pk>/", import_views.import_detail, name="import_detail"),
    path("imports/<int:pk>/send/", import_views.import_send, name="import_send"),
    path("imports/<int:pk>/cancel/", import_views.import_cancel, name="import_cancel"),
    path("imports/<int:pk>/restore/", undo_views.import_restore, name="import_restore"),
    path("imports/<int:pk>/badge/", import_views.import_badge, name="import_badge"),
    path("imports/<int:pk>/problems.csv", import_views.import_problems, name="import_problems"),
]
