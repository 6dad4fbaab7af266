"""The segment list's `filter` and `sort` parameters, in LaunchDarkly's documented syntax: what a
person types becomes quoted values that can never add a clause, or is refused (`UnusableFilter`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from segments_app.launchdarkly.errors import UnusableFilter
from segments_app.launchdarkly.redact import _shown

SORT_PATTERN = re.compile(r"^-?[a-zA-Z]{1,64}$")
# Characters no search or tag means to hold: without them a filter value needs no escape but `\"` and `\\`.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def build_segment_filter(
    *, query: str | None = None, tags: Sequence[str] = (), unbounded: bool | None = None
) -> str:
    """LaunchDarkly's segment `filter` expression, written as its API reference writes it ("Filtering
    segments" in getSegments: `tags anyOf ["enterprise", "beta"],query equals "toggle"`): clauses joined
    by `,` (AND), every text value a double-quoted string, lists in `[]`.

    Each value is written as a JSON string literal, so a `"` or `\\` inside it is escaped (`\\"`, `\\\\`)
    and the filter language's `,` `|` `()` `[]` inside quotes stay text: what a person types can never add
    a clause, and a multi-word search or a tag with a space is sent whole. LaunchDarkly documents no
    escape sequences of its own; its quoted values and lists are JSON's, so JSON's are used. Control
    characters are no part of any search or tag (whitespace ones become spaces in the search; a tag
    holding one raises `UnusableFilter`), so no other escape is ever needed."""
    clauses = []
    text = " ".join(CONTROL_CHARACTERS.sub(" ", query or "").split())
    if text:
        clauses.append(f"query equals {_filter_value(text)}")
    tag_list = [t.strip() for t in tags if t and t.strip()]
    for tag in tag_list:
        if CONTROL_CHARACTERS.search(tag):
            raise UnusableFilter(f"“{_shown(tag.encode('unicode_escape').decode())}” is not a tag.")
    if tag_list:
        clauses.append(f"tags anyOf [{', '.join(_filter_value(tag) for tag in tag_list)}]")
    if unbounded is not None:
        clauses.append(f"unbounded equals {'true' if unbounded else 'false'}")
    return ",".join(clauses)


def _filter_value(text: str) -> str:
    """One quoted value of a filter: a JSON string, non-ASCII kept as it is (requests percent-encodes
    it as UTF-8), so the only escapes in it are `\\"` and `\\\\`."""
    return json.dumps(text, ensure_ascii=False)
