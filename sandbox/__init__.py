"""A built-in LaunchDarkly sandbox: the REST API v2 endpoints the dashboard uses, backed by the database.

The dashboard reaches it over HTTP through its ordinary LaunchDarkly client, so a new user can try
the whole product with no LaunchDarkly account.
"""
