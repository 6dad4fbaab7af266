"""Every job's state changes only through its model's guarded methods (issue 10, "one job shape").

The models with a `status` field are listed from the app registry; the product's source is read for every
place that writes a status — `.update(status=…)`, `lease.renew(status=…)`, `save(update_fields=[…"status"…])`,
`obj.status = …` — and each must be one of the guarded transition methods below, which write the state only
from the state it was read in (and, for a job, its event in the same transaction). A new write anywhere else
fails here, naming the file, the function and the line. Creating a row in its first state is not a change.
"""

from __future__ import annotations

import ast
from pathlib import Path

from django.apps import apps

PRODUCT = Path(__file__).resolve().parents[1] / "segments_app"

# (module, class, method): the only places a status is written.
GUARDED = {
    ("models.py", "ImportRecord", "move"),  # the state and its event, from `source` only
    ("models.py", "ImportRecord", "_cancel_now"),  # cancelled, with its event, from a cancellable state only
    ("models.py", "ImportRecord", "leave_unsent_parts"),  # queued parts of an import that ended say so
    ("models.py", "ImportPart", "lay_out"),  # parts never sent, rewritten for a draft sent again
    ("models.py", "ImportPart", "set"),  # a part's own state, from the state it was read in
    ("models.py", "MemberSnapshot", "move"),  # the state and its event, under the worker's lease
    ("models.py", "KeyLookup", "move"),  # answered or failed, under the worker's lease
    ("models.py", "ImportRecord", "keep_preview"),  # the impact preview's state, on a draft only
}
# A job's state: its status, and the impact preview's state kept in an import's report.
STATE_FIELDS = {"status", "report"}


def status_models() -> set[str]:
    return {
        model.__name__
        for model in apps.get_app_config("segments_app").get_models()
        if any(field.name == "status" for field in model._meta.fields)
    }


def writes(source: str) -> list[tuple[str, str, int]]:
    """(class, function, line) of every status write in a module's source."""
    found: list[tuple[str, str, int]] = []

    def visit(node: ast.AST, klass: str, function: str) -> None:
        if isinstance(node, ast.ClassDef):
            klass = node.name
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            function = node.name
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name = node.func.attr
            keywords = {k.arg for k in node.keywords}
            if name in ("update", "renew", "update_or_create", "bulk_update") and keywords & STATE_FIELDS:
                found.append((klass, function, node.lineno))
            if name == "save":
                for keyword in node.keywords:
                    named = {
                        e.value for e in getattr(keyword.value, "elts", []) if isinstance(e, ast.Constant)
                    }
                    if keyword.arg == "update_fields" and named & STATE_FIELDS:
                        found.append((klass, function, node.lineno))
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                elements = target.elts if isinstance(target, ast.Tuple) else [target]
                if any(isinstance(e, ast.Attribute) and e.attr in STATE_FIELDS for e in elements):
                    found.append((klass, function, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child, klass, function)

    visit(ast.parse(source), "", "")
    return found


def test_the_check_sees_each_kind_of_write() -> None:
    source = """
class Job:
    def move(self):
        Job.objects.filter(pk=1).update(status="done")
def elsewhere(record, lease):
    record.status = "x"
    record.save(update_fields=["status"])
    lease.renew(status="ready")
    Job.objects.create(status="new")  # a first state: not a change
"""
    assert writes(source) == [
        ("Job", "move", 4),
        ("", "elsewhere", 6),
        ("", "elsewhere", 7),
        ("", "elsewhere", 8),
    ]


def test_jobs_change_state_only_through_their_models_guarded_methods() -> None:
    assert {"ImportRecord", "ImportPart", "MemberSnapshot", "KeyLookup"} <= status_models()
    places: dict[tuple[str, str, str], list[int]] = {}
    for path in sorted(PRODUCT.rglob("*.py")):
        if "migrations" in path.parts or "launchdarkly" in path.parts:  # the client: no models, no Django
            continue
        for klass, function, line in writes(path.read_text(encoding="utf-8")):
            places.setdefault((str(path.relative_to(PRODUCT)), klass, function), []).append(line)
    outside = {place: lines for place, lines in places.items() if place not in GUARDED}
    assert outside == {}, "status written outside a model's guarded transition"
    # Every guarded method is on a model with a status, and still writes one.
    assert {klass for _, klass, _ in GUARDED} <= status_models()
    assert set(places) == GUARDED
