"""A generator too slow for its load is called the bottleneck, from a real run (wsbench.core.selfcheck).

The generator is made slow by spending CPU per received frame on its event loop
(tests/fixtures/inject.py ``slow_ingest``), against the relay fixture, which is idle at this load: the
summary must warn that the generator was the bottleneck, on the evidence of saturation. (That a quiet
generator is not called the bottleneck is checked by the pure tests in tests/core/test_selfcheck.py and
shown on the README's main job: a real "quiet" run would fail only on a machine too loaded to keep up.)
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.commands.test_environment import assert_clean, injected
from tests.drivers.conftest import relay_cmd

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
