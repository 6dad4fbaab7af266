"""LaunchDarkly's segment list query language (`filter`, `sort`), as getSegments documents it."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from django.db.models import Q, QuerySet

from sandbox.errors import invalid
from sandbox.models import SandboxEnvironment, SandboxSegment

SORTS = {"name": "name", "creationDate": "creation_date", "lastModified": "last_modified"}


# --- the segment list's `filter` ------------------------------------------------------------------
# The syntax getSegments documents ("Filtering segments"): `field operator value` terms, `|` (OR)
# between terms, `,` (AND) between clauses, `()` to group; values as in its examples —
# `query equals "toggle"`, `tags anyOf ["enterprise", "beta"]`, `unbounded equals true` — read as JSON
# values, which is what they are (quoted strings with `\"` and `\\` escapes, lists, true/false).
# What LaunchDarkly would not take is refused with its 400 `invalid_request`: an unquoted value, an
# operator a field does not support, a group left open.

# The fields and operators getSegments documents, with the JSON type of the value each takes.
FILTER_FIELDS: dict[tuple[str, str], tuple[type, ...]] = {
    ("excludedKeys", "anyOf"): (list,),
    ("external", "exists"): (bool,),
    ("includedKeys", "anyOf"): (list,),
    ("query", "equals"): (str, list),  # "Supply a string or list of strings to the operator."
    ("tags", "anyOf"): (list,),
    ("unbounded", "equals"): (bool,),
}
FILTER_TERM_HEAD = re.compile(r"\s*([A-Za-z]+)\s+([A-Za-z]+)\s+")
# Deeper nesting than a person writes; a bound keeps a crafted filter from exhausting the stack.
FILTER_MAX_DEPTH = 16
_JSON = json.JSONDecoder()


@dataclass(frozen=True)
class FilterTerm:
    """One `field operator value` term, its value as decoded (a str, a list of str, or a bool)."""

    field: str
    operator: str
    value: Any


@dataclass(frozen=True)
class FilterGroup:
    """Terms or groups joined by `,` (`join="all"`) or by `|` (`join="any"`)."""

    join: str
    parts: tuple[FilterTerm | FilterGroup, ...]


FilterNode = FilterTerm | FilterGroup


def parse_segment_filter(text: str) -> FilterNode:
    """The filter as a tree, or `ApiError` 400 where LaunchDarkly's parser would refuse it."""
    return _FilterParser(text).parse()


class _FilterParser:
    """Recursive descent over the filter text. LaunchDarkly does not say whether `,` or `|` binds
    tighter; here `|` does (`a,b|c` is `a AND (b OR c)`), and `()` settles any doubt."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.depth = 0

    def parse(self) -> FilterNode:
        node = self._all()
        if self._next() != "":
            raise invalid(f"Invalid filter: unexpected {self.text[self.pos]!r} at position {self.pos}")
        return node

    def _next(self) -> str:
        """The next character that is not a space ('' at the end)."""
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1
        return self.text[self.pos : self.pos + 1]

    def _all(self) -> FilterNode:
        parts = [self._any()]
        while self._next() == ",":
            self.pos += 1
            parts.append(self._any())
        return parts[0] if len(parts) == 1 else FilterGroup("all", tuple(parts))

    def _any(self) -> FilterNode:
        parts = [self._term()]
        while self._next() == "|":
            self.pos += 1
            parts.append(self._term())
        return parts[0] if len(parts) == 1 else FilterGroup("any", tuple(parts))

    def _term(self) -> FilterNode:
        if self._next() == "(":
            self.depth += 1
            if self.depth > FILTER_MAX_DEPTH:
                raise invalid("Invalid filter: groups are nested too deeply")
            self.pos += 1
            node = self._all()
            if self._next() != ")":
                raise invalid(f"Invalid filter: '(' is not closed at position {self.pos}")
            self.pos += 1
            self.depth -= 1
            return node
        head = FILTER_TERM_HEAD.match(self.text, self.pos)
        if head is None:
            raise invalid(f"Invalid filter: expected 'field operator value' at position {self.pos}")
        field, operator = head.groups()
        types = FILTER_FIELDS.get((field, operator))
        if types is None:
            raise invalid(f"Invalid filter: unsupported field and operator '{field} {operator}'")
        try:
            value, self.pos = _JSON.raw_decode(self.text, head.end())
        except json.JSONDecodeError:
            raise invalid(
                f"Invalid filter: the value of '{field} {operator}' at position {head.end()} must be "
                "a quoted string, a list of quoted strings, true or false"
            ) from None
        if not isinstance(value, types) or (
            isinstance(value, list) and not all(isinstance(item, str) for item in value)
        ):
            wanted = {bool: "true or false", list: "a list of quoted strings", str: "a quoted string"}
            raise invalid(
                f"Invalid filter: '{field} {operator}' takes {' or '.join(wanted[t] for t in types)}"
            )
        return FilterTerm(field, operator, value)


def filter_q(node: FilterNode, environment: SandboxEnvironment) -> Q:
    """The filter as a query over one environment's segments."""
    everything, nothing = Q(pk__isnull=False), Q(pk__in=[])
    if isinstance(node, FilterGroup):
        parts = [filter_q(part, environment) for part in node.parts]
        combined = parts[0]
        for part in parts[1:]:
            combined = combined & part if node.join == "all" else combined | part
        return combined
    value = node.value
    if node.field == "query":
        texts = value if isinstance(value, list) else [value]
        found = nothing
        for text in texts:
            found |= Q(name__icontains=text) | Q(key__icontains=text) | Q(description__icontains=text)
        return found
    if node.field == "tags":
        # JSON containment is not portable to SQLite; segment counts here are small, so match in Python.
        wanted = set(value)
        segments = SandboxSegment.objects.filter(environment=environment).only("tags")
        return Q(pk__in=[s.pk for s in segments if wanted & set(s.tags)])
    if node.field == "includedKeys":
        return Q(key__in=value)
    if node.field == "excludedKeys":
        return ~Q(key__in=value)
    if node.field == "unbounded":
        return Q(unbounded=value)
    # `external exists`: synced segments come from another tool; the sandbox has none.
    return nothing if value else everything


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
