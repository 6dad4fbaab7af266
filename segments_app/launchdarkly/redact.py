"""Texts from LaunchDarkly made fit to show, log and store: `TokenRedactor` removes the access token
(should an answer ever echo it), `_shown` shortens, `_upstream_text` does both to one value from an
answer, `_redact_json` cleans every text in a whole JSON answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote, quote_plus

MAX_UPSTREAM_TEXT = 500
REDACTED = "[redacted]"


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class TokenRedactor:
    """Removes the access token from a text: the token itself, its URL-encoded forms, the token
    without its `api-` prefix, and any run of 12 or more of its characters (a truncated echo).

    Case is ignored (ASCII only, so positions in the text stay where they were)."""

    PIECE = 12

    def __init__(self, token: str) -> None:
        forms = {token, quote(token, safe=""), quote_plus(token)}
        if token.lower().startswith("api-"):
            forms.add(token[4:])
        self._forms = sorted({f.translate(_ASCII_LOWER) for f in forms if f}, key=len, reverse=True)
        self._pieces = {
            form[i : i + self.PIECE]
            for form in self._forms
            if len(form) > self.PIECE
            for i in range(len(form) - self.PIECE + 1)
        }

    def __repr__(self) -> str:
        return "<TokenRedactor>"

    def __call__(self, text: str) -> str:
        if not self._forms or not text:
            return text
        lowered = text.translate(_ASCII_LOWER)
        hidden = [False] * len(text)
        for form in self._forms:
            start = lowered.find(form)
            while start != -1:
                hidden[start : start + len(form)] = [True] * len(form)
                start = lowered.find(form, start + 1)
        if self._pieces:
            for start in range(len(text) - self.PIECE + 1):
                if lowered[start : start + self.PIECE] in self._pieces:
                    hidden[start : start + self.PIECE] = [True] * self.PIECE
        if not any(hidden):
            return text
        out: list[str] = []
        for index, char in enumerate(text):
            if not hidden[index]:
                out.append(char)
            elif index == 0 or not hidden[index - 1]:
                out.append(REDACTED)
        return "".join(out)


def _redact_json(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_redact_json(item, redact) for item in value]
    if isinstance(value, dict):
        return {key: _redact_json(item, redact) for key, item in value.items()}
    return value


def _shown(text: str, limit: int = 80) -> str:
    """Text from a person or from LaunchDarkly, short enough to quote back in a message."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _upstream_text(value: Any, redact: Callable[[str], str], *, limit: int = MAX_UPSTREAM_TEXT) -> str:
    """A text LaunchDarkly sent, fit to show: a string only, without the token, within `limit`."""
    if not isinstance(value, str):
        return ""
    text = " ".join(redact(value).split())
    return _shown(text, limit)
