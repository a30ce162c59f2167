"""The ``rich`` consoles wsbench prints with, and how output stays whole in CI logs and pipes.

On a terminal rich fits everything to its width. Anywhere else (a CI log, ``| tee``, a file) rich would
fall back to 80 columns and wrap summary lines in the middle (``reordered`` on one line, its ``0`` on
the next; a results path split in two), which breaks every ``grep``. So when the output is not a
terminal: the width is ``COLUMNS`` when set, else :data:`NON_TERMINAL_WIDTH`; text lines are never
wrapped (rich's soft wrap); and tables are printed at their natural width even when that is wider
(:func:`print_table`), so that no number is squeezed into ``…``.
"""

from __future__ import annotations

import os
from typing import Any

from rich.console import Console, RenderableType
from rich.measure import Measurement

#: columns for output that is not a terminal and has no COLUMNS: room for a summary line, a table
NON_TERMINAL_WIDTH = 200


def make_console(*, stderr: bool = False, **kwargs: Any) -> Console:
    """A console for stdout (or stderr) that keeps lines whole when the output is not a terminal."""
    console = Console(stderr=stderr, **kwargs)
    if not console.is_terminal and "width" not in kwargs:
        if not os.environ.get("COLUMNS", "").strip().isdigit():
            console.width = NON_TERMINAL_WIDTH
        console.soft_wrap = True
    return console


def print_table(console: Console, table: RenderableType) -> None:
    """Print ``table``; when the output is not a terminal, at its natural width if wider than the console."""
    if console.is_terminal:
        console.print(table)
        return
    need = Measurement.get(console, console.options.update(max_width=100_000), table).maximum
    if need <= console.width:
        console.print(table)
        return
    saved = console.width
    console.width = need
    try:
        console.print(table)
    finally:
        console.width = saved
