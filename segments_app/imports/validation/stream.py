"""The upload's bytes as the scan takes them: the buffered stream (blocks of whole lines for the fast
path, single lines for `csv.reader`), the record cap, and the text helpers that say where lines end,
how long they are, and whether a quote is left open.

BLOCK_SIZE and RECORD_CAP are read here, at each use, so a test sets them on this module."""

from __future__ import annotations

import codecs
import re
from typing import IO

import numpy as np

# Bytes read and checked at a time: big enough that per-block costs vanish, small enough to stay flat.
BLOCK_SIZE = 1 << 20
# The most bytes one CSV record may take. A key file's rows are short; past this a row is a problem
# (csv would hold it all in memory), which also bounds what an unclosed quote can swallow.
RECORD_CAP = 1 << 20

BOM = codecs.BOM_UTF8
_LINE_END = re.compile(rb"\r\n?|\n")
# Excel's list-separator hint ("sep=;") when it is a file's first line: an instruction, never a key.
_SEPARATOR_HINT = re.compile(rb"sep=([^\r\n])(?:\r\n|\r|\n)?", re.IGNORECASE)
_FIELD_END = re.compile(r"[,\r\n]")


def _open_quote(record: str) -> int:
    """Where the quote opened that `record` (one CSV record, as csv.reader read it) ends inside, or -1
    when it ends closed.

    csv.reader, in its default non-strict mode, returns a record cut off by the end of the file as if
    it were complete, so only this says that a quote was never closed. It follows csv's own states
    (quoted field, doubled quote, text after a closing quote) with str.find, not character by character."""
    at, end = 0, len(record)
    while at < end:
        if record[at] == '"':
            opened, search = at, at + 1
            while True:
                close = record.find('"', search)
                if close < 0:
                    return opened
                if record.startswith('"', close + 1):  # a doubled quote inside the field
                    search = close + 2
                    continue
                at = close + 1
                break
        stop = _FIELD_END.search(record, at)  # unquoted text (after a closing quote too) runs to here
        if stop is None or record[stop.start()] != ",":
            return -1
        at = stop.end()
    return -1


def _record_cap() -> int:
    # A fast block never holds a record longer than a block, so the cap is never below one.
    return max(RECORD_CAP, BLOCK_SIZE)


class _LongRecord(Exception):
    """A record grew past the cap; `head` is the start of the line that took it there."""

    def __init__(self, head: bytes) -> None:
        super().__init__()
        self.head = head


class _Stream:
    """The upload's bytes after the BOM, read forward through one buffer: blocks of whole lines for the
    fast path and single lines for `csv.reader`, so a record may start in a block and end past it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._buf = b""
        self._pos = 0
        self._start = 0  # file offset of _buf[0]
        self._eof = False
        self._fill(len(BOM))
        if self._buf.startswith(BOM):  # the utf-8-sig codec drops a BOM only here
            self._pos = len(BOM)

    def tell(self) -> int:
        return self._start + self._pos

    def separator_hint(self) -> bytes:
        """Take Excel's `sep=X` line if the upload starts with one (after a BOM); b"" otherwise."""
        self._fill(16)
        found = _SEPARATOR_HINT.match(self._buf, self._pos)
        if found is None or (found.end() == len(self._buf) and not self._eof):
            return b""
        if not found.group(0).endswith((b"\n", b"\r")) and found.end() != len(self._buf):
            return b""  # "sep=,x": a key that starts like the hint
        self._pos = found.end()
        return found.group(0)

    def _fill(self, want: int) -> None:
        if self._eof or len(self._buf) - self._pos >= want:
            return
        chunks = [self._buf[self._pos :]]
        have = len(chunks[0])
        while have < want:
            data = self._raw.read(max(BLOCK_SIZE, want - have))
            if not data:
                self._eof = True
                break
            chunks.append(data)
            have += len(data)
        self._start += self._pos
        self._buf = b"".join(chunks)
        self._pos = 0

    def block(self) -> bytes | None:
        """Up to BLOCK_SIZE bytes of whole lines (b"" at the end); None if the next line is longer."""
        self._fill(BLOCK_SIZE)
        buf, pos = self._buf, self._pos
        end = min(len(buf), pos + BLOCK_SIZE)
        if end == len(buf) and self._eof:
            cut = end
        else:
            cut = buf.rfind(b"\n", pos, end) + 1
            if not cut:  # a lone CR ends a line too, once the next byte shows it is not CRLF
                cut = buf.rfind(b"\r", pos, end - 1) + 1
                if not cut:
                    return None
        self._pos = cut
        return buf[pos:cut]

    def line(self, cap: int) -> bytes:
        """The next line with its line end (b"" at the end of the file); _LongRecord past `cap` bytes."""
        while True:
            buf, pos = self._buf, self._pos
            found = _LINE_END.search(buf, pos)
            if found is not None and (
                found.end() < len(buf)
                or self._eof
                or buf[found.start()] == 10
                or found.end() - found.start() == 2
            ):
                end = found.end()
            elif self._eof:
                end = len(buf)
            else:
                end = -1
            if end - pos > cap or (end < 0 and len(buf) - pos > cap):
                raise _LongRecord(buf[pos : pos + cap])
            if end >= 0:
                self._pos = end
                return buf[pos:end]
            self._fill(max(2 * (len(buf) - pos), len(buf) - pos + BLOCK_SIZE))


def _has_line_break(key: str) -> bool:
    return "\n" in key or "\r" in key


def _simple_quoted(text: str) -> list[str] | None:
    """The fields when every line is one quoted field without quotes inside ("key"), else None.

    Joining each line's closing quote to the next one's opening quote ('"\n"' -> '\n') must leave
    exactly one opening and one closing quote, and must have joined at every line break: then every
    line has its own two quotes, at its ends, and no other."""
    inner = text.replace('"\n"', "\n")
    end = len(inner) - 1 if inner.endswith("\n") else len(inner)
    if end < 2 or inner[0] != '"' or inner.find('"', 1) != end - 1:
        return None
    firsts = inner[1 : end - 1].split("\n")
    if len(text) - len(inner) != 2 * (len(firsts) - 1):
        return None
    return firsts


def _split_lines(text: str) -> list[str]:
    lines = text.split("\n")
    if not lines[-1]:  # the block's last line end (a block ends without one only at the end of the file)
        lines.pop()
    return lines


def _line_facts(block: bytes) -> tuple[int, bool]:
    """An upper bound on the characters in any line (the most bytes between line feeds), and whether
    the block holds an ASCII control character other than CR and LF: numpy, a byte array at a time."""
    codes = np.frombuffer(block, np.uint8)
    ends = np.flatnonzero(codes == 10)
    returns = block.count(b"\r") if b"\r" in block else 0
    controls = int(np.count_nonzero(codes < 32)) != len(ends) + returns or b"\x7f" in block
    if not len(ends):
        return len(block), controls
    longest = max(int(ends[0]) + 1, len(block) - int(ends[-1]))
    if len(ends) > 1:
        longest = max(longest, int(np.diff(ends).max()))
    return longest, controls
