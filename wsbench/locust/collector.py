"""What one Locust process measures, as plain numbers over the core: no Locust, no sockets.

The reading greenlets call :meth:`Collector.on_texts` per socket read (a few list appends); every
``FLUSH_S`` (and at every interval boundary) :meth:`Collector.flush` decodes the whole batch with
:func:`wsbench.core.payload.decode_batch`, feeds :class:`wsbench.core.accounting.DeliveryAccounting`
and records latencies into the interval's HdrHistograms with
:func:`wsbench.core.histograms.record_many`, all vectorized. A delivery belongs to the interval in
which it was received.

In a distributed run each worker's collector sees only its own clients. What the master needs to
account for deliveries across workers (joins, leaves, join lines seen, sends) is kept in
:attr:`Collector.outbox` for the worker to ship; fan-out completion is shipped as per-message local
completions (:meth:`Collector.take_fanout_parts`) and completed on the master by
:class:`wsbench.locust.aggregate.FanoutMerger`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from wsbench.core import histograms, payload, socket_latency
from wsbench.core.accounting import DeliveryAccounting
from wsbench.core.fanout import FanoutTracker
from wsbench.locust.plan import RunPlan

JOIN_RE = re.compile(r"^~~~(.+)进入了聊天室~~~$", re.S)
HISTOGRAM_NAMES = ("latency", "latency_uncorrected", "fanout", "connect")
COUNTER_NAMES = (
    "sent",
    "delivered",
    "expected",
    "duplicated",
    "reordered",
    "connect_ok",
    "connect_errors",
    "closes",
    "errors",
)


@dataclass
class IntervalData:
    index: int
    histograms: dict[str, HdrHistogram] = field(
        default_factory=lambda: {name: histograms.new_histogram() for name in HISTOGRAM_NAMES}
    )
    counters: Counter[str] = field(default_factory=Counter)
    online_max: int = 0
    send_lag_us_max: int = 0


@dataclass(slots=True)
class Delivered:
    """New deliveries of one flush, for Locust's request events."""

    latency_ms: np.ndarray  # float64, from the intended send time
    length: np.ndarray  # int64, frame payload bytes


class Collector:
    """Measurements of the clients of one process. Times are microseconds after the run's epoch."""

    def __init__(self, plan: RunPlan, run_tag: str, *, distributed: bool) -> None:
        s = plan.scenario
        self.plan = plan
        self.run_tag = run_tag
        self.distributed = distributed
        self.interval_us = round(plan.interval_s * 1e6)
        self.acc = DeliveryAccounting(
            plan.clients,
            list(range(plan.senders)),
            plan.readers(),
            leave_margin_us=int(s.accounting.leave_margin * 1e6),
        )
        self.fanout = FanoutTracker(plan.senders, timeout_us=int(s.accounting.fanout_timeout * 1e6))
        self.load_start_us: int | None = None
        self.intervals: dict[int, IntervalData] = {}
        self.events: list[dict[str, Any]] = []
        self.close_codes: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.online: set[int] = set()
        self.local_clients: set[int] = set()
        self.clamped = 0
        # what the master replays into its own accounting (distributed runs)
        self.outbox: dict[str, list[tuple[int, ...]]] = {"joined": [], "left": [], "saw_join": [], "sent": []}
        self._fanout_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._texts: list[bytes] = []
        self._owner: list[int] = []
        self._time: list[int] = []
        self._count: list[int] = []
        # the probe receivers' frames (kernel stamps on the run's clock, us; -1: none)
        self._probe = socket_latency.ProbeFrames()
        self._probe_last: dict[int, int] = {}  # client -> index of its last probe frame in this batch
        self.probe_unstamped = 0  # new probe deliveries without a kernel stamp / with one (whole run)
        self.probe_stamped = 0

    # -- the hot path -------------------------------------------------------------------------------------
    def on_probe_text(self, client: int, text: bytes, recv_us: int, kernel_us: int, shared: bool) -> None:
        """One text frame of a probe receiver: ``shared`` when its stamp is the previous frame's (that
        frame's stamp was not its own: :mod:`wsbench.core.socket_latency`)."""
        pf = self._probe
        last = self._probe_last.get(client)
        if shared and last is not None:
            pf.own[last] = 0
        self._probe_last[client] = len(pf)
        pf.position.append(len(self._texts))
        pf.kernel_ns.append(kernel_us)  # already on the run's clock, in us
        pf.own.append(1)
        self.on_texts(client, [text], recv_us)

    def on_texts(self, client: int, texts: list[bytes], recv_us: int) -> None:
        self._texts.extend(texts)
        self._owner.append(client)
        self._time.append(recv_us)
        self._count.append(len(texts))

    # -- connection and send events -----------------------------------------------------------------------
    def interval(self, t_us: int) -> IntervalData:
        index = max(t_us, 0) // self.interval_us
        data = self.intervals.get(index)
        if data is None:
            data = self.intervals[index] = IntervalData(index)
        if len(self.online) > data.online_max:
            data.online_max = len(self.online)
        return data

    def connected(self, client: int, t_us: int, connect_us: int) -> None:
        self.local_clients.add(client)
        self.online.add(client)
        self.acc.joined(client, t_us)
        self.outbox["joined"].append((client, t_us))
        iv = self.interval(t_us)
        iv.counters["connect_ok"] += 1
        self.clamped += histograms.record_many(iv.histograms["connect"], [max(connect_us, 0)])

    def connect_failed(self, client: int, t_us: int, kind: str, detail: str, status: int | None) -> None:
        self.local_clients.add(client)
        self.interval(t_us).counters["connect_errors"] += 1
        self.errors[kind] += 1
        self.event(t_us, "error", client=client, code=status, detail=f"{kind}: {detail}", error=kind)

    def closed(self, client: int, t_us: int, code: int, reason: str, by_us: bool) -> None:
        if client in self.online:
            self.online.discard(client)
            self.acc.left(client, t_us)
            self.outbox["left"].append((client, t_us))
        if not by_us:
            self.interval(t_us).counters["closes"] += 1
            self.close_codes[str(code)] += 1
            role = "stalled" if self.plan.is_stalled(client) else None  # expected closes of slow consumers
            self.event(t_us, "close", client=client, code=code, reason=reason, role=role)

    def error(self, client: int | None, t_us: int, kind: str, detail: str) -> None:
        self.interval(t_us).counters["errors"] += 1
        self.errors[kind] += 1
        self.event(t_us, "error", client=client, detail=detail, error=kind)

    def event(self, t_us: int, kind: str, **fields: Any) -> None:
        self.events.append({"t_s": t_us / 1e6, "kind": kind, **{k: v for k, v in fields.items() if v is not None}})

    def sent(self, sender: int, seq: int, intended_us: int, actual_us: int) -> None:
        self.acc.sent(sender, seq, actual_us)
        self.outbox["sent"].append((sender, seq, intended_us, actual_us))
        if not self.distributed:
            self.fanout.sent(sender, seq, intended_us, self.acc.expected_receivers(sender))
        iv = self.interval(actual_us)
        iv.counters["sent"] += 1
        if actual_us - intended_us > iv.send_lag_us_max:
            iv.send_lag_us_max = actual_us - intended_us

    # -- the batch work -----------------------------------------------------------------------------------
    def flush(self) -> Delivered | None:
        """Account for everything received since the last flush."""
        if not self._texts:
            return None
        texts, owners, times, counts = self._texts, self._owner, self._time, self._count
        self._texts, self._owner, self._time, self._count = [], [], [], []
        probe = self._probe.take() if len(self._probe) else None
        self._probe_last.clear()
        counts_a = np.asarray(counts, dtype=np.int64)
        receivers = np.repeat(np.asarray(owners, dtype=np.int64), counts_a)
        recv_us = np.repeat(np.asarray(times, dtype=np.int64), counts_a)
        batch = payload.decode_batch(texts)
        valid = batch.valid
        if not valid.all():
            self._other_lines(
                [t for t, ok in zip(texts, valid.tolist(), strict=True) if not ok], receivers[~valid], recv_us[~valid]
            )
        holes_before = self._holes()
        result = self.acc.ingest(receivers[valid], batch.sender[valid], batch.seq[valid])
        new = result.new
        r_us = recv_us[valid][new]
        intended = batch.intended_us[valid][new]
        actual = batch.actual_us[valid][new]
        corrected = r_us - intended
        uncorrected = r_us - actual
        if not self.distributed:
            self.fanout.delivered(result.sender_index[new], batch.seq[valid][new], r_us)
        else:
            self._fanout_parts.append((result.sender_index[new], batch.seq[valid][new], r_us))
        index = recv_us // self.interval_us
        new_index = index[valid][new]
        dup_mask = np.zeros(len(texts), dtype=bool)
        dup_idx = np.flatnonzero(valid)[~new]
        dup_mask[dup_idx] = True
        for i in np.unique(index[valid]).tolist():
            iv = self.interval(i * self.interval_us)
            sel = new_index == i
            n_new = int(np.count_nonzero(sel))
            if n_new:
                self.clamped += histograms.record_many(iv.histograms["latency"], corrected[sel])
                self.clamped += histograms.record_many(iv.histograms["latency_uncorrected"], uncorrected[sel])
            iv.counters["delivered"] += n_new
            iv.counters["expected"] += n_new
            iv.counters["duplicated"] += int(np.count_nonzero(dup_mask & (index == i)))
        if probe is not None:
            self._record_probes(probe, valid, new, recv_us, index, batch.intended_us, batch.actual_us)
        opened = self._holes() - holes_before
        if result.reordered or opened:
            # a gap below the highest delivery is a loss so far (expected, not delivered); a late
            # delivery that fills one was expected already (its delivery counted above)
            last = self.interval(int(recv_us[-1]))
            last.counters["reordered"] += result.reordered
            last.counters["expected"] += opened
        lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))[valid][new]
        return Delivered(corrected / 1000.0, lengths)

    def _record_probes(
        self,
        probe: tuple[np.ndarray, np.ndarray, np.ndarray],
        valid: np.ndarray,
        new: np.ndarray,
        recv_us: np.ndarray,
        index: np.ndarray,
        intended_us: np.ndarray,
        actual_us: np.ndarray,
    ) -> None:
        position, kernel_us, own = probe
        new_full = np.zeros(len(valid), dtype=bool)
        new_full[np.flatnonzero(valid)] = new
        for i in np.unique(index[position]).tolist():
            sel = index[position] == i
            s = socket_latency.probe_samples(
                position[sel], kernel_us[sel], own[sel], new_full, recv_us, intended_us, actual_us
            )
            iv = self.interval(i * self.interval_us)
            for name, values in zip(
                socket_latency.HISTOGRAMS, (s.user_us, s.socket_us, s.delay_us, s.socket_uncorrected_us), strict=True
            ):
                h = iv.histograms.setdefault(name, histograms.new_histogram())
                self.clamped += histograms.record_many(h, values)
            iv.counters["probe_delivered"] += len(s.user_us)
            iv.counters["probe_stamped"] += len(s.socket_us)
            iv.counters["probe_coalesced"] += s.coalesced
            self.probe_unstamped += s.unstamped
            self.probe_stamped += len(s.socket_us) + s.coalesced

    def _holes(self) -> int:
        return sum(len(h) for h in self.acc.holes.values()) if self.acc.holes else 0

    def _other_lines(self, texts: list[bytes], receivers: np.ndarray, recv_us: np.ndarray) -> None:
        """Join lines feed the accounting's expected window; leave lines and others are not measured."""
        for text, receiver, t_us in zip(texts, receivers.tolist(), recv_us.tolist(), strict=True):
            line = text.decode("utf-8", "replace")
            m = JOIN_RE.match(line)
            if m:
                joined = self.plan.client_of_nickname(m.group(1), self.run_tag)
                if joined is not None:
                    self.acc.saw_join(receiver, joined, t_us)
                    self.outbox["saw_join"].append((receiver, joined, t_us))

    # -- fan-out ------------------------------------------------------------------------------------------
    def take_fanout_parts(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        parts, self._fanout_parts = self._fanout_parts, []
        return parts

    def collect_fanout(self, now_us: int) -> None:
        """Single process: fold completed fan-outs into the interval of their last receipt."""
        done = self.fanout.collect(now_us)
        if len(done.fanout_us):
            self._record_fanout(done.fanout_us, now_us)

    def _record_fanout(self, fanout_us: np.ndarray, now_us: int) -> None:
        iv = self.interval(now_us)
        self.clamped += histograms.record_many(iv.histograms["fanout"], fanout_us)

    # -- interval records ---------------------------------------------------------------------------------
    def take_intervals(self, upto_us: int | None, phase_of: Callable[[float], str]) -> list[dict[str, Any]]:
        """Interval records of intervals that ended by ``upto_us`` (all when ``None``), oldest first."""
        out = []
        for index in sorted(self.intervals):
            start = index * self.interval_us
            end = start + self.interval_us
            if upto_us is not None and end > upto_us:
                break
            data = self.intervals.pop(index)
            out.append(
                {
                    "index": index,
                    "start_s": start / 1e6,
                    "end_s": end / 1e6,
                    "phase": phase_of(start / 1e6),
                    "counters": {
                        name: int(data.counters.get(name, 0))
                        for name in COUNTER_NAMES + socket_latency.COUNTERS
                        if name in COUNTER_NAMES or name in data.counters
                    },
                    "clients_connected": max(data.online_max, len(self.online)),
                    "histograms": {name: histograms.encode(h) for name, h in data.histograms.items()},
                    "send_lag_ms_max": round(data.send_lag_us_max / 1000, 3),
                }
            )
        return out

    def take_events(self) -> list[dict[str, Any]]:
        events, self.events = self.events, []
        return events

    def take_outbox(self) -> dict[str, list[tuple[int, ...]]]:
        box = self.outbox
        self.outbox = {name: [] for name in box}
        return box
