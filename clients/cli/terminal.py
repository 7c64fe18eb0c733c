"""All CLI output goes through one Terminal; every error exit goes through ``abort``."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from rich.console import Console
from rich.table import Table

# Control characters (other than newline and tab) and the Unicode bidirectional overrides: in
# text from other people they could move the cursor, recolour or rewrite what is on screen, or
# make a banner read backwards. They are shown as escapes instead.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with every character that could act on the terminal written as an escape."""
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class Terminal:
    def __init__(self) -> None:
        # markup=False and emoji=False: names, banners and message text come from other people
        # and must never be interpreted as rich markup or :emoji: codes.
        self.out = Console(markup=False, emoji=False, highlight=False, soft_wrap=True)
        self.err = Console(markup=False, emoji=False, highlight=False, soft_wrap=True, stderr=True)

    def say(self, text: str) -> None:
        self.out.print(printable(text))

    def table(self, *columns: str, rows: Sequence[Sequence[str]]) -> None:
        # Fold rather than elide: ids in a table must survive a narrow screen whole.
        table = Table()
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*(printable(cell) for cell in row))
        self.out.print(table)

    def abort(self, message: str, code: int = 1) -> NoReturn:
        self.err.print(f"Error: {printable(message)}")
        sys.exit(code)


terminal = Terminal()


def abort(message: str, code: int = 1) -> NoReturn:
    terminal.abort(message, code)
