"""Latency at the socket against the relay's own view, at the benchmark's three loads (a measurement, not a test).

    python tests/drivers/bench_socket_latency.py                  # 10, 100, 1,000 clients; plain and --delay-ms 20
    python tests/drivers/bench_socket_latency.py --clients 1000 --rounds 2

For each load of ``scenarios/capacity.yaml`` (about 100,000 deliveries/s) it runs wsbench against the
minimal relay (``tests/fixtures/relay.py``, pinned to its own core) and prints, side by side:

* ``latency`` p50 / p99 (every receiver, user space) and ``latency_probes`` p50 (the probes, user space);
* ``latency_socket`` p50 / p99 (the probes, intended send time to the kernel's receive stamp);
* ``generator_delay`` p50 / p99 (user-space receive time minus the kernel stamp);
* ``latency_socket_uncorrected`` p50 (from the actual send time to the kernel stamp) beside the
  relay's own dwell for the probe receivers (``/stats?dwell=``, with ``--stamp-in``: from the kernel's
  receive stamp on the relay's socket to its write to the probe), and their difference: what the
  generator's kernel stamp says the server took, against what the server says it took;
* the send lag p50 (the generator's own lateness in sending: ``latency_socket`` minus
  ``latency_socket_uncorrected``, roughly);
* generator CPU per delivery with the probes, and in the same round without them (``probes: 0``),
  to show what the probes cost.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from wsbench.core import histograms
from wsbench.core.results import read_results
from wsbench.core.summary import summarize
from wsbench.target import command_server_argv, start_server

ROOT = Path(__file__).resolve().parents[2]
RELAY = ROOT / "tests" / "fixtures" / "relay.py"
LOADS = [(10, 10, 11000), (100, 10, 1000), (1000, 10, 100)]


def run(url: str, clients: int, senders: int, rate: int, seconds: float, cpu: str, probes: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run.jsonl"
        argv = [sys.executable, "-m", "wsbench", "run", str(ROOT / "scenarios" / "capacity.yaml"), "--url", url]
        argv += ["--cpu", cpu, "-q", "-o", str(out), "--set", f"clients={clients}", "--set", f"senders={senders}"]
        argv += ["--set", f"rate={rate}/s", "--set", f"duration={seconds:g}s", "--set", f"probes={probes}"]
        # no warm-up: the relay's dwell covers every delivery, and so must the socket latency it is compared to
        argv += ["--set", "warmup=0s"]
        if clients >= 1000:
            argv += ["--set", "connect.rate=500/s"]
        subprocess.run(argv, capture_output=True, text=True, timeout=300 + seconds, check=False)
        results = read_results(out)
        s = summarize(results)
        ev = results.events_of("probes")
        s["_nicknames"] = ev[0].get("nicknames", []) if ev else []
        s["_send_lag"] = histograms.summary_ms(results.histogram("send_lag"))
    return s


def dwell_of(url: str, nicknames: list[str]) -> dict[str, float] | None:
    if not nicknames:
        return None
    with urllib.request.urlopen(f"{url}/stats?dwell={','.join(nicknames)}", timeout=10) as resp:
        data = json.loads(resp.read())
    merged = data.get("dwell_us_of_all") or {}
    if not merged.get("count"):
        return None
    return {k: merged[k] / 1000 for k in ("p50", "p99")}


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--server-cpu", default="0")
    p.add_argument("--cpu", default="1")
    p.add_argument("--clients", type=int, nargs="*", help="only these client counts (10, 100, 1000)")
    p.add_argument("--delays", type=float, nargs="*", default=[0.0, 20.0], help="relay --delay-ms values")
    p.add_argument("--scale", type=float, default=1.0, help="multiply the loads' rates (0.1: 10,000 deliveries/s)")
    args = p.parse_args()
    loads = [x for x in LOADS if not args.clients or x[0] in args.clients]
    header = (
        "| relay delay | clients | deliveries/s | latency p50 / p99 | probes, user space p50 | socket p50 / p99 | "
        "socket from actual send p50 | relay dwell p50 (probes) | difference | generator_delay p50 / p99 | "
        "send lag p50 | us/delivery with / without probes |"
    )
    rows: list[str] = []
    for delay in args.delays:
        argv = command_server_argv(f"{sys.executable} {RELAY} --delay-ms {delay:g} --stamp-in")
        with start_server(argv, label="relay") as server:
            os.sched_setaffinity(server.pid, {int(c) for c in args.server_cpu.split(",")})
            for _ in range(args.rounds):
                for clients, senders, full_rate in loads:
                    rate = max(int(full_rate * args.scale), 1)
                    w = run(server.url, clients, senders, rate, args.seconds, args.cpu, 2)
                    bare = run(server.url, clients, senders, rate, args.seconds, args.cpu, 0)
                    dw = dwell_of(server.url, w["_nicknames"])
                    lat, sock, delay_h = w["latency"], w["latency_socket"], w["generator_delay"]
                    unc = w["latency_socket_uncorrected"]["p50"]
                    lag = w["_send_lag"]["p50"]
                    gap = unc - dw["p50"] if dw is not None and unc is not None else None
                    row = (
                        f"| {delay:g} ms | {clients} | {w['rate']['delivered'] or 0:,.0f} | "
                        f"{_f(lat['p50'])} / {_f(lat['p99'])} | {_f(w['latency_probes']['p50'])} | "
                        f"{_f(sock['p50'])} / {_f(sock['p99'])} | {_f(unc)} | {_f(dw and dw['p50'])} | {_f(gap)} | "
                        f"{_f(delay_h['p50'])} / {_f(delay_h['p99'])} | {_f(lag)} | "
                        f"{_f(w['generator']['cpu_us_per_delivery'])} / "
                        f"{_f(bare['generator']['cpu_us_per_delivery'])} |"
                    )
                    rows.append(row)
                    print(row, flush=True)
    print()
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
