"""Views: each looks things up, asks a service, and renders. No LaunchDarkly logic lives here.

One module per concern; this package imports none of them (segments_app/urls.py imports each module it
routes to):

- `htmx` — the helpers every view uses: the whole page for a browser or the part htmx swaps
  (`render_page_or_fragment`, `wants_fragment`), and the Vary header that says which one was sent.
- `errors` — the app's 403 page (`forbidden`), Django's handler403 (`permission_denied`) and the CSRF
  failure view (`csrf_failure`).
- `decorators` — refusing a view by role in its environment (`environment_access`) and looking the
  URL's environment and segment up in LaunchDarkly (`with_environment`, `with_segment`).
- `health` — `/healthz`, for load balancers and monitoring.
- `segments` — the project picker, the segment list, a segment's page, creating and deleting a
  segment, and the activity log.
- `imports` — the upload form, an import's page and its polls, sending and cancelling a draft, the
  history and its export, a rejected file's problems.
- `undo` — restoring the members as they were before an import.
- `lookup` — looking keys up in a big segment, and the answer's download.
- `members` — downloading a big segment's members.
"""
