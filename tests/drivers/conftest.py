"""Helpers for running real load tests in-process: the CLI's ``run`` against a real server."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest

from wsbench.cli import main
from wsbench.core.results import Results, read_results
from wsbench.core.summary import summarize

RELAY = Path(__file__).resolve().parents[1] / "fixtures" / "relay.py"


def relay_cmd(*faults: str) -> str:
    return shlex.join([sys.executable, str(RELAY), *faults])


class Run:
    def __init__(self, code: int, path: Path) -> None:
        self.code = code
        self.path = path
        self.results: Results = read_results(path)
        self.summary: dict[str, Any] = summarize(self.results)


@pytest.fixture
def run_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """``run_scenario(yaml_text, "--server", "aiohttp", ...)`` -> :class:`Run` (exit code, file, summary)."""
    counter = [0]

    def run(text: str, *args: str) -> Run:
        counter[0] += 1
        scenario = tmp_path / f"s{counter[0]}.yaml"
        scenario.write_text(text, encoding="utf-8")
        out = tmp_path / f"r{counter[0]}.jsonl"
        code = main(["run", str(scenario), "-q", "--json", "-o", str(out), *args])
        captured = capsys.readouterr()
        if out.exists():
            printed = captured.out.strip()
            if printed:
                assert json.loads(printed)["file"] == str(out)
        return Run(code, out)

    return run
