"""The open-file limit: every wsbench command raises it as far as it needs, or refuses before connecting.

Each test runs the real command in a child process whose limit is lowered first (``setrlimit`` in the
child, before exec), as on a desktop or CI runner that starts processes at 1,024 or less. The limits
are only ever lowered here, so the tests mean the same as root and as a user.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wsbench import fdlimit
from wsbench.errors import OpenFilesLimitError

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = """
name: fds
clients: {clients}
senders: 2
rate: 50/s
size: 64B
connect:
  rate: 2000/s
warmup: 0s
duration: 1s
drain: 0.5s
"""
HARD = resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def _limited(soft: int, hard: int):
    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return lower


def wsbench(
    *args: str, soft: int, hard: int, timeout: float = 120, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wsbench.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=_limited(soft, hard),
        env={**os.environ, "COLUMNS": "400"},
    )


def _scenario(tmp_path: Path, clients: int) -> Path:
    path = tmp_path / "fds.yaml"
    path.write_text(SCENARIO.format(clients=clients), encoding="utf-8")
    return path


def _assert_refusal(proc: subprocess.CompletedProcess[str], needed_at_least: int, allowed: int) -> None:
    assert proc.returncode == 2, proc.stderr[-3000:]
    err = " ".join(proc.stderr.split())
    assert "internal error" not in err and "Traceback" not in err and "Unclosed" not in err
    assert "too few open files allowed" in err
    needed = int(err.split(" needs ", 1)[1].split(" file descriptors", 1)[0].replace(",", ""))
    assert needed >= needed_at_least
    assert f"may open at most {allowed:,}" in err
    assert "prlimit --pid $$ --nofile=" in err and "ulimit -n" in err  # the command that fixes it


@pytest.mark.skipif(HARD != resource.RLIM_INFINITY and HARD < 1024, reason="needs a hard limit of 1,024")
def test_run_raises_the_soft_limit_to_what_300_clients_need(tmp_path: Path) -> None:
    """The issue's reproduction: soft limit 150, 300 clients against aiohttp. It used to die with
    ``internal error: OSError: [Errno 24] Too many open files`` and leak ``Unclosed client session``."""
    out = tmp_path / "r.jsonl"
    proc = wsbench(
        "run", str(_scenario(tmp_path, 300)), "--server", "aiohttp", "-q", "--json", "-o", str(out),
        soft=150, hard=1024,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Unclosed" not in proc.stderr and "Too many open files" not in proc.stderr
    summary = json.loads(proc.stdout)
    # every client connected and stayed (what the limit decides; losses depend on the machine's load)
    assert summary["connect"]["ok"] == 300 and summary["connect"]["errors"] == 0
    assert summary["status"] == "completed" and summary["delivery"]["delivered"] > 0


def test_run_refuses_before_connecting_when_the_hard_limit_is_too_low(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    started = time.monotonic()
    proc = wsbench("run", str(_scenario(tmp_path, 300)), "--server", "aiohttp", "-o", str(out), soft=150, hard=150)
    _assert_refusal(proc, needed_at_least=300, allowed=150)
    assert "--set clients=" in proc.stderr  # the other way out: how many clients fit
    assert not out.exists(), "refused before the results file, the server or any connection"
    assert time.monotonic() - started < 30


def test_run_against_a_url_counts_only_its_own_clients(tmp_path: Path) -> None:
    """With --url nothing is started: 300 clients need about 300 + margin, not twice that."""
    proc = wsbench(
        "run", str(_scenario(tmp_path, 300)), "--url", "http://127.0.0.1:9", "-o", str(tmp_path / "r.jsonl"),
        soft=64, hard=200,
    )  # fmt: skip
    _assert_refusal(proc, needed_at_least=300, allowed=200)
    needed = int(" ".join(proc.stderr.split()).split(" needs ", 1)[1].split(" ", 1)[0].replace(",", ""))
    assert needed < 600


def test_serve_refuses_its_default_10000_connections_under_a_4096_hard_limit() -> None:
    proc = wsbench("serve", "tornado", "--port", "0", soft=1024, hard=4096, timeout=30)
    _assert_refusal(proc, needed_at_least=10_000, allowed=4096)
    assert "--max-connections 10,000 (the default)" in " ".join(proc.stderr.split())
    assert "--max-connections 40" in proc.stderr  # a value that fits


@pytest.mark.parametrize("kind", ["tornado", "aiohttp"])
def test_serve_raises_the_soft_limit_for_its_max_connections(kind: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "wsbench.cli", "serve", kind, "--port", "0", "--max-connections", "500"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_limited(100, 1024),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:"), line + (proc.stderr.read() if proc.poll() else "")
        soft = [ln for ln in Path(f"/proc/{proc.pid}/limits").read_text().splitlines() if ln.startswith("Max open")]
        assert int(soft[0].split()[3]) == fdlimit.needed_for_server(500)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def test_conform_refuses_under_a_tiny_hard_limit_and_runs_when_it_can_raise(tmp_path: Path) -> None:
    proc = wsbench("conform", "--only", "login.ok", "-o", str(tmp_path / "c.jsonl"), soft=32, hard=32)
    _assert_refusal(proc, needed_at_least=60, allowed=32)
    assert not (tmp_path / "c.jsonl").exists()
    proc = wsbench("conform", "--only", "login", "-o", str(tmp_path / "c.jsonl"), soft=32, hard=1024)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_locust_refuses_before_starting_locust(tmp_path: Path) -> None:
    out = tmp_path / "l.jsonl"
    proc = wsbench(
        "locust", str(_scenario(tmp_path, 300)), "--headless", "--workers", "2", "--server", "aiohttp",
        "-o", str(out), soft=150, hard=150,
    )  # fmt: skip
    _assert_refusal(proc, needed_at_least=300, allowed=150)
    assert "Locust pid" not in proc.stderr and not out.exists()


def test_ensure_open_files_raises_only_the_soft_limit() -> None:
    """In a child, so that this test process keeps its limits."""
    code = (
        "import resource; from wsbench import fdlimit\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (100, 900))\n"
        "r = fdlimit.ensure_open_files(700, 'x')\n"
        "assert r.raised_from == 100 and resource.getrlimit(resource.RLIMIT_NOFILE) == (700, 900), r\n"
        "assert fdlimit.ensure_open_files(50, 'x').raised_from is None\n"
        "assert resource.getrlimit(resource.RLIMIT_NOFILE) == (700, 900)  # never lowered\n"
        "try:\n    fdlimit.ensure_open_files(901, 'a test', fewer='less')\nexcept Exception as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(OpenFilesLimitError.__name__)
    assert "a test needs 901 file descriptors" in proc.stdout and "or ask for less: less" in proc.stdout


def test_locust_started_directly_refuses_a_local_run_it_cannot_hold(tmp_path: Path) -> None:
    """``locust -f wsbench/locust/locustfile.py`` without ``wsbench locust``: the local runner checks too."""
    from wsbench.commands.locust import LOCUSTFILE

    proc = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", "http://127.0.0.1:9",
         "--wsbench-scenario", str(_scenario(tmp_path, 300)), "--wsbench-results", str(tmp_path / "l.jsonl")],
        cwd=ROOT, capture_output=True, text=True, timeout=60, preexec_fn=_limited(150, 150),
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    said = " ".join(proc.stderr.split())
    assert "too few open files allowed: a Locust run of 300 clients needs" in said
    assert not (tmp_path / "l.jsonl").exists()


def test_a_locust_worker_started_by_hand_refuses_a_share_it_cannot_hold(tmp_path: Path) -> None:
    """``locust --worker`` started by hand (no ``wsbench locust`` to check for it) raises its own limit
    for its share of the clients, or refuses: the master ends the run, broken, naming the worker, exit 2."""
    from wsbench.commands.locust import LOCUSTFILE
    from wsbench.core.results import read_results
    from wsbench.target import free_port

    port, out = free_port(), tmp_path / "l.jsonl"
    base = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE)]
    master = subprocess.Popen(
        [*base, "--master", "--headless", "--expect-workers", "1", "--master-bind-host", "127.0.0.1",
         "--master-bind-port", str(port), "--host", "http://127.0.0.1:9",
         "--wsbench-scenario", str(_scenario(tmp_path, 300)), "--wsbench-results", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    worker = subprocess.Popen(
        [*base, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_limited(150, 150),
    )  # fmt: skip
    try:
        _, master_err = master.communicate(timeout=60)
        _, worker_err = worker.communicate(timeout=30)
    finally:
        for proc in (master, worker):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    said = " ".join(worker_err.split())
    assert "too few open files allowed: this Locust worker's share of a run of 300 clients over 1 worker" in said
    assert "may open at most 150" in said and "prlimit --pid $$ --nofile=" in said
    assert master.returncode == 2, master_err[-3000:]
    assert "worker-0 refused the run: too few open files allowed" in " ".join(master_err.split())
    footer = read_results(out).footer
    assert footer is not None and footer["status"] == "broken" and footer["exit_code"] == 2
    assert footer["reason"].startswith("worker-0 refused the run: too few open files allowed")
