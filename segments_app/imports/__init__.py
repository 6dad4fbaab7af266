"""Big-segment imports: receiving a file (`intake`), checking it (`validation`), and moving the
import through its states until LaunchDarkly has applied it (`pipeline`, driven by `worker`)."""

from segments_app.imports.pipeline import (
    ReceivedFile,
    active_pause,
    advance,
    check_file,
    create_import,
    limits,
    next_check_at,
    pause_until,
    purge_expired_files,
    purge_files,
)

__all__ = [
    "ReceivedFile",
    "active_pause",
    "advance",
    "check_file",
    "create_import",
    "limits",
    "next_check_at",
    "pause_until",
    "purge_expired_files",
    "purge_files",
]
