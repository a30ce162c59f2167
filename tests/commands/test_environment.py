"""``wsbench run`` on a real user's machine: a full disk, an unwritable ``-o``, and no library noise.

Every run here is the real command in a real process (what it prints at exit is what a user sees).
A full disk is a real 24 KiB tmpfs, mounted in a private mount namespace (``unshare -m``: it vanishes
with the process, nothing to clean up), which needs root; the same failure is also injected into the
results file's writes (tests/fixtures/inject.py) so that it is checked everywhere.
"""

from __future__ import annotations

import json
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.drivers.conftest import relay_cmd
from wsbench.core.results import read_results
from wsbench.core.summary import summarize

ROOT = Path(__file__).resolve().parents[2]
INJECT = ROOT / "tests" / "fixtures" / "inject.py"
SCENARIO = """
name: env
clients: 10
senders: 2
rate: 200/s
size: 64B
connect:
  rate: 1000/s
warmup: 0s
duration: {duration}s
drain: 0.5s
interval: 0.25s
"""
#: what no exit path may print: library warnings at teardown, tracebacks, "internal error"
NOISE = (
    "Unclosed",
    "Task was destroyed",
    "Exception ignored",
    "ResourceWarning",
    "Traceback",
    "internal error",
    "never awaited",
)
ENV = {**os.environ, "PYTHONWARNINGS": "default", "COLUMNS": "300"}


def assert_clean(stderr: str) -> None:
    for noise in NOISE:
        assert noise not in stderr, f"{noise!r} on stderr:\n{stderr[-3000:]}"


def scenario(tmp_path: Path, duration: float = 2) -> Path:
    path = tmp_path / "env.yaml"
    path.write_text(SCENARIO.format(duration=duration), encoding="utf-8")
    return path


def wsbench(*argv: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wsbench.cli", *argv], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=ENV
    )


def injected(fault: str, count: int, *argv: str) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return subprocess.run(
        [sys.executable, str(INJECT), fault, str(count), "--", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        env={**ENV, "PYTHONPATH": path},  # this checkout's wsbench, whatever is installed
    )


def _assert_full_disk_report(
    proc: subprocess.CompletedProcess[str], out: Path, kept: Path, error: str = "No space left on device"
) -> None:
    """Exit 3; the summary of the whole run from memory; the file, the error and how far it got; and
    the file still reports, as a run cut short."""
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert_clean(proc.stderr)
    summary = json.loads(proc.stdout)
    assert summary["status"] == "broken" and error in summary["reason"]
    # the footer's accounting, from memory: losses are known (the file alone cannot tell them)
    assert summary["delivery"]["delivered"] > 0 and summary["delivery"]["lost"] is not None
    said = " ".join(proc.stderr.split())
    assert f"cannot write the results file {out}: {error}" in said
    assert "it holds the first" in said and "records" in said and "wsbench report" in said
    held = int(said.split("it holds the first ", 1)[1].split()[0])
    results = read_results(kept)
    assert results.truncated and len(results.intervals) + len(results.events) + 1 == held
    assert any("no footer" in w for w in results.warnings)
    from_file = summarize(results)
    assert from_file["status"] == "truncated" and from_file["delivery"]["lost"] is None  # losses need the footer
    assert from_file["delivery"]["delivered"] <= summary["delivery"]["delivered"]
    assert from_file["measured_s"] <= summary["measured_s"]
    report = wsbench("report", str(kept))
    assert report.returncode == 0, report.stderr
    assert "no footer" in " ".join((report.stdout + report.stderr).split())


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="mounting a tmpfs needs root")
def test_a_full_tmpfs_breaks_the_run_cleanly_and_loses_nothing(tmp_path: Path) -> None:
    mnt, kept = tmp_path / "small", tmp_path / "kept.jsonl"
    mnt.mkdir()
    out = mnt / "r.jsonl"
    run = [sys.executable, "-m", "wsbench.cli", "run", str(scenario(tmp_path, 4)), "--server-cmd", relay_cmd()]
    run += ["-q", "--json", "-o", str(out)]
    script = (
        f"mount -t tmpfs -o size=24k wsbench-full {shlex.quote(str(mnt))} || exit 99; "
        f"{shlex.join(run)}; rc=$?; cp {shlex.quote(str(out))} {shlex.quote(str(kept))}; exit $rc"
    )
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=90, env=ENV
    )
    assert proc.returncode != 99, f"could not mount a tmpfs as root: {proc.stderr}"
    _assert_full_disk_report(proc, out, kept)
    assert kept.stat().st_size <= 24 * 1024


def test_an_injected_write_error_breaks_the_run_cleanly_and_loses_nothing(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    proc = injected(
        "enospc", 8, "run", str(scenario(tmp_path)), "--server-cmd", relay_cmd(), "-q", "--json", "-o", str(out)
    )
    _assert_full_disk_report(proc, out, out)
    assert out.read_bytes().endswith(b"\n")  # cut back to the last whole record


def limit_file_size() -> None:
    """A child's file-size quota of 12 KiB: writes past it fail with EFBIG (a full disk, without root)."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (12 * 1024, resource.RLIM_INFINITY))


def test_a_file_size_limit_breaks_the_run_cleanly_and_loses_nothing(tmp_path: Path) -> None:
    """A quota that works everywhere, without root: RLIMIT_FSIZE (writes past it fail with EFBIG)."""
    out = tmp_path / "r.jsonl"

    argv = [sys.executable, "-m", "wsbench.cli", "run", str(scenario(tmp_path, 2)), "--server-cmd", relay_cmd()]
    proc = subprocess.run(
        [*argv, "-q", "--json", "-o", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        env=ENV,
        preexec_fn=limit_file_size,
    )
    _assert_full_disk_report(proc, out, out, error="File too large")


def test_the_summary_is_printed_from_memory_when_the_disk_fills_at_the_header(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    proc = injected("enospc", 0, "run", str(scenario(tmp_path, 1)), "--server-cmd", relay_cmd(), "-o", str(out))
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert_clean(proc.stderr)
    assert "deliveries expected" in proc.stdout and "broken" in proc.stdout
    assert "it holds the first 0 records" in " ".join(proc.stderr.split())
    assert out.read_bytes() == b""


@pytest.mark.parametrize("where", ["under-a-file", "a-directory"])
def test_an_unwritable_output_is_refused_before_anything_starts(tmp_path: Path, where: str) -> None:
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "r.jsonl" if where == "under-a-file" else tmp_path
    started = time.monotonic()
    proc = wsbench("run", str(scenario(tmp_path)), "--server", "aiohttp", "-o", str(out))
    assert proc.returncode == 2, proc.stderr
    assert_clean(proc.stderr)
    said = " ".join(proc.stderr.split())
    assert f"cannot write the results file {out}" in said
    assert "running" not in said  # refused before the server started and anything connected
    assert time.monotonic() - started < 20


def test_running_out_of_descriptors_mid_run_is_an_error_of_the_system_not_of_wsbench(tmp_path: Path) -> None:
    """The teardown of the issue's descriptor crash: the summary is printed, the session is closed."""
    out = tmp_path / "r.jsonl"
    proc = injected("emfile", 4, "run", str(scenario(tmp_path)), "--server-cmd", relay_cmd(), "-o", str(out))
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert_clean(proc.stderr)
    said = " ".join(proc.stderr.split())
    assert "Too many open files" in said and "EMFILE" in said and "ulimit -n" in said
    assert "deliveries expected" in proc.stdout
    assert read_results(out).footer["status"] == "broken"


@pytest.mark.parametrize("path", ["unreachable", "server-died"])  # a completed run: test_ci_output.py
def test_no_library_noise_on_exit(tmp_path: Path, path: str) -> None:
    args = {
        "unreachable": ["--url", "http://127.0.0.1:9"],
        "server-died": ["--server-cmd", relay_cmd("--exit-after", "0.5")],
    }[path]
    proc = wsbench("run", str(scenario(tmp_path, 1.5)), *args, "-o", str(tmp_path / "r.jsonl"))
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert_clean(proc.stderr)


def test_no_library_noise_after_ctrl_c(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    argv = [sys.executable, "-m", "wsbench.cli", "run", str(scenario(tmp_path, 20)), "-q", "-o", str(out)]
    proc = subprocess.Popen(
        [*argv, "--server-cmd", relay_cmd()],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and '"phase":"measure"' not in (
            out.read_text(encoding="utf-8") if out.exists() else ""
        ):
            time.sleep(0.1)
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert_clean(err)


def test_conform_on_a_full_disk_shows_every_verdict_and_exits_3(tmp_path: Path) -> None:
    out = tmp_path / "c.jsonl"
    proc = injected("enospc", 4, "conform", "--only", "login", "-o", str(out))
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert_clean(proc.stderr)
    assert proc.stdout.count("pass") >= 10  # every login case, from memory
    said = " ".join(proc.stderr.split())
    assert f"cannot write the results file {out}: No space left on device" in said
    assert len(read_results(out).cases) == 3  # the header and the first three cases made it


def test_locust_refuses_an_unwritable_output_before_anything_starts(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "l.jsonl"
    proc = wsbench("locust", str(scenario(tmp_path)), "--headless", "--server", "aiohttp", "-o", str(out))
    assert proc.returncode == 2, proc.stderr
    assert f"cannot write the results file {out}" in " ".join(proc.stderr.split())
    assert "Locust pid" not in proc.stderr


@pytest.mark.slow
def test_locust_on_a_full_disk_prints_the_whole_run_from_memory(tmp_path: Path) -> None:
    """The Locust master keeps what it could not write and hands the whole run's summary to
    `wsbench locust` (a file-size limit every process of the run inherits: EFBIG in the master)."""
    out = tmp_path / "l.jsonl"

    argv = [sys.executable, "-m", "wsbench.cli", "locust", str(scenario(tmp_path, 2)), "--headless"]
    proc = subprocess.run(
        [*argv, "--server-cmd", relay_cmd(), "-o", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
        preexec_fn=limit_file_size,
    )
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert_clean(proc.stderr)
    said = " ".join(proc.stderr.split())
    assert f"cannot write the results file {out}: File too large; it holds the first" in said
    assert "the summary above is the whole run, from memory" in said
    printed = " ".join(proc.stdout.split())
    # the whole run: 2 s at 200/s to 9 readers each, and the losses, which only the footer (in memory) knows
    assert "broken" in printed and "deliveries expected 3,600 delivered 3,600 lost 0" in printed, printed[-3000:]
    from_file = summarize(read_results(out))
    assert from_file["status"] == "truncated" and from_file["delivery"]["lost"] is None
    assert from_file["delivery"]["delivered"] < 3600
