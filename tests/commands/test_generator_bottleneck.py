"""A generator too slow for its load is called the bottleneck, from a real run (wsbench.core.selfcheck).

The generator is made slow by spending CPU per received frame on its event loop
(tests/fixtures/inject.py ``slow_ingest``), against the relay fixture, which is idle at this load: the
summary must warn that the generator was the bottleneck, on the evidence of saturation. (That a quiet
generator is not called the bottleneck is checked by the pure tests in tests/core/test_selfcheck.py and
shown on the README's main job: a real "quiet" run would fail only on a machine too loaded to keep up.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.commands.test_environment import assert_clean, injected
from tests.drivers.conftest import relay_cmd
from wsbench import schedstat

ROOT = Path(__file__).resolve().parents[2]

SLOW = """
name: slow-generator
clients: 20
senders: 4
rate: 200/s
size: 64B
connect:
  rate: 1000/s
warmup: 0.5s
duration: 4s
drain: 1s
interval: 0.5s
"""


def test_a_generator_too_slow_for_its_load_is_called_the_bottleneck(tmp_path: Path) -> None:
    scenario = tmp_path / "slow.yaml"
    scenario.write_text(SLOW, encoding="utf-8")
    out = tmp_path / "slow.jsonl"
    # 3,800 deliveries/s at 400 us each: 1.5 s of CPU per second, more than the generator's one core
    proc = injected("slow_ingest", 400, "run", str(scenario), "--server-cmd", relay_cmd(), "-o", str(out), "--json")
    assert_clean(proc.stderr)
    summary = json.loads(proc.stdout)
    g = summary["generator"]
    assert g["bottleneck"], json.dumps(g, indent=1)
    # on an idle machine its CPU is at a full core; on one shared with other jobs the OS may give it half a
    # core, and then the send lag and the growing delay say the same: any of the signs, none faked
    assert g["saturation"] and g["cpu_busy_ratio"] is not None
    assert g["bottleneck_detail"].startswith("the generator was the bottleneck: ")
    assert g["bottleneck_detail"] in summary["warnings"]
    if g["self_check"] == "measured":  # kernel stamps: its own delay is measured, and large
        assert summary["generator_delay"]["p99"] >= 0.25 * summary["latency"]["p99"]
        assert g["delay_detail"] and g["delay_detail"] in g["bottleneck_detail"]


STARVED = """
name: starved-generator
clients: 10
senders: 2
rate: 100/s
size: 64B
warmup: 1s
duration: 2s
drain: 0.5s
interval: 0.5s
"""
HOG = "import time\nend = time.monotonic() + 60\nwhile time.monotonic() < end:\n    pass\n"


def _wait_for(out: Path, text: str, proc: subprocess.Popen[str], timeout: float = 60.0) -> None:
    """Until the results file holds ``text`` (the run writes as it goes)."""
    deadline = time.monotonic() + timeout
    while not (out.exists() and text in out.read_text(encoding="utf-8")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"the run wrote no {text} in {timeout:g} s"
        time.sleep(0.05)


def test_a_generator_starved_of_cpu_says_how_little_it_got(tmp_path: Path) -> None:
    """Once the run is under way, the generator's event-loop thread is put at the lowest priority (nice 19) on its
    CPU, and a busy loop takes that CPU: the kernel gives the generator a small share of the CPU time it asks for
    (CFS weights 15 against 1024), and its run-queue wait (wsbench.schedstat) says so, in the summary's figures
    and as the starvation sign of the self-check. (Niced from the start, its imports alone would take a minute.)"""
    cpus = sorted(os.sched_getaffinity(0))
    mine, server = cpus[-1], cpus[0]  # on one CPU the server shares it too: still starved
    scenario = tmp_path / "starved.yaml"
    scenario.write_text(STARVED, encoding="utf-8")
    out = tmp_path / "starved.jsonl"
    argv = [sys.executable, "-m", "wsbench", "run", str(scenario), "--server-cmd", relay_cmd(), "-o", str(out),
            "--json", "--cpu", str(mine), "--server-cpu", str(server)]  # fmt: skip
    run = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    hog: subprocess.Popen[bytes] | None = None
    try:
        _wait_for(out, '"type":"interval"', run)  # in the connect phase: the measured phases are all starved
        os.setpriority(os.PRIO_PROCESS, run.pid, 19)  # its main thread, the event loop's
        hog = subprocess.Popen([sys.executable, "-c", HOG], preexec_fn=lambda: os.sched_setaffinity(0, {mine}))
        _wait_for(out, '"name":"drain"', run)  # the measured phases are over: the rest runs at full speed
        hog.kill()
        stdout, stderr = run.communicate(timeout=120)
    finally:
        for p in (run, hog):  # by their PIDs
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    assert_clean(stderr)
    summary = json.loads(stdout)
    g = summary["generator"]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    intervals = [r for r in records if r["type"] == "interval" and r["phase"] == "measure" and not r.get("late")]
    if schedstat.read() is None:  # a kernel without the figures: left out, null, never a guess
        assert intervals and not any("cpu_wait_s" in r["generator"] for r in intervals)
        assert g["cpu_got_ratio"] is None and not any("starved" in sign for sign in g["saturation"])
        return
    assert g["cpu_got_ratio"] is not None and g["cpu_got_ratio"] < 0.5, json.dumps(g, indent=1)
    assert g["cpu_wait_s_measured"] > 0 and g["cpu_wait_ms_per_slice"] > 0
    starved = [sign for sign in g["saturation"] if sign.startswith("it was starved of CPU: its event loop got ")]
    assert starved, json.dumps(g, indent=1)
    # and every interval record of the run carries the figures it was judged from
    assert intervals and all(r["generator"]["cpu_wait_s"] >= 0 and r["generator"]["cpu_slices"] >= 0 for r in intervals)
