"""The master's side of a Locust run: merge what the workers measured and write the results file.

Each Locust process (the single process of a local run, or every worker) ships *parts*
(:func:`pack_part`): its finished interval records (counters and HdrHistograms, written as they are
with ``"worker": id``: the results reader merges records of one index exactly), its events (close
codes, errors), what the global delivery accounting needs from it (joins, leaves, join lines seen,
sends; at the end its receipt state per (sender, receiver) pair), and per-message local fan-out
completions. Parts travel in Locust's ``report_to_master`` data and, at the end, in a ``wsbench_final``
message; in a local run the process hands them over directly.

The :class:`Aggregator` replays them into one :class:`~wsbench.core.accounting.DeliveryAccounting`
and one :class:`~wsbench.core.fanout.FanoutTracker` (the same core classes ``wsbench run`` uses), so
the footer's loss counts are computed exactly as for a single-process run, and keeps merged live
numbers for the web UI.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from wsbench.core import histograms
from wsbench.core.accounting import NEVER, DeliveryAccounting, Receipts
from wsbench.core.fanout import Completed, FanoutTracker
from wsbench.core.intervals import PhaseTotals
from wsbench.core.results import UNMEASURED_PHASES, ResultsWriter
from wsbench.core.search import stopped_plan
from wsbench.core.selfcheck import BottleneckCheck
from wsbench.locust.capacity import MasterSearch
from wsbench.locust.collector import Collector
from wsbench.locust.plan import RunPlan

#: the histograms the web UI shows
HISTOGRAM_NAMES = ("latency", "latency_uncorrected", "fanout", "connect")
#: the probe receivers' histograms shown live too (wsbench.core.socket_latency), when they have values
LIVE_PROBE_NAMES = ("latency_socket", "generator_delay", "latency_socket_uncorrected")
FINAL_AS_OF = 2**62  # a final part: nothing more will come from that process
LIVE_PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99_9", 99.9), ("p99_99", 99.99))


# -- packing numpy columns for Locust's msgpack channel ------------------------------------------------
def _pack(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, dtype=np.int64).tobytes()


def _unpack(b: bytes) -> np.ndarray:
    return np.frombuffer(b, dtype=np.int64)


def receipt_state(acc: DeliveryAccounting, clients: Iterable[int]) -> dict[str, Any]:
    """Per-pair receipt state of the receivers ``clients``, packed for Locust's msgpack channel."""
    r = acc.export_receipts(clients)
    return {
        "cols": _pack(r.receivers),
        "first": _pack(r.first.reshape(-1)),
        "highest": _pack(r.highest.reshape(-1)),
        "holes": {str(pid): holes for pid, holes in r.holes.items()},
        "delivered": r.delivered,
        "duplicated": r.duplicated,
        "reordered": r.reordered,
        "unknown": r.unknown,
    }


def unpack_receipts(state: dict[str, Any], senders: int) -> Receipts:
    """One process's :func:`receipt_state`, back to the core's :class:`Receipts`."""
    cols = _unpack(state["cols"])
    empty = np.empty((senders, 0), np.int64)
    return Receipts(
        receivers=cols,
        first=_unpack(state["first"]).reshape(senders, len(cols)) if len(cols) else empty,
        highest=_unpack(state["highest"]).reshape(senders, len(cols)) if len(cols) else empty,
        holes={int(pid): list(h) for pid, h in state["holes"].items()},
        delivered=int(state["delivered"]),
        duplicated=int(state["duplicated"]),
        reordered=int(state["reordered"]),
        unknown=int(state["unknown"]),
    )


def pack_part(
    collector: Collector,
    worker: str,
    intervals: list[dict[str, Any]],
    final: bool,
    as_of_us: int,
    receipts: bool = False,
) -> dict[str, Any]:
    """What one process ships to the master: everything it saw before ``as_of_us`` not shipped yet
    (intervals are taken by the caller, with generator data). Its receipt state comes with the final
    part and, with ``receipts``, with a verdict part (a capacity search's stage is due)."""
    box = collector.take_outbox()
    sent = np.asarray(box["sent"], dtype=np.int64).reshape(-1, 4)
    parts = collector.take_fanout_parts()
    fan = [_pack(np.concatenate([p[i] for p in parts])) for i in range(3)] if parts else [b"", b"", b""]
    part: dict[str, Any] = {
        "worker": worker,
        "final": final,
        "as_of_us": FINAL_AS_OF if final else as_of_us,
        "intervals": intervals,
        "events": collector.take_events(),
        "joined": box["joined"],
        "left": box["left"],
        "saw_join": box["saw_join"],
        "sent": _pack(sent.reshape(-1)),
        "fanout": fan,
        "online": len(collector.online),
        "close_codes": dict(collector.close_codes),
        "errors": dict(collector.errors),
        "clamped": collector.clamped,
    }
    if final or receipts:
        part["receipts"] = receipt_state(collector.acc, collector.local_clients)
    return part


# -- fan-out across processes -----------------------------------------------------------------------------
class FanoutMerger:
    """Fan-out completion from sends and deliveries reported by different processes, in any order.

    A message's expected receivers are the readers online when it was sent; a process's joins may
    reach the master after another process's sends, so sends wait until every process has reported
    past their send time (:meth:`advance`).
    """

    def __init__(self, acc: DeliveryAccounting, senders: int, timeout_us: int, interval_us: int = 1_000_000) -> None:
        self.acc = acc
        self.tracker = FanoutTracker(senders, timeout_us=timeout_us)
        self.interval_us = interval_us
        #: ``expected`` by interval index (of the intended send time), counted as ``wsbench run`` does:
        #: the readers online when the message was sent, but its sender
        self.expected_by_index: Counter[int] = Counter()
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._sends: list[np.ndarray] = []

    def sent(self, sends: np.ndarray) -> None:
        """Rows ``(sender, seq, intended_us, actual_us)``."""
        if len(sends):
            self._sends.append(sends)

    def advance(self, horizon_us: int) -> None:
        """Every process has reported everything before ``horizon_us``: count receivers of earlier sends."""
        if not self._sends:
            return
        sends = np.concatenate(self._sends)
        sends = sends[np.argsort(sends[:, 3], kind="stable")]
        ready = sends[:, 3] < horizon_us
        self._sends = [sends[~ready]] if not ready.all() else []
        sends = sends[ready]
        if not len(sends):
            return
        acc = self.acc
        readers = np.flatnonzero(acc.is_receiver[: acc.clients] & (acc.join_us >= 0))
        joins = acc.join_us[readers]
        leaves = acc.leave_us[readers]
        for sender, seq, intended, actual in sends.tolist():
            online = (joins <= actual) & (leaves > actual)
            expected = int(np.count_nonzero(online)) - int(bool(online[readers == sender].any()))
            self.tracker.sent(int(acc.sender_index[sender]), seq, intended, expected)
            self.expected_by_index[intended // self.interval_us] += expected
        self.delivered(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64))

    def delivered(self, sender_index: np.ndarray, seqs: np.ndarray, recv_us: np.ndarray) -> None:
        if len(seqs):
            self._pending.append((sender_index, seqs, recv_us))
        if not self._pending:
            return
        si = np.concatenate([p[0] for p in self._pending])
        sq = np.concatenate([p[1] for p in self._pending])
        tr = np.concatenate([p[2] for p in self._pending])
        known = (si >= 0) & (sq < self.tracker.n_sent[np.maximum(si, 0)])
        self.tracker.delivered(si[known], sq[known], tr[known])
        rest = ~known & (si >= 0)
        self._pending = [(si[rest], sq[rest], tr[rest])] if rest.any() else []

    def collect(self, now_us: int) -> Completed:
        return self.tracker.collect(now_us)

    @property
    def incomplete(self) -> int:
        return self.tracker.incomplete


# -- live numbers for the web UI ---------------------------------------------------------------------------
@dataclass
class Live:
    measured: dict[str, HdrHistogram] = field(
        default_factory=lambda: {name: histograms.new_histogram() for name in HISTOGRAM_NAMES + LIVE_PROBE_NAMES}
    )
    counters: Counter[str] = field(default_factory=Counter)
    close_codes: dict[str, dict[str, int]] = field(default_factory=dict)
    errors: dict[str, dict[str, int]] = field(default_factory=dict)
    online: dict[str, int] = field(default_factory=dict)
    phase: str = "connect"
    status: str = "running"
    accounting: dict[str, int] | None = None
    clock: dict[str, dict[str, Any]] = field(default_factory=dict)

    def fold(self, record: dict[str, Any]) -> None:
        """Counters of every phase; histograms of the measured phases (connect times of all)."""
        for name, value in record.get("counters", {}).items():
            self.counters[name] += value
        measured = record.get("phase") not in UNMEASURED_PHASES
        for name, text in record.get("histograms", {}).items():
            if name in self.measured and text and (measured or name == "connect"):
                h = histograms.decode(text)
                if h.get_total_count():
                    self.measured[name].add(h)


class Aggregator:
    """Merges parts from every process of a run, writes the results file, keeps live numbers."""

    def __init__(self, plan: RunPlan, writer: ResultsWriter, processes: int, master_generator: bool) -> None:
        s = plan.scenario
        self.plan = plan
        self.writer = writer
        self.processes = processes
        self.master_generator = master_generator
        self.acc = DeliveryAccounting(
            plan.clients,
            list(range(plan.senders)),
            plan.readers(),
            leave_margin_us=int(s.accounting.leave_margin * 1e6),
        )
        self.interval_us = round(plan.interval_s * 1e6)
        self.fanout = FanoutMerger(self.acc, plan.senders, int(s.accounting.fanout_timeout * 1e6), self.interval_us)
        self.bottleneck = BottleneckCheck(plan.interval_s)
        self._incomplete_by_index: Counter[int] = Counter()
        self.live = Live()
        self.server_samples: dict[int, dict[str, Any]] = {}
        self._server_attached: set[int] = set()
        self._fanout_by_index: dict[int, HdrHistogram] = {}
        self._master_generator: dict[int, dict[str, Any]] = {}
        self.finals: set[str] = set()
        self.as_of: dict[str, int] = {}
        self.load_start_s: float | None = None
        self.clamped: dict[str, int] = {}
        self._receipts: dict[str, Receipts] = {}  # per process: the receipts merged last
        #: the capacity search (a scenario with ``search:``), judged here on the merged numbers
        self.search = MasterSearch(s.search, plan.phases, self.interval_us) if s.search is not None else None

    def phase_of(self, t_s: float) -> str:
        return self.plan.phase_name(t_s, self.load_start_s)

    def absorb(self, part: dict[str, Any]) -> None:
        worker = str(part["worker"])
        for client, t in part["joined"]:
            self.acc.joined(int(client), int(t))
        for client, t in part["left"]:
            self.acc.left(int(client), int(t))
        for observer, joined, t in part["saw_join"]:
            self.acc.saw_join(int(observer), int(joined), int(t))
        sends = _unpack(part["sent"]).reshape(-1, 4)
        for sender, seq, _intended, actual in sends.tolist():
            self.acc.sent(sender, seq, actual)
        self.fanout.sent(sends)
        si, sq, tr = (_unpack(b) for b in part["fanout"])
        self.fanout.delivered(si, sq, tr)
        for record in part["intervals"]:
            index = int(record["index"])
            if index in self.server_samples and index not in self._server_attached:
                record["server"] = self.server_samples[index]
                self._server_attached.add(index)
            self.emit({**record, "worker": worker})
        for event in part["events"]:
            self.writer.event(**event)
        self.live.close_codes[worker] = part["close_codes"]
        self.live.errors[worker] = part["errors"]
        self.live.online[worker] = int(part["online"])
        self.clamped[worker] = int(part.get("clamped", 0))
        if "receipts" in part:
            receipts = unpack_receipts(part["receipts"], len(self.acc.senders))
            self.acc.merge_receipts(receipts, replacing=self._receipts.get(worker))
            self._receipts[worker] = receipts
            if self.search is not None:
                self.search.receipts_as_of[worker] = int(part["as_of_us"])
        if part.get("final", "receipts" in part):
            self.finals.add(worker)
        self.as_of[worker] = max(self.as_of.get(worker, 0), int(part["as_of_us"]))
        if len(self.as_of) >= self.processes:
            self.fanout.advance(min(self.as_of.values()))

    def emit(self, record: dict[str, Any]) -> None:
        """Write one record (``"worker"`` set): a process's, or the master's own. With a capacity search
        a record after the stage awaiting its verdict waits for it (:mod:`wsbench.locust.capacity`)."""
        search = self.search
        if search is not None and search.holds(record):
            search.held.append(record)
            return
        self._write(record)

    def release_held(self, everything: bool = False) -> None:
        """Write the held records that no longer wait (a verdict was taken; ``everything``: the run is over)."""
        if self.search is not None:
            for record in self.search.release(everything):
                self._write(record)

    def _write(self, record: dict[str, Any]) -> None:
        worker = str(record["worker"])
        if self.search is not None:
            self.search.label(record)
            self.search.fold(record)
        self.writer.interval(record)
        if worker == "master":
            return
        self.live.fold(record)
        if not record.get("late"):
            warning = self.bottleneck.check(record, worker)  # a saturated worker is named
            if warning is not None:
                self.writer.event("warning", warning.pop("t_s"), **warning)

    # -- the capacity search ------------------------------------------------------------------------------
    def judge(self, now_us: int, final: bool = False) -> tuple[str, float] | None:
        """Judge every stage whose verdict is due and whose numbers are all in (:mod:`wsbench.locust.capacity`)
        with the core's rule, on the merged accounting and records, and write its ``threshold`` event, as
        ``wsbench run`` does. ``final``: the run is over. Returns ``(stage, at_s)`` when a broken stage
        stops the search: the plan now drains from ``at_s`` (seconds after the load start), and the
        caller stops every process's sends."""
        search = self.search
        if search is None or self.load_start_s is None:
            return None
        while (phase := search.ready(self.processes, now_us, final)) is not None:
            self.collect_fanout(now_us)  # fan-outs complete by now, into the stage's master records
            self.write_master_records((now_us // self.interval_us) * self.interval_us)
            t0, t1 = search.bounds_us(phase)
            totals = self.acc.totals(t0, t1)  # a message of the stage not delivered by now is lost
            verdict = search.core.judge(phase, totals, search.totals.get(phase.name, PhaseTotals()))
            if verdict is None:
                break
            self.writer.event("threshold", now_us / 1e6, **verdict.event_fields())
            stopped = None
            if search.core.stopping and not final:
                at_s = now_us / 1e6 - self.load_start_s
                self.plan.phases = stopped_plan(self.plan.phases, phase.name, at_s)
                search.stop(phase, self.plan.phases)
                drain = self.plan.phases[-1].name
                self.writer.event(
                    "phase", now_us / 1e6, name=drain, phase_kind="drain", detail=search.core.stop_reason(verdict)
                )
                stopped = (phase.name, at_s)
            self.release_held()
            if stopped is not None:
                return stopped
        return None

    def master_interval(self, index: int, generator: dict[str, Any] | None) -> None:
        """The master process's own CPU for an interval (distributed runs: it merges and writes)."""
        if generator is not None:
            self._master_generator[index] = generator

    def collect_fanout(self, now_us: int, give_up_all: bool = False) -> None:
        """Record fan-outs completed by now in the current interval (``give_up_all``: the run is over)."""
        if give_up_all:
            self.fanout.advance(FINAL_AS_OF)
        done = self.fanout.collect(now_us + (10**15 if give_up_all else 0))
        values = done.fanout_us
        if len(values) and done.intended_us is not None:
            # a fan-out belongs to the interval of its message's intended send time (as in `wsbench run`)
            index_of = done.intended_us // self.interval_us
            for index in np.unique(index_of).tolist():
                part = values[index_of == index]
                h = self._fanout_by_index.setdefault(index, histograms.new_histogram())
                histograms.record_many(h, np.maximum(part, 0))
                if self.phase_of(index * self.interval_us / 1e6) not in UNMEASURED_PHASES:
                    histograms.record_many(self.live.measured["fanout"], np.maximum(part, 0))
        if done.expired_intended_us is not None and len(done.expired_intended_us):
            self._incomplete_by_index.update((done.expired_intended_us // self.interval_us).tolist())

    def write_master_records(self, upto_us: int | None) -> None:
        """Fan-out histograms (completed here, from all processes' deliveries) and the master's CPU."""
        expected = self.fanout.expected_by_index
        incomplete = self._incomplete_by_index
        indexes = sorted(set(self._fanout_by_index) | set(self._master_generator) | set(expected) | set(incomplete))
        for index in indexes:
            start = index * self.interval_us
            if upto_us is not None and start + self.interval_us > upto_us:
                break
            fan = self._fanout_by_index.pop(index, None)
            gen = self._master_generator.pop(index, None)
            counters = {"expected": expected.pop(index, 0)}
            if index in incomplete:
                counters["fanout_incomplete"] = incomplete.pop(index)
            self.live.counters["expected"] += counters["expected"]
            record: dict[str, Any] = {
                "index": index,
                "start_s": start / 1e6,
                "end_s": (start + self.interval_us) / 1e6,
                "phase": self.phase_of(start / 1e6),
                "counters": counters,
                "clients_connected": 0,
                "histograms": {"fanout": histograms.encode(fan)} if fan is not None else {},
                "worker": "master",
            }
            if gen is not None and self.master_generator:
                record["generator"] = gen
            self.emit(record)

    # -- the web UI's rows --------------------------------------------------------------------------------
    def live_view(self) -> dict[str, Any]:
        rows = []
        labels = {
            "latency": "broadcast latency (from intended send)",
            "latency_uncorrected": "broadcast latency (from actual send)",
            "fanout": "fan-out completion",
            "latency_socket": "latency at the socket (probe receivers, kernel stamp)",
            "generator_delay": "generator's own delay (probes: user space - kernel stamp)",
            "latency_socket_uncorrected": "latency at the socket, from the actual send (probes)",
            "connect": "connect (login + handshake), all phases",
        }
        for name in HISTOGRAM_NAMES + LIVE_PROBE_NAMES:
            h = self.live.measured[name]
            if name in LIVE_PROBE_NAMES and not h.get_total_count():
                continue
            row: dict[str, Any] = {"name": labels[name], "count": h.get_total_count()}
            for key, p in LIVE_PERCENTILES:
                row[key] = f"{h.get_value_at_percentile(p) / 1000:.2f}" if h.get_total_count() else ""
            row["max"] = f"{h.get_max_value() / 1000:.2f}" if h.get_total_count() else ""
            rows.append(row)
        c = self.live.counters
        lost_so_far = int(c["expected"] - c["delivered"])
        closes: Counter[str] = Counter()
        for codes in self.live.close_codes.values():
            closes.update(codes)
        errors: Counter[str] = Counter()
        for errs in self.live.errors.values():
            errors.update(errs)
        delivery = [
            {"name": "phase", "value": self.live.phase},
            {"name": "status", "value": self.live.status},
            {"name": "clients online", "value": sum(self.live.online.values())},
            {"name": "messages sent", "value": c["sent"]},
            {"name": "deliveries", "value": c["delivered"]},
            {"name": "duplicated", "value": c["duplicated"]},
            {"name": "reordered", "value": c["reordered"]},
            {"name": "not delivered yet (expected at send time - delivered)", "value": lost_so_far},
            {"name": "connect errors", "value": c["connect_errors"]},
        ]
        if self.live.accounting is not None:
            a = self.live.accounting
            delivery += [
                {"name": "final: expected", "value": a["expected"]},
                {"name": "final: delivered", "value": a["delivered"]},
                {"name": "final: lost", "value": a["lost"]},
                {"name": "final: pairs with loss", "value": a["pairs_with_loss"]},
            ]
        if self.search is not None:  # the capacity search's verdicts so far
            for v in self.search.core.verdicts:
                delivery.append({"name": f"search: stage {v.stage}", "value": v.detail})
        for code, n in sorted(closes.items()):
            delivery.append({"name": f"close code {code}", "value": n})
        for kind, n in sorted(errors.items()):
            delivery.append({"name": f"errors: {kind}", "value": n})
        for worker, clock in sorted(self.live.clock.items()):
            delivery.append(
                {"name": f"clock {worker}", "value": f"{clock['offset_ms']:+.3f} ms ± {clock['bound_ms']:.3f} ms"}
            )
        return {"latency": rows, "delivery": delivery}

    # -- the end ---------------------------------------------------------------------------------------
    def totals(self) -> dict[str, int]:
        return self.acc.totals().as_dict()


def leave_pending(acc: DeliveryAccounting, t_us: int) -> None:
    """Mark every reader still online as left at ``t_us`` (a run cut short)."""
    online = np.flatnonzero((acc.join_us >= 0) & (acc.leave_us == NEVER))
    for c in online.tolist():
        acc.left(c, t_us)
