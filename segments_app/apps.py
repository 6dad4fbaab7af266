from django.apps import AppConfig


class SegmentsAppConfig(AppConfig):
    name = "segments_app"
    verbose_name = "Segment Dashboard"
