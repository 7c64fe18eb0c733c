"""All CLI output goes through one Terminal; every error exit goes through ``abort``."""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

from rich.console import Console
from rich.table import Table

# Control characters (other than newline and tab) and the Unicode bidirectional overrides: in
# text from other people they could move the cursor, recolour or rewrite what is on screen, or
# make a banner read backwards. They are shown as escapes instead.
# A column of a listing: its heading, and how it shows a record.
Column = tuple[str, Callable[[Mapping[str, Any]], str]]

_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with every character that could act on the terminal written as an escape."""
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


# What a spreadsheet reads as the start of a formula (OWASP, "CSV injection"): a cell that an
# auditor opens in one must never run what someone put in a name, a reason or a label.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(text: str) -> str:
    """``text`` for a CSV cell: printable (``printable``), and, when it begins as a formula
    would, after an apostrophe, which spreadsheets show as text and do not evaluate."""
    text = printable(text)
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_text(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The CSV the CLI writes: a heading row, then ``rows``, each cell through ``csv_cell``;
    quoted as Python's csv module does by default (a comma, a quote or a line end)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([csv_cell(cell) for cell in row] for row in rows)
    return buffer.getvalue()


class Terminal:
    def __init__(self) -> None:
        # markup=False and emoji=False: names, banners and message text come from other people
        # and must never be interpreted as rich markup or :emoji: codes.
        self.out = Console(markup=False, emoji=False, highlight=False, soft_wrap=True)
        self.err = Console(markup=False, emoji=False, highlight=False, soft_wrap=True, stderr=True)

    def say(self, text: str) -> None:
        self.out.print(printable(text))

    def note(self, text: str) -> None:
        """A remark beside the output (standard error), so that piped output stays clean."""
        self.err.print(printable(text))

    def table(self, *columns: str, rows: Sequence[Sequence[str]]) -> None:
        # Fold rather than elide: ids in a table must survive a narrow screen whole.
        table = Table()
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*(printable(cell) for cell in row))
        if self.out.is_terminal:
            self.out.print(table)
            return
        # Piped: no screen to fit, so every cell keeps its one line whole and a script can cut
        # an id from it.
        wide = Console(
            file=self.out.file,
            width=1 << 16,
            markup=False,
            emoji=False,
            highlight=False,
            color_system=None,
        )
        wide.print(table)

    def json(self, value: Any) -> None:
        # ensure_ascii: every character from others that could act on a terminal is escaped.
        self.out.file.write(json.dumps(value, indent=2, ensure_ascii=True) + "\n")
        self.out.file.flush()

    def csv(self, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        self.out.file.write(csv_text(columns, rows))
        self.out.file.flush()

    def listing(
        self,
        fmt: str,
        records: Sequence[Mapping[str, Any]],
        columns: Sequence[Column],
    ) -> None:
        """A list in one of FORMATS: ``records`` whole as JSON (every field and id, for
        scripts); a table or CSV of ``columns``, each a heading and how to show a record."""
        if fmt == "json":
            self.json(list(records))
            return
        headings = [heading for heading, _ in columns]
        rows = [[cell(record) for _, cell in columns] for record in records]
        if fmt == "csv":
            self.csv(headings, rows)
        else:
            self.table(*headings, rows=rows)

    def abort(self, message: str, code: int = 1) -> NoReturn:
        self.err.print(f"Error: {printable(message)}")
        sys.exit(code)


# How a list can be printed: ``--format`` (clients/cli/_common.py format_option).
FORMATS = ("table", "json", "csv")

terminal = Terminal()


def abort(message: str, code: int = 1) -> NoReturn:
    terminal.abort(message, code)
