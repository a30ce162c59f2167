"""Leaks named: a relay that keeps every message fails a soak's RSS-slope threshold, the same relay without
the leak passes it, and the slope is the leak's rate (tests/fixtures/relay.py ``--keep-kib``)."""

from __future__ import annotations

from tests.drivers.conftest import relay_cmd

LEAK = """
name: leak
clients: 10
senders: 2
rate: 200/s
size: 256B
warmup: 1s
duration: 5s
drain: 0.5s
interval: 0.5s
# growth this fast is beyond doubt in seconds; by default a slope needs 5 minutes of samples
drift_min_span: 4s
thresholds:
  - server.rss_slope_mib_per_hour < 1000
  - delivery.lost == 0
"""
KEEP_KIB = 64  # 200 messages/s x 64 KiB = 12.5 MiB/s = 45,000 MiB per hour


def test_a_leaking_server_fails_the_slope_threshold_and_a_steady_one_passes(run_scenario) -> None:
    leaking = run_scenario(LEAK, "--server-cmd", relay_cmd("--keep-kib", str(KEEP_KIB)))
    steady = run_scenario(LEAK, "--server-cmd", relay_cmd())
    assert leaking.code == 1 and steady.code == 0
    verdict = leaking.summary["thresholds"][0]
    assert verdict["metric"] == "server.rss_slope_mib_per_hour" and not verdict["passed"]
    server = leaking.summary["server"]
    rate = 200 * KEEP_KIB / 1024 * 3600  # MiB per hour kept
    assert 0.7 * rate < server["rss_slope_mib_per_hour"] < 1.3 * rate
    assert (
        server["rss_slope_mib_per_hour_low"]
        <= server["rss_slope_mib_per_hour"]
        <= server["rss_slope_mib_per_hour_high"]
    )
    assert steady.summary["thresholds"][0]["passed"]
    assert abs(steady.summary["server"]["rss_slope_mib_per_hour"]) < 1000
    assert steady.summary["server"]["connections_slope_per_hour"] == 0.0
