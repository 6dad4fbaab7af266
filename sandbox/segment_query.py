"""LaunchDarkly's segment list query language (`filter`, `sort`), as far as the dashboard uses it."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from sandbox.errors import invalid
from sandbox.models import SandboxSegment

SORTS = {"name": "name", "creationDate": "creation_date", "lastModified": "last_modified"}


def _split_outside_brackets(text: str, separator: str) -> list[str]:
    parts, depth, current = [], 0, []
    for char in text:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        if char == separator and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _term(term: str) -> Q:
    words = term.strip().split(" ", 2)
    if len(words) < 3:
        raise invalid(f"Invalid filter term: {term.strip()!r}")
    field, op, value = words[0], words[1], words[2].strip()
    if field == "query" and op == "equals":
        return Q(name__icontains=value) | Q(key__icontains=value) | Q(description__icontains=value)
    if field == "unbounded" and op == "equals":
        if value not in ("true", "false"):
            raise invalid("unbounded must be true or false")
        return Q(unbounded=value == "true")
    if field == "tags" and op == "anyOf":
        if not (value.startswith("[") and value.endswith("]")):
            raise invalid("tags anyOf takes a list like [a,b]")
        tags = [t.strip().strip('"') for t in value[1:-1].split(",") if t.strip()]
        # JSON containment is not portable to SQLite; segment counts here are small, so match in Python.
        return Q(pk__in=[s.pk for s in SandboxSegment.objects.only("tags") if set(s.tags) & set(tags)])
    raise invalid(f"Unsupported filter: {field} {op}")


def apply_filter(queryset: QuerySet[SandboxSegment], expression: str) -> QuerySet[SandboxSegment]:
    for clause in _split_outside_brackets(expression, ","):
        if not clause.strip():
            continue
        alternatives = Q()
        for term in _split_outside_brackets(clause, "|"):
            alternatives |= _term(term)
        queryset = queryset.filter(alternatives)
    return queryset


def apply_sort(queryset: QuerySet[SandboxSegment], sort: str) -> QuerySet[SandboxSegment]:
    descending = sort.startswith("-")
    field = SORTS.get(sort.lstrip("-"))
    if field is None:
        raise invalid(f"Unsupported sort field: {sort}")
    return queryset.order_by(f"-{field}" if descending else field, "key")


def int_param(raw: str | None, name: str, default: int, *, lowest: int, highest: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid(f"{name} must be an integer") from None
    if not lowest <= value <= highest:
        raise invalid(f"{name} must be between {lowest} and {highest}")
    return value
