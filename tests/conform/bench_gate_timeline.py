"""Where does the gate's time go? (a measurement, not a suite test)

    python tests/conform/bench_gate_timeline.py                       # tornado and aiohttp, once each
    python tests/conform/bench_gate_timeline.py --server aiohttp --runs 3 --concurrency 16

Runs the whole chat gate as ``wsbench conform --server KIND`` does (fresh server, the gate's options)
and prints the runner's phases: when the concurrent, exclusive, spawn and last phases start and end,
the cases the concurrent phase waited for last, the background cases, and the verdict counts. With
``--concurrency`` and ``--max-connections`` other schedules can be compared side by side in one
session (the machine's load changes from minute to minute: alternate, and print ``uptime``).
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from wsbench.conform import runner  # noqa: E402
from wsbench.conform.cases import BY_ID, select  # noqa: E402
from wsbench.conform.model import Case, CaseResult  # noqa: E402
from wsbench.conform.options import resolve  # noqa: E402
from wsbench.target import option_flags, reference_server_argv  # noqa: E402


def phase(case: Case) -> str:
    if case.last:
        return "last"
    if case.exclusive:
        return "exclusive"
    if case.spawns:
        return "spawn"
    return "background" if case.background else "concurrent"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", action="append", choices=("tornado", "aiohttp"))
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=None, help="default: run_target's")
    parser.add_argument("--max-connections", type=int, default=None, help="default: the gate's")
    args = parser.parse_args(argv)
    spans: dict[str, tuple[float, float]] = {}
    execute = runner._Runner.execute

    async def timed(self: runner._Runner, case: Case) -> CaseResult:
        t0 = time.perf_counter()
        try:
            return await execute(self, case)
        finally:
            spans[case.id] = (t0, time.perf_counter())

    runner._Runner.execute = timed  # type: ignore[method-assign]
    given = {} if args.max_connections is None else {"max_connections": args.max_connections}
    options = resolve(True, given)
    kw = {} if args.concurrency is None else {"concurrency": args.concurrency}
    schedule = f"max_connections {options.max_connections}, {kw or 'default concurrency'}"
    print(f"load average {os.getloadavg()[0]:.2f}; {schedule}")
    for kind in args.server or ["tornado", "aiohttp"]:
        for n in range(args.runs):
            spans.clear()
            argv = reference_server_argv(kind, option_flags(options.as_flags_dict()))
            target = runner.Target(kind, "embedded", options, argv=argv, kind=kind)
            t0 = time.perf_counter()
            report = runner.run_target(target, select(None), **kw)  # type: ignore[arg-type]
            total = time.perf_counter() - t0
            first = min(s for s, _ in spans.values())
            counts = collections.Counter(r.verdict for r in report.results)
            print(f"{kind} run {n + 1}: {total:.2f} s in all (first case at {first - t0:.2f} s); {dict(counts)}")
            for name in ("concurrent", "background", "exclusive", "spawn", "last"):
                ids = [i for i in spans if phase(BY_ID[i]) == name]
                if not ids:
                    continue
                start = min(spans[i][0] for i in ids) - first
                end = max(spans[i][1] for i in ids) - first
                print(f"  {name:>10}: {start:6.2f} -> {end:6.2f} s ({end - start:.2f} s, {len(ids)} cases)")
                if name == "concurrent":
                    for i in sorted(ids, key=lambda i: -spans[i][1])[:3]:
                        print(f"{'':16}last to end: {i} ({spans[i][0] - first:.2f} -> {spans[i][1] - first:.2f} s)")
    print(f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
