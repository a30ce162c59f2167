"""The engine's state, grouped by what it is about (each a small object with its own methods).

* :class:`RunClock`: the run's one time base (monotonic ns since the epoch, the interval grid);
* :class:`LoadProgress`: the load's timeline: its phases, where it is, whether and why it stops, the
  capacity search (its stage verdicts: :class:`wsbench.core.search.CapacitySearch`);
* :class:`Roster`: the clients' bookkeeping: every client (replacements included), nicknames, which
  clients send, the connect tally, churn;
* :class:`Sending`: the open model's expanded schedule, the closed model's loop, the per-sender sequence;
* :class:`SelfMeter`: the generator watching itself (CPU, loop lag, batch time, the bottleneck rule);
* :class:`Timers`: the event loop's handles and tasks the engine started (so the teardown stops them);
* :class:`Output`: where records and events go (the results file, the live view).

:class:`~wsbench.drivers.engine.Engine` holds one of each; the measuring itself is the core's
(:class:`~wsbench.core.recorder.Recorder`).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wsbench.core.accounting import DeliveryAccounting
from wsbench.core.chat import Nicknames
from wsbench.core.pacing import ClosedLoop, OpenSchedule, Phase
from wsbench.core.plan import RunPlan
from wsbench.core.results import ResultsWriter
from wsbench.core.search import CapacitySearch, stopped_plan
from wsbench.core.selfcheck import BottleneckCheck
from wsbench.drivers.chat_client import ClientState
from wsbench.drivers.precise_timer import PreciseTimer
from wsbench.drivers.selfcheck import CpuMeter, LoopLagMonitor
from wsbench.schedstat import RunQueueWait

_clock = time.monotonic_ns


@dataclass(frozen=True, slots=True)
class RunClock:
    """One monotonic clock (``time.monotonic_ns``) for every sender and receiver of this process."""

    epoch_ns: int
    interval_ns: int

    def t_s(self, ns: int | None = None) -> float:
        """Seconds since the epoch (of ``ns``, default now)."""
        return ((_clock() if ns is None else ns) - self.epoch_ns) / 1e9

    def us(self, ns: int) -> int:
        """Microseconds since the epoch: the core's time."""
        return (ns - self.epoch_ns) // 1000

    def next_tick(self, now: int) -> int:
        """The next interval end on the epoch's grid (before the load starts)."""
        return now - (now - self.epoch_ns) % self.interval_ns + self.interval_ns


@dataclass
class LoadProgress:
    """Where the load is: its phases (from its start, ``load_start_ns``), the current one, and its end."""

    phases: list[Phase]
    load_start_ns: int | None = None  # the first send's millisecond, once the barrier passed
    load_end_ns: int | None = None  # the end of the drain, once the run got there
    index: int = -1  # the current phase; -1: the connect phase
    stopping: bool = False  # a capacity search broke: the remaining stages are skipped
    stop_reason: tuple[str, str | None] | None = None  # (status, reason): stop as soon as possible
    closing: bool = False  # the teardown closes the clients: nothing more is measured
    search: CapacitySearch | None = None  # a capacity search's verdicts so far (scenario ``search:``)
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def started(self) -> bool:
        return self.load_start_ns is not None

    def request_stop(self, status: str, reason: str | None) -> None:
        """Stop as soon as possible; a "broken" reason wins over an earlier "interrupted"."""
        if self.stop_reason is None or (status == "broken" and self.stop_reason[0] != "broken"):
            self.stop_reason = (status, reason)
        self.finished.set()

    def bounds_ns(self, i: int) -> tuple[int, int]:
        """Phase ``i``'s start and end on the run's clock."""
        assert self.load_start_ns is not None
        p = self.phases[i]
        return self.load_start_ns + int(p.start_s * 1e9), self.load_start_ns + int(p.end_s * 1e9)

    def next_boundary(self, now: int, interval_ns: int) -> int:
        """The next interval end: a whole interval after the load start, or a phase boundary."""
        assert self.load_start_ns is not None
        k = (now - self.load_start_ns) // interval_ns + 1
        nxt = self.load_start_ns + k * interval_ns
        for i in range(len(self.phases)):
            _, end = self.bounds_ns(i)
            if now < end < nxt:
                nxt = end
        return nxt

    def current_name(self) -> str | None:
        if self.started and 0 <= self.index < len(self.phases):
            return self.phases[self.index].name
        return None

    def elapsed_s(self, now: int) -> float:
        return (now - self.load_start_ns) / 1e9 if self.load_start_ns is not None else 0.0

    def skip_to_drain(self, now: int, broken: str) -> Phase:
        """A search that broke on stage ``broken``: the stages after it are dropped, the drain starts now."""
        assert self.load_start_ns is not None
        self.stopping = True
        self.phases = stopped_plan(self.phases, broken, (now - self.load_start_ns) / 1e9)
        self.index = len(self.phases) - 1
        return self.phases[-1]


@dataclass
class ConnectTally:
    """How the connects went (for the connect phase's verdict)."""

    connected: int = 0
    failed: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    first_error: str | None = None


@dataclass
class Roster:
    """Every client of the run (churn's replacements appended), who sends, and who may leave next."""

    nicknames: Nicknames
    clients: list[ClientState]
    sender_ids: list[int]  # sender index -> client id
    churn_at: list[float]  # when replacements happen (seconds from the load start)
    churnable: deque[int]  # receivers that do not send and are no probes, oldest first: the next to leave
    tally: ConnectTally = field(default_factory=ConnectTally)
    errors: int = 0  # connect errors and disconnects without a close frame (the live view's count)

    @classmethod
    def of(cls, plan: RunPlan, nicknames: Nicknames, churn_at: list[float], probe_ids: frozenset[int]) -> Roster:
        n = plan.scenario.clients
        clients = [ClientState(cid=i, nickname=nicknames.of(i), role=plan.role(i)) for i in range(n)]
        churnable = deque(c.cid for c in clients if c.role == "receiver" and c.cid not in probe_ids)
        return cls(nicknames, clients, list(range(plan.scenario.n_senders)), churn_at, churnable)

    @property
    def n_senders(self) -> int:
        return len(self.sender_ids)

    def online(self) -> int:
        return sum(1 for c in self.clients if c.connected_ns and not c.closed_ns)

    def anyone_reading(self) -> bool:
        """Whether a client that reads (not a stalled one) is still connected."""
        return any(c.connected_ns and not c.closed_ns and c.role != "stalled" for c in self.clients)

    def replacement(self) -> ClientState:
        """A new receiver (churn): the next client id."""
        cid = len(self.clients)
        st = ClientState(cid=cid, nickname=self.nicknames.of(cid), role="receiver", connect_due_ns=_clock())
        self.clients.append(st)
        return st

    def missing_join_lines(self, acc: DeliveryAccounting) -> int:
        """Join lines (SPEC 7.1) of online receivers that an online sender has not seen yet."""
        online = np.array([st.connected_ns > 0 and st.closed_ns == 0 for st in self.clients])
        n = len(online)
        receivers = online & acc.is_receiver[:n]
        missing = 0
        for si, cid in enumerate(self.sender_ids):
            if not online[cid]:
                continue
            seen = (acc.obs[si, :n] >= 0) | acc.r_saw[si, :n]
            want = receivers.copy()
            want[cid] = False
            missing += int(np.count_nonzero(want & ~seen))
        return missing


@dataclass
class Sending:
    """What the senders do next: the open model's schedule, expanded a chunk ahead into ``pending``
    (``(due_ns, sender index, size)``), or the closed model's loop; each sender's next sequence number."""

    next_seq: list[int]
    pending: deque[tuple[int, int, int]] = field(default_factory=deque)
    schedule: OpenSchedule | None = None
    upto_s: float = 0.0  # the schedule is expanded up to here (seconds from the load start)
    timer: PreciseTimer | None = None
    closed: ClosedLoop | None = None


@dataclass
class SelfMeter:
    """The generator watching itself, per interval: CPU, event-loop lag, time in batches, the bottleneck."""

    bottleneck: BottleneckCheck
    cpu: CpuMeter = field(default_factory=CpuMeter)
    lag: LoopLagMonitor | None = None
    wait: RunQueueWait | None = None  # the loop thread's wait for a CPU (made on the loop's thread)
    ingest_s: float = 0.0  # wall time spent decoding and accounting batches since the last interval

    def interval_fields(self) -> dict[str, Any]:
        """The interval record's ``generator`` figures (and a new interval for each meter)."""
        cpu_s, cpu_pct = self.cpu.sample()
        batch_s, self.ingest_s = self.ingest_s, 0.0
        waited = self.wait.sample() if self.wait is not None else None
        return {
            "cpu_s": round(cpu_s, 4),
            "cpu_pct": round(cpu_pct, 1),
            "loop_lag_ms_max": self.lag.take_max_ms() if self.lag else 0.0,
            "batch_ms": round(batch_s * 1e3, 2),
            "open_fds": self.cpu.open_fds(),
            **(waited.fields() if waited is not None else {}),
        }


@dataclass
class Timers:
    """The timer handles and tasks the engine started on its loop, so that the teardown stops them all."""

    loop: asyncio.AbstractEventLoop | None = None
    handles: list[asyncio.TimerHandle] = field(default_factory=list)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    interval_end: asyncio.TimerHandle | None = None  # the one pending interval boundary's timer
    interval_end_ns: int | None = None  # when that boundary is (None: no boundary pending)

    def call_later(self, delay: float, fn: Callable[..., None], *args: Any) -> asyncio.TimerHandle:
        assert self.loop is not None
        return self.loop.call_later(delay, fn, *args)

    def at_ns(self, at_ns: int, fn: Callable[..., None], *args: Any) -> None:
        """``fn(*args)`` at ``at_ns`` on the run's clock (now if that has passed)."""
        self.handles.append(self.call_later(max((at_ns - _clock()) / 1e9, 0.0), fn, *args))

    def every(self, period: float, fn: Callable[[], None], until: asyncio.Event) -> None:
        """``fn()`` every ``period`` seconds until ``until`` is set."""

        def tick() -> None:
            if until.is_set():
                return
            fn()
            self.handles.append(self.call_later(period, tick))
            if len(self.handles) > 64:
                del self.handles[:32]

        self.handles.append(self.call_later(period, tick))

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        self.tasks.append(asyncio.ensure_future(coro))

    def set_interval_end(self, at_ns: int, fn: Callable[[int], None]) -> None:
        """The next interval boundary (replacing the pending one)."""
        self.take_interval_end()
        self.interval_end = self.call_later(max((at_ns - _clock()) / 1e9, 0.0), fn, at_ns)
        self.interval_end_ns = at_ns

    def take_interval_end(self) -> None:
        """The pending boundary is being cut (by its timer or ahead of it): its timer must not run again."""
        if self.interval_end is not None:
            self.interval_end.cancel()
        self.interval_end = None
        self.interval_end_ns = None

    def cancel(self) -> None:
        """Cancel every handle and task (the teardown then awaits the tasks)."""
        for h in self.handles:
            h.cancel()
        self.take_interval_end()
        for task in self.tasks:
            task.cancel()


@dataclass
class Output:
    """Where the run's records and events go: the results file and the live view's callback."""

    writer: ResultsWriter
    on_progress: Callable[[dict[str, Any]], None] | None = None
    intervals: int = 0  # interval records written (late supplements not counted)
