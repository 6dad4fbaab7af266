"""Big-segment imports: receiving a file (`intake`), checking it (`validation`), the state machine
(`pipeline`), the loop that drives it (`worker`), how workers share imports and LaunchDarkly's pauses
(`coordination`), and the files an import keeps (`storage`)."""

from segments_app.imports.coordination import Lease, active_pause, claim, pause_until
from segments_app.imports.intake import ReceivedFile, record_upload
from segments_app.imports.pipeline import advance, limits, send_draft, step
from segments_app.imports.storage import purge_expired_files, purge_files, remove_files

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
