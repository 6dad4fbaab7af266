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
]
