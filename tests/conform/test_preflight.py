"""``wsbench conform`` at something that is not a SPEC.md chat server: told once, up front, exit 3."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conform.test_command import conform
from wsbench.core.results import read_results


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[str]:
    """``python3 -m http.server`` on an ephemeral loopback port (a static file server, no chat)."""
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", "0"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "Serving HTTP on 127.0.0.1 port 40123 (http://127.0.0.1:40123/) ..."
        port = int(line.split(" port ", 1)[1].split()[0])
        yield f"http://127.0.0.1:{port}"
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def test_a_file_server_is_reported_once_as_not_speaking_spec(file_server: str, tmp_path: Path) -> None:
    results = tmp_path / "c.jsonl"
    proc = conform("--url", file_server, "-o", str(results), "--junit", str(tmp_path / "j.xml"), timeout=60)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 3, out[-3000:]
    said = " ".join(out.split())
    assert said.count("does not speak SPEC.md") == 1, said
    # what was tried and what came back
    assert "POST /login" in said and "answered 501" in said and "/chat answered 404" in said
    assert "FAIL" not in out and "Traceback" not in out
    res = read_results(results)
    assert res.cases == [] and res.footer is not None and res.footer["status"] == "broken"
    assert "does not speak SPEC.md" in res.footer["reason"]
