"""``wsbench report``: from the file alone, also when it was cut short; ``--json`` keys; ``--check``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.drivers.conftest import relay_cmd
from wsbench.cli import main

SCENARIO = """
name: rep
clients: 5
senders: 2
rate: 200/s
size: 64B
warmup: 0.5s
duration: 2s
drain: 0.5s
thresholds: ['latency.p99 < 1s', 'delivery.lost == 0']
"""

DOCUMENTED_TOP_LEVEL = {
    "summary_version",
    "file",
    "kind",
    "status",
    "reason",
    "warnings",
    "scenario",
    "target",
    "driver",
    "created",
    "duration_s",
    "measured_s",
    "connect_handshake",
    "churn",
    "latency",
    "latency_uncorrected",
    "fanout",
    "latency_socket",
    "generator_delay",
    "latency_probes",
    "latency_socket_uncorrected",
    "probes",
    "connect",
    "delivery",
    "messages",
    "rate",
    "closes",
    "errors",
    "generator",
    "server",
    "stages",
    "capacity",
    "thresholds",
    "passed",
    "exit_code",
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("report")
    (d / "s.yaml").write_text(SCENARIO, encoding="utf-8")
    out = d / "r.jsonl"
    assert main(["run", str(d / "s.yaml"), "-q", "-o", str(out), "--server-cmd", relay_cmd()]) == 0
    return out


def report_json(path: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(["report", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_summary_has_the_documented_keys(finished: Path, capsys) -> None:
    s = report_json(finished, capsys)
    assert set(s) == DOCUMENTED_TOP_LEVEL
    for key in ("p50", "p90", "p99", "p99_9", "max", "count"):
        assert key in s["latency"] and key in s["latency_uncorrected"] and key in s["fanout"]
    assert {"expected", "delivered", "lost", "duplicated", "reordered", "loss_ratio"} <= set(s["delivery"])
    assert {"sent", "delivered", "target"} <= set(s["rate"])
    assert {"cpu_s", "cpu_us_per_delivery", "bottleneck"} <= set(s["generator"])
    assert s["status"] == "completed" and s["passed"] and s["exit_code"] == 0
    assert s["delivery"]["lost"] == 0
    docs = (Path(__file__).resolve().parents[2] / "docs" / "summary-json.md").read_text(encoding="utf-8")
    for key in DOCUMENTED_TOP_LEVEL:
        assert f"`{key}`" in docs, key


def test_terminal_report(finished: Path, capsys) -> None:
    assert main(["report", str(finished)]) == 0
    out = capsys.readouterr().out
    assert "latency (ms)" in out and "from intended send" in out and "pass" in out
    assert str(finished) in out.replace("\n", "")


def test_truncated_file_still_reports_with_a_warning(finished: Path, tmp_path: Path, capsys) -> None:
    lines = finished.read_text(encoding="utf-8").splitlines(keepends=True)
    assert json.loads(lines[-1])["type"] == "footer"
    cut = tmp_path / "cut.jsonl"
    kept = lines[:-3]
    cut.write_text("".join(kept) + lines[-3][: len(lines[-3]) // 2], encoding="utf-8")
    s = report_json(cut, capsys)
    assert s["status"] == "truncated"
    assert any("no footer" in w for w in s["warnings"])
    assert any("cut short" in w for w in s["warnings"])
    assert s["delivery"]["lost"] is None and s["delivery"]["delivered"] > 0
    assert s["latency"]["count"] > 0
    assert main(["report", str(cut)]) == 0
    assert "no footer" in capsys.readouterr().out
    assert main(["report", str(cut), "--check"]) == 3


def test_not_a_results_file_exits_2(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "x.jsonl"
    bad.write_text("hello\n", encoding="utf-8")
    assert main(["report", str(bad)]) == 2
    assert "not a wsbench results file" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing.jsonl")]) == 2
