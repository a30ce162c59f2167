"""In a CI log (stdout not a terminal) the summary's lines stay whole: nothing greppable is split."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.commands.test_environment import ENV, assert_clean
from tests.drivers.conftest import relay_cmd

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = """
name: ci
clients: 6
senders: 2
rate: 100/s
size: 64B
warmup: 0s
duration: 1s
drain: 0.5s
thresholds: ['latency.p99 < 1s', 'delivery.lost == 0']
"""


@pytest.fixture(scope="module")
def results_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    base = tmp_path_factory.mktemp("ci")
    scenario = base / "ci.yaml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    # a long path, as CI workspaces have: it must not be cut in two
    out = base / ("a-rather-long-directory-name-for-a-ci-workspace-" * 2) / "results-of-the-nightly-run.jsonl"
    env = {k: v for k, v in ENV.items() if k != "COLUMNS"}  # warnings shown, as in test_environment.py
    proc = subprocess.run(
        [sys.executable, "-m", "wsbench.cli", "run", str(scenario), "--server-cmd", relay_cmd(), "-o", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=90, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def _assert_whole(text: str, out: Path) -> None:
    lines = text.splitlines()
    assert "…" not in text  # no number squeezed out of a table cell
    assert any(re.search(r"^deliveries expected [\d,]+ +delivered [\d,]+ +lost 0 .*reordered \d+$", ln) for ln in lines)
    assert any(re.search(r"^rates target .*connect ok \d+ errors \d+$", ln) for ln in lines)
    assert any(ln.startswith("generator CPU") and " fds " in ln for ln in lines)
    assert f"results file: {out}" in lines
    assert any("from intended send" in ln and re.search(r"[\d,]+ *│$", ln) for ln in lines)
    for ln in lines:  # a line never starts with what belongs to the one before
        assert not re.match(r"^(\d|ms\b|s\b|MiB\b|reordered|errors|lost)", ln), ln


def test_run_output_in_a_ci_log_keeps_every_line_whole(results_file) -> None:
    out, proc = results_file
    _assert_whole(proc.stdout, out)
    assert_clean(proc.stderr)  # and a completed run leaves no library noise (test_environment.py)
    assert f"-> {out}" in proc.stderr  # the "running ... -> FILE" line too


@pytest.mark.parametrize("columns", ["", "80", "60"])
def test_report_in_a_ci_log_keeps_every_line_whole(results_file, columns: str) -> None:
    out, _ = results_file
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns:
        env["COLUMNS"] = columns
    proc = subprocess.run(
        [sys.executable, "-m", "wsbench.cli", "report", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    _assert_whole(proc.stdout, out)
    if columns:  # COLUMNS is honoured where the layout allows: tables no wider than they need
        widest_table = max(len(ln) for ln in proc.stdout.splitlines() if ln.startswith(("┏", "│", "└")))
        assert widest_table <= max(int(columns), 80)
