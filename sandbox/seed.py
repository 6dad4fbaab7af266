"""The demo account the sandbox starts with: one project, two environments, standard and big segments."""

from __future__ import annotations

from typing import Any

DEMO_PROJECT = {"key": "demo", "name": "Demo project", "tags": ["demo"]}
DEMO_ENVIRONMENTS = [
    {"key": "production", "name": "Production", "color": "417505", "critical": True},
    {"key": "staging", "name": "Staging", "color": "F5A623", "critical": False},
]
VIP_MEMBERS = [f"vip-{n:04d}" for n in range(1, 121)]


def _rule(rule_id: str, attribute: str, op: str, values: list[str]) -> dict[str, Any]:
    return {
        "_id": rule_id,
        "clauses": [
            {
                "_id": f"{rule_id}-c1",
                "attribute": attribute,
                "op": op,
                "values": values,
                "negate": False,
                "contextKind": "user",
            }
        ],
    }


DEMO_SEGMENTS: list[dict[str, Any]] = [
    {
        "key": "beta-testers",
        "name": "Beta testers",
        "description": "People who opted in to try features before everyone else.",
        "tags": ["beta"],
        "included": ["user-1001", "user-1002", "user-1003"],
        "excluded": ["user-2001"],
        "rules": [_rule("rule-beta", "email", "endsWith", ["@beta.example.com"])],
        "flags": [{"key": "new-checkout", "name": "New checkout"}],
    },
    {
        "key": "internal-staff",
        "name": "Internal staff",
        "description": "Everyone with a company e-mail address.",
        "tags": ["internal"],
        "rules": [_rule("rule-staff", "email", "endsWith", ["@acme.test"])],
        "flags": [
            {"key": "new-checkout", "name": "New checkout"},
            {"key": "admin-tools", "name": "Admin tools"},
        ],
    },
    {
        "key": "vip-customers",
        "name": "VIP customers",
        "description": "Customers of the loyalty programme's top tier, loaded from the CRM.",
        "tags": ["vip", "marketing"],
        "unbounded": True,
        "unbounded_context_kind": "user",
        "members": VIP_MEMBERS,
        "flags": [{"key": "vip-lounge", "name": "VIP lounge"}],
    },
    {
        "key": "mobile-early-access",
        "name": "Mobile early access",
        "description": "Devices enrolled in the mobile app's early-access programme.",
        "tags": ["mobile"],
        "unbounded": True,
        "unbounded_context_kind": "device",
    },
    {
        "key": "churn-risk",
        "name": "Churn risk",
        "description": "Accounts the data team scores as likely to cancel.",
        "tags": ["retention"],
        "unbounded": True,
        "unbounded_context_kind": "user",
    },
]


def seed(project_model: Any, environment_model: Any, segment_model: Any, member_model: Any) -> None:
    """Create the demo account unless a project exists already (models passed in, for migrations)."""
    if project_model.objects.exists():
        return
    project = project_model.objects.create(**DEMO_PROJECT)
    for env_fields in DEMO_ENVIRONMENTS:
        environment = environment_model.objects.create(project=project, **env_fields)
        for fields in DEMO_SEGMENTS:
            fields = dict(fields)
            members = fields.pop("members", [])
            segment = segment_model.objects.create(
                environment=environment, included_count=len(members), **fields
            )
            member_model.objects.bulk_create(
                [member_model(segment=segment, context_key=key) for key in members]
            )
