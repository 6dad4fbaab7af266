from django.urls import path

from segments_app import import_views, lookup_views, snapshot_views, undo_views, views

SEGMENT = "segments/<str:project>/<str:env>/<str:segment>/"

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("activity/", views.activity_list, name="activity_list"),
    path("segments/<str:project>/<str:env>/", views.segment_list, name="segment_list"),
    path("segments/<str:project>/<str:env>/new/", views.segment_create, name="segment_create"),
    path(SEGMENT, views.segment_detail, name="segment_detail"),
    path(f"{SEGMENT}delete/", views.segment_delete, name="segment_delete"),
    path(f"{SEGMENT}imports/new/", import_views.import_new, name="import_new"),
    path(f"{SEGMENT}members/", snapshot_views.segment_members, name="segment_members"),
    path(
        f"{SEGMENT}members/<int:snapshot>.csv",
        snapshot_views.segment_members_download,
        name="segment_members_download",
    ),
    path(
        f"{SEGMENT}members/<int:snapshot>-for-spreadsheets.csv",
        snapshot_views.segment_members_spreadsheet,
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
