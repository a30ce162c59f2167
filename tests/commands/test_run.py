"""``wsbench run``: exit codes, targets, a server that dies, Ctrl-C, default paths, every shipped scenario."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.drivers.conftest import relay_cmd
from wsbench.cli import main
from wsbench.core.results import read_results
from wsbench.core.summary import summarize
from wsbench.target import start_server

ROOT = Path(__file__).resolve().parents[2]
SHORT = """
name: short
clients: 4
senders: 1
rate: 100/s
size: 64B
duration: {duration}s
drain: 0.5s
"""


def test_threshold_failure_exits_1_and_is_in_the_footer(run_scenario) -> None:
    text = SHORT.format(duration=1) + "thresholds: ['latency.p99 < 1us', 'delivery.lost == 0']\n"
    run = run_scenario(text, "--server-cmd", relay_cmd())
    assert run.code == 1
    footer = run.results.footer
    assert footer is not None and footer["status"] == "completed" and footer["exit_code"] == 1
    assert [v["passed"] for v in footer["thresholds"]] == [False, True]


def test_server_dying_mid_run_exits_3_and_keeps_what_was_measured(run_scenario, capsys) -> None:
    run = run_scenario(SHORT.format(duration=4), "--server-cmd", relay_cmd("--exit-after", "1.5"))
    assert run.code == 3
    footer = run.results.footer
    assert footer is not None and footer["status"] == "broken"
    assert "exited with code 1" in footer["reason"]
    assert run.summary["delivery"]["delivered"] > 100  # what it measured before the server died
    assert run.summary["status"] == "broken"
    # and the report still reads it
    assert main(["report", str(run.path)]) == 0
    assert main(["report", str(run.path), "--check"]) == 3


def test_unreachable_url_exits_3_with_a_clear_message(tmp_path: Path, capsys) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SHORT.format(duration=1), encoding="utf-8")
    out = tmp_path / "r.jsonl"
    code = main(["run", str(scenario), "-q", "--url", "http://127.0.0.1:9", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 3
    assert "could not connect" in err and "127.0.0.1:9" in err and "Traceback" not in err
    results = read_results(out)
    assert results.footer is not None and results.footer["status"] == "broken"


def test_url_target(run_scenario) -> None:
    server = start_server([sys.executable, str(ROOT / "tests/fixtures/relay.py"), "--port", "0"], label="relay")
    try:
        run = run_scenario(SHORT.format(duration=1), "--url", server.url)
    finally:
        server.stop()
    assert run.code == 0
    assert run.results.header["target"]["mode"] == "url"
    assert run.summary["delivery"]["lost"] == 0 and run.summary["delivery"]["delivered"] == 300


@pytest.mark.parametrize(
    ("text", "args", "message"),
    [
        ("clients: 3\nrate: fast\n", [], "s.yaml:2: rate: expected a rate"),
        ("clients: 3\n", ["--set", "clients=abc"], "--set clients=abc: clients:"),
        ("clients: 3\n", ["--server", "nginx"], "unknown server 'nginx'"),
        ("clients: 3\n", ["--cpu", "99"], "--cpu"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, capsys, text: str, args: list[str], message: str) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(text, encoding="utf-8")
    code = main(["run", str(scenario), "-q", *args])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2
    assert message in err and "Traceback" not in err


def test_missing_scenario_exits_2(capsys) -> None:
    assert main(["run", "/nonexistent/x.yaml"]) == 2
    assert "no such scenario file" in capsys.readouterr().err


def test_default_output_is_under_reports(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    Path("s.yaml").write_text(SHORT.format(duration=0.5), encoding="utf-8")
    assert main(["run", "s.yaml", "-q", "--server-cmd", relay_cmd()]) == 0
    files = list(Path("reports").glob("short-*.jsonl"))
    assert len(files) == 1
    out = capsys.readouterr().out
    assert "results file:" in out and "short" in out


def test_ctrl_c_writes_an_interrupted_footer(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SHORT.format(duration=30), encoding="utf-8")
    out = tmp_path / "r.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "wsbench.cli", "run", str(scenario), "-q", "-o", str(out), "--server-cmd", relay_cmd()],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if out.exists() and '"phase":"measure"' in out.read_text(encoding="utf-8"):
                break
            time.sleep(0.1)
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    footer = read_results(out).footer
    assert footer is not None and footer["status"] == "interrupted"
    assert summarize(read_results(out))["delivery"]["delivered"] > 0


def _shrunk(path: Path) -> list[str]:
    """--set overrides that make a shipped scenario short enough for a test."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    sets = ["clients=6", "connect.rate=200/s", "drain=0.5s", "interval=0.5s"]
    senders = data.get("senders", 1)
    if senders != "all":
        sets.append("senders=2")
    if data.get("stalled_clients"):
        sets.append("stalled_clients=1")
    warm = data.get("warmup")
    if isinstance(warm, dict):
        sets.append("warmup.duration=0.3s")
    elif warm:
        sets.append("warmup=0.3s")
    if "steps" in data:
        sets += ["steps.duration=0.5s", "steps.stop=500/s"]
    elif "stages" in data:
        sets += [f"stages.{i}.duration=0.5s" for i in range(len(data["stages"]))]
    else:
        sets.append("duration=1s")
    if isinstance(data.get("rate"), str) and float(data["rate"].split("/")[0]) > 400:
        sets.append("rate=400/s")
    return [arg for s in sets for arg in ("--set", s)]


@pytest.mark.parametrize("path", sorted((ROOT / "scenarios").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_scenario_runs(path: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "r.jsonl"
    code = main(["run", str(path), "-q", "--json", "--server", "aiohttp", "-o", str(out), *_shrunk(path)])
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"] == "completed", summary
    assert code in (0, 1)
    assert summary["messages"]["sent"] > 0 and summary["delivery"]["delivered"] > 0
