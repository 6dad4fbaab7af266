from django.apps import AppConfig


class SegmentsAppConfig(AppConfig):
    name = "segments_app"
    verbose_name = "Segment Dashboard"

    def ready(self) -> None:
        """Registers the start-up checks (segments_app/checks.py) with Django's check framework."""
        from segments_app import checks  # noqa: F401
