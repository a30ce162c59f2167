from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from tests.report.golden import assert_golden
from wsbench.core.results import read_results
from wsbench.report.compare import compare_runs, load_runs
from wsbench.report.compare_terminal import format_ratio, format_value, render_comparison
from wsbench.report.compare_thresholds import RatioThreshold, evaluate_thresholds


def _render(paths: list[Path], thresholds: list[str] = (), width: int = 120) -> Console:
    comparison = compare_runs(load_runs([read_results(p) for p in paths]))
    verdicts = evaluate_thresholds(comparison, [RatioThreshold.parse(t) for t in thresholds])
    console = Console(record=True, width=width, color_system="truecolor", force_terminal=True)
    render_comparison(comparison, verdicts, console)
    return console


def test_golden_two_runs(tornado_file: Path, aiohttp_file: Path) -> None:
    console = _render([tornado_file, aiohttp_file], ["compare.p99 < 1.1x", "compare.loss <= 1x"])
    text = console.export_text(styles=False)
    # the temporary directory is in the warnings of neither run (both completed), so the text is stable
    assert_golden("compare_two_runs.txt", text)


def test_golden_three_runs_narrow(
    tornado_file: Path, aiohttp_file: Path, truncated_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(truncated_file.parent)  # relative paths: the warnings name the file the same way every time
    console = _render([Path(tornado_file.name), Path(aiohttp_file.name), Path(truncated_file.name)], width=100)
    text = console.export_text(styles=False)
    assert_golden("compare_three_runs.txt", text)


def test_colours_mark_better_and_worse(tornado_file: Path, aiohttp_file: Path) -> None:
    console = _render([tornado_file, aiohttp_file], ["compare.p50 < 0.5x"])
    styled = console.export_text(styles=True)
    green, red = "\x1b[32m", "\x1b[31m"
    p50_line = next(line for line in styled.splitlines() if "latency p50" in line)
    assert green + "0.80x" in p50_line  # aiohttp's median is better: green
    loss_line = next(line for line in styled.splitlines() if "loss" in line)
    assert red + "∞" in loss_line  # aiohttp lost deliveries, tornado none: red
    failed_line = next(line for line in styled.splitlines() if "compare.p50 < 0.5x" in line)
    assert "FAILED" in failed_line and "\x1b[1;31m" in failed_line


def test_formatting() -> None:
    assert format_ratio(None) == "-"
    assert format_ratio(float("inf")) == "∞"
    assert format_ratio(0.8043) == "0.80x"
    assert format_ratio(0.0571) == "0.057x"
    assert format_ratio(1234.0) == "1,234x"
    assert format_value("throughput", 3797.0) == "3,797"
    assert format_value("loss", 0.0) == "0"
    assert format_value("loss", 0.0789) == "0.079%"
    assert format_value("p50", 1.998) == "2.00"
    assert format_value("p99_9", 169.98) == "170"
    assert format_value("p50", None) == "-"
