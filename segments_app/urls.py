from django.urls import path

from segments_app import views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("segments/<str:project>/<str:env>/", views.segment_list, name="segment_list"),
]
