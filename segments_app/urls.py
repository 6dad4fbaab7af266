from django.urls import path

from segments_app import views

SEGMENT = "segments/<str:project>/<str:env>/<str:segment>/"

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("activity/", views.activity_list, name="activity_list"),
    path("segments/<str:project>/<str:env>/", views.segment_list, name="segment_list"),
    path("segments/<str:project>/<str:env>/new/", views.segment_create, name="segment_create"),
    path(SEGMENT, views.segment_detail, name="segment_detail"),
    path(f"{SEGMENT}delete/", views.segment_delete, name="segment_delete"),
    path(f"{SEGMENT}imports/new/", views.import_new, name="import_new"),
    path("imports/", views.import_history, name="import_history"),
    path("imports/export.csv", views.import_export, name="import_export"),
    path("imports/<int:pk>/", views.import_detail, name="import_detail"),
    path("imports/<int:pk>/badge/", views.import_badge, name="import_badge"),
]
