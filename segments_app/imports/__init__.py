"""Big-segment imports: receiving a file (`intake`), checking it (`validation`), the state machine
(`pipeline`) and the loop that drives it (`worker`)."""

from segments_app.imports.intake import ReceivedFile, record_upload
from segments_app.imports.pipeline import (
    Lease,
    active_pause,
    advance,
    claim,
    limits,
    pause_until,
    purge_expired_files,
    purge_files,
    remove_files,
    send_draft,
    step,
)

__all__ = [
    "Lease",
    "ReceivedFile",
    "active_pause",
    "advance",
    "claim",
    "limits",
    "pause_until",
    "purge_expired_files",
    "purge_files",
    "record_upload",
    "remove_files",
    "send_draft",
    "step",
]
