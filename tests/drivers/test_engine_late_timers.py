"""The engine's intervals under late timers, on a simulated event loop (no sockets, no sleeps).

A delivery belongs to the phase, stage and interval of its message's intended send time (core/recorder.py).
Under load the engine's interval timer fires late, and asyncio runs I/O callbacks (the sender's timerfd)
before timers in the same loop iteration: the sends due after a boundary would go out before the cut.
These tests run a real :class:`~wsbench.drivers.engine.Engine` on a fake clock and a fake loop that is
*blocked* for 90 ms across every boundary (then, like asyncio, runs the I/O callback first and the
timers after), with an instant in-process "server" that delivers every message to every other client.
Every interval record must then hold exactly the messages intended in it, on the scheduled grid.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from wsbench.core import payload
from wsbench.core.chat import message_line
from wsbench.core.results import ResultsWriter, read_results
from wsbench.core.scenario_loading import load_text
from wsbench.core.summary import summarize
from wsbench.drivers import connecting, run_state, stages, teardown
from wsbench.drivers import engine as engine_mod
from wsbench.drivers.engine import Engine

MS = 1_000_000
LATE_NS = 90 * MS  # how long the loop is blocked across each boundary


class FakeClock:
    def __init__(self) -> None:
        self.ns = 10_000 * 1_000_000_000

    def __call__(self) -> int:
        return self.ns


class FakeHandle:
    def __init__(self, when: int, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        self.when, self.fn, self.args, self._cancelled = when, fn, args, False

    def cancel(self) -> None:
        self._cancelled = True

    def cancelled(self) -> bool:
        return self._cancelled


class FakeLoop:
    """``call_later`` on the fake clock; :meth:`step` runs one iteration as asyncio does: the I/O
    callbacks that are ready (the sender's timer) first, then every timer due, in time order."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.handles: list[FakeHandle] = []
        self.sender: FakeTimer | None = None

    def call_later(self, delay: float, fn: Callable[..., None], *args: Any) -> FakeHandle:
        h = FakeHandle(self.clock.ns + max(int(delay * 1e9), 0), fn, args)
        self.handles.append(h)
        return h

    def step(self) -> None:
        now = self.clock.ns
        timer = self.sender
        if timer is not None and timer.wake is not None and timer.wake <= now:
            timer.wake = None
            timer.fn()
        due = sorted((h for h in self.handles if h.when <= now and not h.cancelled()), key=lambda h: h.when)
        self.handles = [h for h in self.handles if h.when > now and not h.cancelled()]
        for h in due:
            if not h.cancelled():
                h.fn(*h.args)


class FakeTimer:
    """The sender's timerfd (drivers/precise_timer.py)."""

    def __init__(self, loop: FakeLoop, fn: Callable[[], None]) -> None:
        self.fn, self.wake = fn, None
        loop.sender = self

    def arm(self, at_ns: int) -> None:
        self.wake = at_ns

    def cancel(self) -> None:
        self.wake = None

    def close(self) -> None:
        self.wake = None


class InstantServer:
    """Every client's transport: a message goes at once to every other client (SPEC 7.2)."""

    def __init__(self, eng: Engine, clock: FakeClock) -> None:
        self.eng, self.clock = eng, clock
        self.intended_us: list[int] = []  # of every message sent

    def transport(self, cid: int) -> Any:
        server = self

        class Transport:
            def send(self, kind: object, data: bytes) -> None:
                server.deliver(cid, data)

            def send_close(self, code: object) -> None:
                pass

            def disconnect(self) -> None:
                pass

            async def wait_disconnected(self) -> None:
                pass

        return Transport()

    def deliver(self, sender: int, data: bytes) -> None:
        eng, rx = self.eng, self.eng.rx
        self.intended_us.append(int(payload.decode_batch([data]).intended_us[0]))
        line = message_line(eng.roster.clients[sender].nickname, data.decode()).encode()
        for c in eng.roster.clients:
            if c.cid != sender:
                rx.frames.append(line)
                rx.times.append(self.clock.ns)
                rx.owners.append(c.cid)


def run_late(
    tmp: Path, text: str, monkeypatch: pytest.MonkeyPatch, stop_after: int | None = None
) -> tuple[Engine, InstantServer, Any]:
    """The scenario's load on the fake loop, blocked for ``LATE_NS`` across every interval boundary
    (``stop_after``: a stop is requested as the loop wakes after that many, before anything else runs)."""
    clock = FakeClock()
    for module in (engine_mod, run_state, stages, teardown, connecting):
        monkeypatch.setattr(module, "_clock", clock)
    loop = FakeLoop(clock)
    monkeypatch.setattr(engine_mod, "PreciseTimer", lambda _loop, fn: FakeTimer(loop, fn))
    out = tmp / "late.jsonl"
    writer = ResultsWriter(out)
    scenario = load_text(text, "late.yaml")
    writer.header(kind="run", scenario=scenario.resolved(), driver="asyncio", interval_s=scenario.interval)
    eng = Engine(scenario, "http://127.0.0.1:9", writer)
    eng.timers.loop = loop  # type: ignore[assignment]
    server = InstantServer(eng, clock)
    for c in eng.roster.clients:
        c.transport = server.transport(c.cid)
        c.connected_ns = clock.ns
        eng.rec.connected(c.cid, eng.us(clock.ns), 0, 0)
    eng.timers.every(engine_mod.INGEST_PERIOD_S, eng._ingest_tick, eng.progress.finished)
    clock.ns += 3 * MS
    eng._start_load()
    boundaries_blocked = 0
    deadline = clock.ns + 30 * 1_000_000_000
    while not eng.progress.finished.is_set():
        assert clock.ns < deadline, "the run did not end"
        pending = [h.when for h in loop.handles if h.fn == eng._interval_end and not h.cancelled()]
        if pending and pending[0] - 3 * MS <= clock.ns < pending[0]:
            clock.ns = pending[0] + LATE_NS  # the loop is blocked from just before the boundary to well after it
            boundaries_blocked += 1
            if boundaries_blocked == stop_after:
                eng.request_stop("interrupted", "Ctrl-C")  # the signal's callback runs first
                break
        else:
            clock.ns += MS
        loop.step()
    assert boundaries_blocked >= min(3, stop_after or 3)
    clock.ns += 5 * MS
    asyncio.run(eng._finish())
    writer.footer(status="completed", accounting=eng.final_accounting())
    writer.close()
    return eng, server, read_results(out)


def assert_each_interval_holds_its_own_messages(eng: Engine, server: InstantServer, results: Any) -> None:
    intended = np.sort(np.asarray(server.intended_us, dtype=np.int64))
    records = [r for r in results.intervals if not r.get("late")]
    load_start_us = eng.us(eng.progress.load_start_ns)
    for r in records:
        t0, t1 = round(r["start_s"] * 1e6), round(r["end_s"] * 1e6)
        if t0 >= load_start_us:  # on the scheduled grid: whole intervals from the load start, or a phase end
            grid = {load_start_us + round(p.end_s * 1e6) for p in eng.progress.phases}
            assert (t0 - load_start_us) % 1_000_000 == 0 or t0 in grid, r
        mine = int(np.count_nonzero((intended >= t0) & (intended < t1)))
        c = r["counters"]
        assert c["sent"] == mine, (r["index"], r["phase"], r["start_s"], r["end_s"], c["sent"], mine)
        assert c["expected"] == 3 * mine and c["delivered"] == 3 * mine, r
    assert sum(r["counters"]["sent"] for r in records) == len(intended)


STEPS = """\
name: late
clients: 4
senders: 2
size: 64B
warmup: 0s
steps: {start: 100/s, stop: 400/s, step: 100/s, duration: 1s}
drain: 0.5s
stats: false
probes: 0
"""


def test_a_late_interval_timer_leaves_every_stage_exactly_its_own_sends(tmp_path, monkeypatch) -> None:
    """Blocked 90 ms across every stage boundary, each stage still holds exactly rate x 1 s of sends,
    and its records start and end on the scheduled boundaries (before: the next stage's first ~90 ms
    of sends were in the current stage's record, and the cut was at the time the timer ran)."""
    eng, server, results = run_late(tmp_path, STEPS, monkeypatch)
    assert_each_interval_holds_its_own_messages(eng, server, results)
    summary = summarize(results)
    by_stage = {st["name"]: st for st in summary["stages"]}
    assert list(by_stage) == ["step-1", "step-2", "step-3", "step-4"]
    for k, name in enumerate(by_stage, start=1):
        recs = [r for r in results.intervals if r["phase"] == name and not r.get("late")]
        assert sum(r["counters"]["sent"] for r in recs) == 100 * k, name
        assert sum(r["counters"]["expected"] for r in recs) == 3 * 100 * k, name
        assert recs[0]["start_s"] == pytest.approx(eng.t_s(eng.progress.bounds_ns(k - 1)[0]), abs=1e-6)
        assert recs[-1]["end_s"] == pytest.approx(eng.t_s(eng.progress.bounds_ns(k - 1)[1]), abs=1e-6)
    assert summary["messages"]["sent_measured"] == 1000
    assert results.footer["accounting"]["lost"] == 0


SEARCH = """\
name: late-search
clients: 4
senders: 2
size: 64B
warmup: 0s
steps: {start: 100/s, stop: 500/s, step: 100/s, duration: 1s}
drain: 0.5s
stats: false
probes: 0
search:
  thresholds: ['rate.sent < 250/s']
  grace: 0.2s
"""


def test_a_capacity_search_under_late_timers_judges_each_stage_on_its_own_sends(tmp_path, monkeypatch) -> None:
    """step-3 (300/s) breaks. Its verdict sees exactly its 300 sends (before: ~27 of step-4's too), what
    step-4 sent until the verdict is the drain's, and the drain ends its 0.5 s after the stop."""
    eng, server, results = run_late(tmp_path, SEARCH, monkeypatch)
    assert_each_interval_holds_its_own_messages(eng, server, results)
    summary = summarize(results)
    assert [(st["name"], st["passed"]) for st in summary["stages"]] == [
        ("step-1", True),
        ("step-2", True),
        ("step-3", False),
    ]
    assert summary["messages"]["sent_measured"] == 600
    assert 600 + 0.2 * 400 <= summary["messages"]["sent"] < 600 + 400
    drain = [r for r in results.intervals if r["phase"] == "drain" and not r.get("late")]
    stop = next(e for e in results.events_of("phase") if e.get("name") == "drain")
    # the drain's end is a boundary (before: the next grid point, 4.0 s, made the drain 0.8 s long)
    assert any(r["end_s"] == pytest.approx(stop["t_s"] + 0.5, abs=1e-3) for r in drain), drain
    assert all(r["end_s"] < 4.0 for r in results.intervals), results.intervals[-1]
    assert eng.t_s(eng.progress.load_end_ns) == pytest.approx(stop["t_s"] + 0.5, abs=1e-3)


CLOSED = """\
name: late-closed
clients: 4
senders: 2
size: 64B
model: closed
outstanding: 1
warmup: 1s
duration: 2s
drain: 0.5s
stats: false
probes: 0
"""


def test_the_closed_model_under_late_timers_records_each_send_in_its_own_interval(tmp_path, monkeypatch) -> None:
    eng, server, results = run_late(tmp_path, CLOSED, monkeypatch)
    assert_each_interval_holds_its_own_messages(eng, server, results)
    phases = {r["phase"] for r in results.intervals}
    assert {"warmup", "measure"} <= phases


def test_a_stop_that_comes_before_a_late_boundary_is_cut_still_ends_the_stage_on_it(tmp_path, monkeypatch) -> None:
    """Ctrl-C handled before the late timer of step-2's end: the teardown cuts at that boundary, not at
    the stop, so step-2 holds its 200 sends over exactly its second and nothing else."""
    eng, server, results = run_late(tmp_path, STEPS, monkeypatch, stop_after=2)
    assert_each_interval_holds_its_own_messages(eng, server, results)
    step2 = [r for r in results.intervals if r["phase"] == "step-2" and not r.get("late")]
    assert sum(r["counters"]["sent"] for r in step2) == 200
    assert step2[-1]["end_s"] == pytest.approx(eng.t_s(eng.progress.bounds_ns(1)[1]), abs=1e-6)
