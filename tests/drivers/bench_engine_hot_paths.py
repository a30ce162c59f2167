"""The engine's hot paths in process, as CPU time, side by side with another tree (a measurement, not a test).

    python tests/drivers/bench_engine_hot_paths.py                      # this tree, 5 rounds
    python tests/drivers/bench_engine_hot_paths.py --base /tmp/main-copy  # alternate with a clone of main

End-to-end benchmarks (``bench_generator_floor.py``) are what a user sees, but on a shared machine their
ratios drift by tens of percent. A refactor of the engine is judged better here: one process builds an
:class:`~wsbench.drivers.engine.Engine` (100 clients, 10 senders, no probes) whose clients have
no-op transports, and measures with ``time.process_time``:

* ``send``: ``Engine._send_one`` per message (the payload, the transport call, ``Recorder.sent``);
* ``ingest``: ``Engine._ingest`` per received frame, in batches of 10 messages x 90 receivers (the
  shared receive buffer, decoding, accounting, the latency histograms);
* ``tick``: ``Engine._send_tick`` per message, 100,000 messages due at once (the open model's send loop
  around ``_send_one``: the queue, the check against the pending interval boundary).

With ``--base``, each round runs this script in the base tree and then in this one (each tree's own
``wsbench`` package, from its directory), and prints the medians and their ratios.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class _NoTransport:
    def send(self, kind: object, data: bytes) -> None:
        pass


def measure(messages: int = 100_000, batches: int = 200) -> tuple[float, float, float]:
    """(us per sent message, us per ingested frame, us per message sent by the send tick) of the
    ``wsbench`` package importable from here."""
    from wsbench.core import payload
    from wsbench.core.chat import message_line
    from wsbench.core.results import ResultsWriter
    from wsbench.drivers.engine import Engine

    try:
        from wsbench.core.scenario_loading import load_text
    except ImportError:  # a base tree from before the scenario split (a8ccb4f)
        from wsbench.core.scenario import load_text  # type: ignore[attr-defined,no-redef]

    scenario = load_text("clients: 100\nsenders: 10\nrate: 1000/s\nduration: 60s\nwarmup: 0s\nprobes: 0\n", "b.yaml")
    with tempfile.TemporaryDirectory() as tmp, ResultsWriter(Path(tmp) / "x.jsonl") as writer:
        engine = Engine(scenario, "http://127.0.0.1:9", writer)
    # trees before the state split kept these on the Engine itself
    roster = getattr(engine, "roster", engine)
    clients, nicknames = roster.clients, roster.nicknames
    epoch = engine.clock.epoch_ns if hasattr(engine, "clock") else engine.epoch_ns  # type: ignore[attr-defined]
    for c in clients:
        c.transport = _NoTransport()  # type: ignore[assignment]
        c.connected_ns = 1
        engine.rec.connected(c.cid, 1000, 10, 10)
    t0 = time.process_time()
    for k in range(messages):
        engine._send_one(k % 10, epoch + 2_000_000_000 + k * 1000, 100)
    send_us = (time.process_time() - t0) / messages * 1e6
    n_msgs = batches * 10
    frames = []
    for k in range(n_msgs):
        si, seq, t = k % 10, k // 10, 2_000_000 + k * 1000
        frames.append(message_line(nicknames.of(si), payload.encode(si, seq, t, t, 100)).encode())
    rx = engine.rx
    n_frames = 0
    t0 = time.process_time()
    for b in range(0, n_msgs, 10):
        for k in range(b, b + 10):
            t_ns = epoch + (2_000_000 + k * 1000 + 500) * 1000
            for r in range(10, 100):
                rx.frames.append(frames[k])
                rx.times.append(t_ns)
                rx.owners.append(r)
            n_frames += 90
        engine._ingest()
    ingest_us = (time.process_time() - t0) / n_frames * 1e6
    return send_us, ingest_us, _tick(engine, epoch, messages)


class _NoTimer:
    def arm(self, at_ns: int) -> None:
        pass


def _tick(engine: object, epoch: int, messages: int) -> float:
    """us per message through ``_send_tick`` (every message due now, a boundary pending later)."""
    from wsbench.core.pacing import OpenSchedule

    progress = getattr(engine, "progress", engine)
    q = getattr(engine, "sends", engine)
    progress.load_start_ns = epoch
    schedule = OpenSchedule(progress.phases, 10)
    sends = q if hasattr(q, "pending") else None
    if sends is None:  # not this tree's layout
        return float("nan")
    sends.schedule, sends.upto_s, sends.timer = schedule, 1e9, _NoTimer()
    timers = getattr(engine, "timers", None)
    if timers is not None and hasattr(timers, "interval_end_ns"):
        timers.interval_end_ns = time.monotonic_ns() + 3600 * 10**9
    due = time.monotonic_ns() - messages - 1_000_000  # every message due (the tick reads the real clock)
    sends.pending.extend((due + k, k % 10, 100) for k in range(messages))
    t0 = time.process_time()
    engine._send_tick()  # type: ignore[attr-defined]
    assert not sends.pending
    return (time.process_time() - t0) / messages * 1e6


def _in_tree(tree: Path) -> tuple[float, float]:
    here = str(ROOT / "tests" / "drivers")
    code = f"import sys; sys.path.insert(0, {here!r}); import bench_engine_hot_paths as b; print(*b.measure())"
    out = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True, check=True).stdout
    send, ingest, tick = out.split()
    return float(send), float(ingest), float(tick)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", type=Path, help="another checkout (e.g. a clone of main) to compare with")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    trees = ([("base", args.base.resolve())] if args.base else []) + [("this", ROOT)]
    got: dict[str, list[tuple[float, float, float]]] = {name: [] for name, _ in trees}
    for r in range(args.rounds):
        for name, tree in trees:
            send, ingest, tick = _in_tree(tree)
            got[name].append((send, ingest, tick))
            print(
                f"round {r + 1} {name}: send {send:.3f} us/message, ingest {ingest:.3f} us/frame, "
                f"tick {tick:.3f} us/message",
                flush=True,
            )
    med = {name: tuple(statistics.median(x[k] for x in v) for k in range(3)) for name, v in got.items()}
    print()
    print("| tree | send us/message (median) | ingest us/frame (median) | send tick us/message (median) |")
    print("|---|---|---|---|")
    for name, (send, ingest, tick) in med.items():
        print(f"| {name} | {send:.3f} | {ingest:.3f} | {tick:.3f} |")
    if args.base:
        (bs, bi, bt), (ts, ti, tt) = med["base"], med["this"]
        print(f"| this / base | {ts / bs:.2f}x | {ti / bi:.2f}x | {tt / bt:.2f}x |")


if __name__ == "__main__":
    main()
