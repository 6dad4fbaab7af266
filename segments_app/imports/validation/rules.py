"""What a key may be: the header words, the limits, the problem kinds, the per-key rules and their
messages, how a row is shown to a person, and the characters that pass for others (look-alikes).

Plain functions and constants with no file in sight; every other module of the package builds on them."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

HEADER_WORDS = frozenset(
    {
        "key", "keys", "id", "ids", "user", "users", "userkey", "user_key", "user-key", "userid", "user_id",
        "user-id", "email", "e-mail", "emails", "context", "contextkey", "context_key", "context-key",
        "device", "device_id", "deviceid", "account", "account_id", "accountid", "customer", "customer_id",
        "member", "member_id", "uuid", "guid",
    }
)  # fmt: skip
# A problem row's text in the problems file is cut to this many characters: enough to recognise it.
ROW_TEXT_CHARS = 200
# Problem kinds: a row problem leaves its row out; a structural one blocks sending the file.
ROW = "row"
STRUCTURAL = "structural"

_SURROGATE = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of invalid bytes
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # Unicode category Cc, exactly
_INVISIBLE_OR_FULLWIDTH = re.compile(
    "[\u00a0\u00ad\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u3000\ufeff\uff01-\uff5e]"
)
_GREEK_CYRILLIC = re.compile("[\u0370-\u03ff\u0400-\u052f]")
_LATIN = re.compile("[A-Za-z]")


@dataclass(frozen=True)
class Limits:
    max_keys_per_part: int = 1_000_000
    max_bytes_per_part: int = 40 * 1024 * 1024
    max_key_length: int = 512
    max_problems: int = 20


def _shown_char(code: int) -> str:
    if code < 0x20:
        return chr(0x2400 + code)  # the control pictures: ␀ ␉ ␊ ␍ …
    if code == 0x7F:
        return "\u2421"  # ␡
    if 0xDC80 <= code <= 0xDCFF:  # an invalid byte, as surrogateescape decoded it
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


# Controls (C0, DEL, C1), invalid bytes, and the format characters that reorder or hide text.
_SHOWN = {code: _shown_char(code) for code in (*range(0x20), *range(0x7F, 0xA0), *range(0xDC80, 0xDD00))}
_SHOWN.update(
    {code: _shown_char(code) for code in range(0x2000, 0x2070) if unicodedata.category(chr(code)) == "Cf"}
)
_SHOWN.update({0xFEFF: "\\ufeff"})


def shown_row(text: str) -> str:
    """A row as a person can safely read it in a spreadsheet or on screen: control characters as
    their Unicode pictures (a tab is ␉, NUL ␀), invalid UTF-8 bytes as \\xNN, invisible and
    direction-changing characters as \\uNNNN; cut to ROW_TEXT_CHARS characters."""
    cut = text[:ROW_TEXT_CHARS]
    shown = cut.translate(_SHOWN)
    return shown + "…" if len(text) > ROW_TEXT_CHARS else shown


def _without_line_end(text: str) -> str:
    if text.endswith("\r\n"):
        return text[:-2]
    if text.endswith(("\n", "\r")):
        return text[:-1]
    return text


def looks_like_header(cell: str) -> bool:
    return cell.strip().strip('"').strip().lower() in HEADER_WORDS


def _key_problem(key: str, limits: Limits) -> str:
    if _SURROGATE.search(key):
        return "is not valid UTF-8 text (save the file as UTF-8)"
    if _CONTROL.search(key):
        return "contains a control character (for example a tab, line break or NUL) inside the key"
    if len(key) > limits.max_key_length:
        return f"has a key of {len(key):,} characters; the limit is {limits.max_key_length:,}"
    return ""


def _lookalikes(keys: list[str]) -> int:
    """How many keys hold a character that passes for another: an invisible or unusual space, a
    fullwidth form, or Greek or Cyrillic letters among Latin ones ("paypal" with a Cyrillic "a").

    They are accepted (keys are opaque to LaunchDarkly, and a Cyrillic key may be meant), but such a
    key matches only a context whose key has the very same characters, so the report warns."""
    joined = "\n".join(keys)
    if joined.isascii() or not (_INVISIBLE_OR_FULLWIDTH.search(joined) or _GREEK_CYRILLIC.search(joined)):
        return 0
    return sum(
        1
        for key in keys
        if _INVISIBLE_OR_FULLWIDTH.search(key) or (_GREEK_CYRILLIC.search(key) and _LATIN.search(key))
    )
