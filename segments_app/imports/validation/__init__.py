"""Validate and normalise an uploaded CSV of context keys in one streaming pass.

LaunchDarkly takes context keys in the first column, no header, at most 1,000,000 keys and 40 MB
per file, and documents nothing about encodings, blanks or duplicates. So a file is read as UTF-8
(a BOM is dropped), parsed as real CSV, and each key trimmed; blank rows, a flagged header and
duplicates are dropped; and the keys are written, one per line, into parts that fit LaunchDarkly's
limits.

Problems come in two kinds. A ROW problem (a bad key on one row: a control character, invalid UTF-8,
too long) leaves that row out and the rest of the file can still be sent; a STRUCTURAL one (not CSV
text, empty, a quote never closed, a record over the cap, no keys) means nobody can say which rows
the file holds, so it blocks the send. Warnings (a stray quote inside a key, Excel's `sep=` line)
block nothing but are shown, with examples, so the person can check that the keys are what they meant.

Memory stays flat: a record may not take more than `RECORD_CAP` bytes (csv allows no field over
`csv.field_size_limit()` anyway), and duplicates are found from 64-bit hashes spilled to a
temporary file in hash buckets, so only one bucket and a bitmap of one bit a key are held at once.

How it is split, each module depending only on those above it (no cycles, no lazy imports):

- `rules`: what a key may be — header words, `Limits`, the problem kinds (ROW, STRUCTURAL), each
  key's rule and message, `shown_row`, look-alike characters.
- `report`: `Report`, `Problem`, `PartFile`, and `ProblemLog` (every problem of a file, as a CSV).
- `sniff`: `not_csv_text` — pictures, archives, workbooks and UTF-16 known by their first bytes.
- `stream`: the upload's bytes as blocks and lines, the record cap (BLOCK_SIZE, RECORD_CAP), and the
  text helpers that find line ends and open quotes.
- `parts`: the normalised lines written into part files, and unchecked parts renamed or copied into
  the parts once the duplicates are known.
- `scan`: the row scanner (fast and exact paths) and `normalise_csv`, which drives a whole check
  (PROGRESS_ROWS).

Every public name is re-exported here. A tunable is read in the module that defines it, so a test sets
it there (`stream.BLOCK_SIZE`, `scan.PROGRESS_ROWS`), not on this package. The modules import each other
relatively, so the package also loads from its path without Django (the benchmark and the memory tests
load it so; `segments_app.imports` would load the app's models).
"""

from .parts import COPY_SIZE
from .report import PROBLEM_COLUMNS, PartFile, Problem, ProblemLog, Report
from .rules import HEADER_WORDS, ROW, ROW_TEXT_CHARS, STRUCTURAL, Limits, looks_like_header, shown_row
from .scan import PROGRESS_ROWS, SAMPLE_KEYS, WARNING_EXAMPLES, normalise_csv
from .sniff import (
    FILE_SIGNATURES,
    NON_TEXT_BYTES,
    NON_TEXT_MIN,
    NON_TEXT_SHARE,
    SAVE_AS_CSV,
    SAVE_AS_UTF8,
    SNIFF_BYTES,
    ZIP_DOCUMENTS,
    not_csv_text,
)
from .stream import BLOCK_SIZE, BOM, RECORD_CAP

__all__ = [
    "BLOCK_SIZE",
    "BOM",
    "COPY_SIZE",
    "FILE_SIGNATURES",
    "HEADER_WORDS",
    "NON_TEXT_BYTES",
    "NON_TEXT_MIN",
    "NON_TEXT_SHARE",
    "PROBLEM_COLUMNS",
    "PROGRESS_ROWS",
    "RECORD_CAP",
    "ROW",
    "ROW_TEXT_CHARS",
    "SAMPLE_KEYS",
    "SAVE_AS_CSV",
    "SAVE_AS_UTF8",
    "SNIFF_BYTES",
    "STRUCTURAL",
    "WARNING_EXAMPLES",
    "ZIP_DOCUMENTS",
    "Limits",
    "PartFile",
    "Problem",
    "ProblemLog",
    "Report",
    "looks_like_header",
    "normalise_csv",
    "not_csv_text",
    "shown_row",
]
