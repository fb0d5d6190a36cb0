"""Exports for auditors: CSV (header first) or JSON Lines.

JSON Lines is exact: every value as recorded, and each line re-hashes to its
record's ``hash``. CSV is for spreadsheets, which run a cell that starts with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return as a formula (CSV or
formula injection: a user name such as ``=HYPERLINK(...)`` would run when the
auditor opens the file). Such a cell is written with a leading ``'``, which
spreadsheets show as text and drop from the value; so a CSV cell can differ
from the record by that one leading character, and re-hashing uses JSON Lines.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from scheduler.audit.errors import AuditQueryError
from scheduler.audit.records import FIELDS, AuditRecord, parse_time
from scheduler.audit.schema import open_ro, query_records

EXPORT_FORMATS = ("csv", "jsonl")
# What makes a spreadsheet read a cell as a formula (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    """A value as a CSV cell a spreadsheet shows as text, never runs."""
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def iter_export(records: list[AuditRecord], fmt: str) -> Iterator[str]:
    """The records as CSV (header first) or JSON Lines, one string per line."""
    if fmt not in EXPORT_FORMATS:
        raise AuditQueryError(f"unknown format {fmt!r}: one of {', '.join(EXPORT_FORMATS)}")
    if fmt == "jsonl":
        for r in records:
            yield json.dumps(r.as_dict(), sort_keys=True) + "\n"
        return

    class _Line:
        value = ""

        def write(self, s: str) -> int:
            self.value = s
            return len(s)

    line = _Line()
    w = csv.writer(line, lineterminator="\n")
    w.writerow(FIELDS)
    yield line.value
    for r in records:
        d = r.as_dict()
        d["params"] = r.params
        w.writerow([csv_cell(d[f]) for f in FIELDS])
        yield line.value


def export(
    db: Path,
    *,
    out: TextIO,
    fmt: str = "jsonl",
    since: str | float | None = None,
    until: str | float | None = None,
    user: str | None = None,
    operation: str | None = None,
) -> int:
    """Write the matching records to ``out``; how many were written."""
    if fmt not in EXPORT_FORMATS:
        raise AuditQueryError(f"unknown format {fmt!r}: one of {', '.join(EXPORT_FORMATS)}")
    with open_ro(db) as d:
        records = query_records(
            d, since=parse_time(since), until=parse_time(until), user=user, operation=operation
        )
    for line in iter_export(records, fmt):
        out.write(line)
    return len(records)
