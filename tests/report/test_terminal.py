"""Golden output of the rich terminal report (``wsbench report FILE``) at a fixed width.

After a deliberate change to ``wsbench/report/terminal.py``, rewrite the golden files with
``WSBENCH_UPDATE_GOLDEN=1 pytest tests/report/test_terminal.py`` and review the diff.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from tests.report.golden import assert_golden
from wsbench.core.results import read_results
from wsbench.core.summary import summarize
from wsbench.report.terminal import render


def _text(path: Path, width: int) -> str:
    console = Console(record=True, width=width, color_system=None, force_terminal=False)
    render(summarize(read_results(path)), console)
    return console.export_text(styles=False)


def test_golden_completed_run(tornado_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tornado_file.parent)  # the report names the file: keep it relative
    assert_golden("terminal_completed.txt", _text(Path(tornado_file.name), 100))


def test_golden_truncated_run(truncated_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(truncated_file.parent)
    text = _text(Path(truncated_file.name), 100)
    assert "truncated" in text
    assert_golden("terminal_truncated.txt", text)
