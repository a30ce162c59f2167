"""Do the gate's verdicts flip between identical runs? (a measurement, not a suite test)

    python tests/conform/bench_gate_stability.py                     # 10 runs on tornado and aiohttp
    python tests/conform/bench_gate_stability.py --runs 3 --server aiohttp --only slow_consumer
    python tests/conform/bench_gate_stability.py --server-cmd "node server.js"

Runs the whole gate (every case, the options ``wsbench conform`` uses when it starts a server) ``--runs``
times in a row on each server, each run on a freshly started process, exactly as ``wsbench conform
--server KIND`` does. It prints, per server, how many runs had no failed case, every case whose verdict
was not the same in all runs (with each run's verdict and observation), and for the measured cases
(slow consumer, Nagle, pings) the spread of the numbers they judge, so that a margin that is thin on
this machine shows before it flips. Exit status 1 when any verdict changed between runs.

The machine's load matters (the gate's timing cases have tolerances for a busy 2-core machine); the
load average before and after is printed with the result.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from wsbench.conform.cases import select  # noqa: E402
from wsbench.conform.model import CaseResult  # noqa: E402
from wsbench.conform.options import resolve  # noqa: E402
from wsbench.conform.runner import Target, run_target  # noqa: E402
from wsbench.conform.spec import SPEC_VERSION  # noqa: E402
from wsbench.target import command_server_argv, option_flags, reference_server_argv  # noqa: E402

#: The figures to watch per measured case: a regex on its observation, and the label to print.
WATCH = (
    ("slow_consumer.memory", r"\+([\d.]+) MiB at the peak", "RSS growth MiB"),
    ("slow_consumer.memory", r"\+([\d.]+) MiB in the last third", "RSS growth in the last third MiB"),
    ("slow_consumer.others_latency", r"median ([\d.]+) ms, p99", "others' median ms with the slow client"),
    ("slow_consumer.others_latency", r"p99 ([\d.]+) ms with the slow", "others' p99 ms with the slow client"),
    ("slow_consumer.others_latency", r"vs ([\d.]+) / [\d.]+ ms without", "others' median ms without it"),
    ("slow_consumer.others_latency", r"vs [\d.]+ / ([\d.]+) ms without", "others' p99 ms without it"),
    ("nodelay.conversation", r"arrived ([\d.]+) ms after", "median gap ms"),
    ("pings.timeout", r"TCP closed ([\d.]+ m?s) after the ping", "close after ping, s"),
    ("close.server_close_grace", r"TCP \w+ ([\d.]+ m?s) after it", "TCP end after the close frame, s"),
)


def targets(args: argparse.Namespace) -> list[Target]:
    options = resolve(True, {})
    flags = option_flags(options.as_flags_dict())
    out = [
        Target(kind, "embedded", options, argv=reference_server_argv(kind, flags), kind=kind) for kind in args.server
    ]
    for command in args.server_cmd:
        out.append(Target(shlex.split(command)[0], "command", options, argv=command_server_argv(command, flags)))
    return out


def spread(values: list[float]) -> str:
    if not values:
        return "no values"
    return f"min {min(values):.2f}, median {sorted(values)[len(values) // 2]:.2f}, max {max(values):.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--server", action="append", choices=("tornado", "aiohttp"))
    parser.add_argument("--server-cmd", action="append", default=[], help="a SPEC 15 server command, as for conform")
    parser.add_argument("--only", action="append", help="case selection, as wsbench conform --only")
    args = parser.parse_args(argv)
    if args.server is None:
        args.server = [] if args.server_cmd else ["tornado", "aiohttp"]
    cases = select(args.only)
    load_before = os.getloadavg()
    started = time.perf_counter()
    print(f"SPEC.md v{SPEC_VERSION}: {len(cases)} cases x {args.runs} runs; load average {load_before[0]:.2f}")
    changed_any = False
    for target in targets(args):
        runs: list[dict[str, CaseResult]] = []
        durations = []
        for i in range(args.runs):
            report = run_target(target, cases)
            durations.append(report.duration_s)
            runs.append({r.id: r for r in report.results})
            fails = [r.id for r in report.results if r.verdict == "fail"]
            counts = collections.Counter(r.verdict for r in report.results)
            broken = f"; BROKEN: {report.broken}" if report.broken else ""
            shown = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
            print(f"  {target.label} run {i + 1}: {shown}; failed: {fails}{broken}")
        changed = []
        for case in cases:
            verdicts = [run[case.id].verdict if case.id in run else "missing" for run in runs]
            if len(set(verdicts)) > 1:
                changed.append((case.id, verdicts))
        no_fail = sum(1 for run in runs if all(r.verdict != "fail" for r in run.values()))
        print(
            f"{target.label}: {no_fail}/{args.runs} runs without a failed case; {len(changed)} case(s) changed "
            "verdict; "
            f"gate {spread(durations)} s per run"
        )
        for case_id, verdicts in changed:
            changed_any = True
            print(f"  CHANGED {case_id}: {collections.Counter(verdicts)}")
            for n, run in enumerate(runs, 1):
                result = run.get(case_id)
                if result is not None:
                    print(f"    run {n}: {result.verdict}: {result.observed} {result.reason or ''}")
        for case_id, pattern, label in WATCH:
            values = []
            for run in runs:
                result = run.get(case_id)
                match = re.search(pattern, result.observed) if result else None
                if match:
                    number, _, unit = match.group(1).partition(" ")
                    values.append(float(number) / (1000 if unit == "ms" else 1))
            if values:
                print(f"  {case_id}: {label}: {spread(values)}")
    load_after = os.getloadavg()
    print(
        f"done in {time.perf_counter() - started:.0f} s; load average before {load_before[0]:.2f}, "
        f"after {load_after[0]:.2f} (1-min), {os.cpu_count()} CPUs"
    )
    return 1 if changed_any else 0


if __name__ == "__main__":
    sys.exit(main())
