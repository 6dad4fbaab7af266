"""What to tell a person when LaunchDarkly refuses or fails a call — in words, never a traceback,
and never the access token."""

from __future__ import annotations

import math
import time

from segments_app.launchdarkly import (
    Conflict,
    FileLinkRefused,
    InvalidRequest,
    LaunchDarklyError,
    NotFound,
    RateLimited,
    RefusedInput,
    SegmentMissing,
    Unauthorized,
    UpstreamUnavailable,
)


def describe(error: LaunchDarklyError) -> str:
    """One sentence for the page. LaunchDarkly's own words appear only where they help (a refused
    value); the client has already cleaned them of the token and cut them short."""
    if isinstance(error, RefusedInput):  # refused here, before LaunchDarkly was asked
        return error.message
    if isinstance(error, FileLinkRefused):
        return (
            "The link to the exported members file was refused where the file is stored; such links "
            "expire. Ask for the members again."
        )
    if isinstance(error, Unauthorized):
        if error.status == 403:
            return (
                "LaunchDarkly refused this: the configured access token lacks permission for it. "
                "Ask an administrator to give the token the role it needs."
            )
        return (
            "LaunchDarkly did not accept the configured access token: it is invalid or expired. "
            "Ask an administrator to check the LD_API_TOKEN setting."
        )
    if isinstance(error, SegmentMissing):
        # Told apart from "not a member": a key cannot be a member of a segment that is gone.
        return (
            "This segment is no longer in LaunchDarkly: it, or its project or environment, has been deleted."
        )
    if isinstance(error, NotFound):
        return "LaunchDarkly does not know this project, environment or segment."
    if isinstance(error, RateLimited):
        if error.retry_at:
            seconds = max(1, math.ceil(error.retry_at - time.time()))
            return f"LaunchDarkly is receiving too many requests. Try again in {seconds} seconds."
        return "LaunchDarkly is receiving too many requests. Try again in a minute."
    if isinstance(error, UpstreamUnavailable):
        return "LaunchDarkly is unavailable right now. Try again in a moment."
    if isinstance(error, (InvalidRequest, Conflict)):
        return f"LaunchDarkly refused the request: {error.message}"
    return f"LaunchDarkly answered with an error: {error.message}"
