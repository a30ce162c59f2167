"""What reading a long soak costs: results file size, ``wsbench report --json`` and ``--html`` time and
peak RSS, for the synthetic 1 h, 6 h and 24 h runs (1 s intervals, 20 clients, 200 messages/s).

    python tests/report/bench_soak_report.py                 # 1 h, 6 h and 24 h
    python tests/report/bench_soak_report.py --hours 1 6     # a subset
    python tests/report/bench_soak_report.py --dir /tmp/soak # where the files are kept (reused if present)

The files are written with ``tests/report/synthetic.py`` ``write_run`` (the real ``ResultsWriter``, so
they carry whatever the writer of this checkout writes, rollups included). Each report runs in a child
process; its peak RSS is that child's own (``os.wait4`` resource usage), its time the wall clock.
The machine is shared: compare rows of one invocation side by side, not across days.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.report.synthetic import write_run


def child(argv: list[str]) -> tuple[float, float, int]:
    """Run ``argv``; (wall seconds, peak RSS MiB, exit code)."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode:
        print(f"  {' '.join(argv)} exited {proc.returncode}: {err[-400:]}", file=sys.stderr)
    return elapsed, usage.ru_maxrss / 1024.0, proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, nargs="+", default=[1, 6, 24])
    parser.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "wsbench-soak-bench"))
    parser.add_argument("--no-html", action="store_true", help="time --json only")
    args = parser.parse_args()
    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    wsbench = [sys.executable, "-m", "wsbench"]
    print("| intervals (1 s) | results file | write | `report --json` | `report --html` |")
    print("|---|---|---|---|---|")
    for hours in args.hours:
        n = int(hours * 3600)
        path = directory / f"soak-{n}.jsonl"
        write_s = float("nan")
        if not path.exists():
            started = time.perf_counter()
            write_run(path.with_suffix(".part"), measure_intervals=n, seed=7)
            path.with_suffix(".part").rename(path)
            write_s = time.perf_counter() - started
        size_mb = path.stat().st_size / 1e6
        j_s, j_mib, _ = child([*wsbench, "report", str(path), "--json"])
        cells = [f"{n:,} ({hours:g} h)", f"{size_mb:.1f} MB", f"{write_s:.0f} s", f"{j_s:.1f} s, {j_mib:.0f} MiB RSS"]
        if args.no_html:
            cells.append("-")
        else:
            html = directory / f"soak-{n}.html"
            h_s, h_mib, _ = child([*wsbench, "report", str(path), "--json", "--html", str(html)])
            cells.append(f"{h_s:.1f} s, {h_mib:.0f} MiB RSS ({html.stat().st_size / 1024:.0f} KiB)")
        print("| " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
