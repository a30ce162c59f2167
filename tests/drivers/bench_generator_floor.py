"""wsbench's generator CPU per delivery against the bare client floor, side by side (a measurement, not a test).

    python tests/drivers/bench_generator_floor.py                      # the minimal relay, 3 rounds
    python tests/drivers/bench_generator_floor.py --server aiohttp --rounds 2

The absolute cost of receiving a WebSocket frame depends on the machine far more than on wsbench: on
loopback most of it is the kernel's (``epoll_wait``, ``recv``, and the ACK that ``recv`` sends, whose
processing for the server's socket runs on the receiving core). So this prints, for each load of
``scenarios/capacity.yaml`` (10, 100 and 1,000 clients at about 100,000 deliveries/s), two numbers
measured in turn against **one** server process pinned to core 0, with the client pinned to core 1:

* the floor: ``bench_client_libs.py --lib picows``, bare picows + uvloop clients that only keep each
  frame's bytes and a timestamp (no decoding, no accounting, no histograms);
* ``wsbench run scenarios/capacity.yaml --url ...``, full accounting on;

and their ratio, which is what wsbench adds over the cheapest client and comparable across machines.
Rounds alternate floor and wsbench so that a noisy neighbour hits both.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from wsbench.core.results import read_results
from wsbench.core.summary import summarize
from wsbench.target import command_server_argv, reference_server_argv, start_server

ROOT = Path(__file__).resolve().parents[2]
FLOOR = ROOT / "tests" / "drivers" / "bench_client_libs.py"
RELAY = ROOT / "tests" / "fixtures" / "relay.py"
# (clients, senders, total messages/s): about 100,000 deliveries/s each, as in scenarios/capacity.yaml
LOADS = [(10, 10, 11000), (100, 10, 1000), (1000, 10, 100)]
_FLOOR_RE = re.compile(r"= ([\d.]+) us/frame")


def floor(url: str, clients: int, rate: int, seconds: float, cpu: str) -> float:
    """CPU per received frame (us) of the bare picows client."""
    argv = ["taskset", "-c", cpu, sys.executable, str(FLOOR), "--url", url, "--lib", "picows"]
    argv += ["--clients", str(clients), "--rate", str(rate), "--seconds", str(seconds)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120 + seconds, check=True).stdout
    m = _FLOOR_RE.search(out)
    if m is None:
        raise SystemExit(f"unexpected output from {FLOOR.name}: {out!r}")
    return float(m.group(1))


def wsbench(
    url: str, clients: int, senders: int, rate: int, seconds: float, cpu: str, probes: int | None = None
) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run.jsonl"
        argv = [sys.executable, "-m", "wsbench", "run", str(ROOT / "scenarios" / "capacity.yaml"), "--url", url]
        argv += ["--cpu", cpu, "-q", "-o", str(out), "--set", f"clients={clients}", "--set", f"senders={senders}"]
        argv += ["--set", f"rate={rate}/s", "--set", f"duration={seconds:g}s"]
        if clients >= 1000:
            argv += ["--set", "connect.rate=500/s"]
        if probes is not None:
            argv += ["--set", f"probes={probes}"]
        subprocess.run(argv, capture_output=True, text=True, timeout=300 + seconds, check=False)
        s = summarize(read_results(out))
    return {
        "delivered_per_s": s["rate"]["delivered"],
        "us": s["generator"]["cpu_us_per_delivery"],
        "cpu_pct": s["generator"]["cpu_pct_mean"],
        "p50": s["latency"]["p50"],
        "p99": s["latency"]["p99"],
        "lost": s["delivery"]["lost"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", choices=["relay", "aiohttp", "tornado"], default="relay")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--server-cpu", default="0")
    p.add_argument("--cpu", default="1")
    p.add_argument("--clients", type=int, nargs="*", help="only these client counts (10, 100, 1000)")
    p.add_argument("--probes", type=int, default=None, help="kernel-stamped probe receivers (default: the scenario's)")
    args = p.parse_args()
    if args.server == "relay":
        argv = command_server_argv(f"{sys.executable} {RELAY}")
    else:
        argv = reference_server_argv(args.server)
    loads = [x for x in LOADS if not args.clients or x[0] in args.clients]
    rows: list[str] = []
    with start_server(argv, label=args.server) as server:
        os.sched_setaffinity(server.pid, {int(c) for c in args.server_cpu.split(",")})
        url = server.url
        print(f"# {args.server} at {url}, pinned to CPU {args.server_cpu}; clients on CPU {args.cpu}", flush=True)
        for r in range(args.rounds):
            for clients, senders, rate in loads:
                f_us = floor(url, clients, rate, args.seconds, args.cpu)
                w = wsbench(url, clients, senders, rate, args.seconds, args.cpu, args.probes)
                row = (
                    f"| {r + 1} | {clients} | {f_us:.2f} | {w['delivered_per_s']:,.0f} | "
                    f"{w['us']:.2f} | **{w['us'] / f_us:.2f}x** | {w['cpu_pct']:.0f}% | "
                    f"{w['p50']:.2f} / {w['p99']:.2f} | {w['lost']} |"
                )
                rows.append(row)
                print(row, flush=True)
    print()
    print(
        "| round | clients | floor us/frame | wsbench deliveries/s | wsbench us/delivery | "
        "ratio | wsbench CPU | wsbench p50 / p99 ms | lost |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
