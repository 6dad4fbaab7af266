"""gunicorn settings shared by the two servers `make run` starts: the site and the sandbox's API.

rundashboard passes what differs on the command line: the address, and the workers and threads
(WEB_WORKERS workers of WEB_THREADS threads for the site, one of SANDBOX_THREADS for the sandbox).
"""

# Threads, not processes, per request: a request that waits (an upload, a call to LaunchDarkly or to the
# sandbox) holds one thread, and the other threads keep answering.
worker_class = "gthread"
# A gthread worker reports to its master from its own loop, whatever its threads are doing, so a long
# upload never gets a worker killed; this only catches a worker that is truly stuck.
timeout = 120
# On SIGTERM requests in flight get this long to finish; make run's supervisor waits 25 s before SIGKILL.
graceful_timeout = 10
keepalive = 5
# Start-up, worker boots and crashes go to the terminal; the app logs its own requests' work.
errorlog = "-"
loglevel = "info"
