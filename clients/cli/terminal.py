"""All CLI output goes through one Terminal; every error exit goes through ``abort``."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NoReturn

from rich.console import Console
from rich.table import Table


class Terminal:
    def __init__(self) -> None:
        # markup=False: names, banners and message text come from other people and must never
        # be interpreted as rich markup.
        self.out = Console(markup=False, highlight=False, soft_wrap=True)
        self.err = Console(markup=False, highlight=False, soft_wrap=True, stderr=True)

    def say(self, text: str) -> None:
        self.out.print(text)

    def table(self, *columns: str, rows: Sequence[Sequence[str]]) -> None:
        table = Table(*columns)
        for row in rows:
            table.add_row(*row)
        self.out.print(table)

    def abort(self, message: str, code: int = 1) -> NoReturn:
        self.err.print(f"Error: {message}")
        sys.exit(code)


terminal = Terminal()


def abort(message: str, code: int = 1) -> NoReturn:
    terminal.abort(message, code)
