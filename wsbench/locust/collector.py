"""What one Locust process measures: its clients' events fed to the core's recorder (no Locust, no sockets).

The reading greenlets call :meth:`Collector.on_texts` per socket read (a few list appends); every
``FLUSH_S`` the process calls :meth:`Collector.flush`, which hands the whole batch to the same
:class:`wsbench.core.recorder.Recorder` that ``wsbench run`` feeds, so a delivery means the same in
both drivers: it belongs to the interval of its message's intended send time.

Intervals are the epoch's grid (index ``k`` covers ``[k, k+1)`` intervals after the epoch), the same in
every process, so the master merges the workers' records of one index exactly. Each process sees only
its own clients: what the master needs to account across processes (joins, leaves, join lines seen,
sends) is in the recorder's outbox, and deliveries for fan-out completion in its fan-out parts; the
master (:mod:`wsbench.locust.aggregate`) counts ``expected`` at send time and completes fan-outs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from wsbench.core import histograms, socket_latency
from wsbench.core.accounting import DeliveryAccounting
from wsbench.core.intervals import COUNTER_NAMES as COUNTER_NAMES
from wsbench.core.intervals import HISTOGRAM_NAMES as HISTOGRAM_NAMES
from wsbench.core.plan import RunPlan
from wsbench.core.recorder import Delivered, Recorder

HOLD_S = 1.0  # an interval's record is shipped this long after it ended (a search: its grace; late ones follow)


class Collector:
    """Measurements of the clients of one process. Times are microseconds after the run's epoch."""

    def __init__(self, plan: RunPlan, run_tag: str, *, distributed: bool) -> None:
        s = plan.scenario
        self.plan = plan
        self.run_tag = run_tag
        self.distributed = distributed
        self.interval_us = round(plan.interval_s * 1e6)
        self.acc = DeliveryAccounting(
            plan.clients, list(range(plan.senders)), plan.readers(), int(s.accounting.leave_margin * 1e6)
        )
        self.rec = Recorder(
            self.acc,
            plan.nicknames(run_tag, plan.clients),
            hold_us=int((float(s.search.grace) if s.search is not None else HOLD_S) * 1e6),
            fanout_timeout_us=int(s.accounting.fanout_timeout * 1e6),
            local_completion=not distributed,
        )
        self.phase_of: Callable[[float], str] = lambda t_s: "connect"
        self.events: list[dict[str, Any]] = []
        self.close_codes: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.online: set[int] = set()
        self.local_clients: set[int] = set()
        self._online_max = 0
        self._texts: list[bytes] = []
        self._owner: list[int] = []
        self._time: list[int] = []
        self._count: list[int] = []
        # the probe receivers' frames (kernel stamps on the run's clock, us; -1: none)
        self._probe = socket_latency.ProbeFrames()
        self._probe_last: dict[int, int] = {}  # client -> index of its last probe frame in this batch
        self.probe_unstamped = 0  # new probe deliveries without a kernel stamp / with one (whole run)
        self.probe_stamped = 0

    @property
    def clamped(self) -> int:
        return self.rec.latency_above_ceiling

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

    # -- the grid -------------------------------------------------------------------------------------------
    def advance(self, t_us: int) -> None:
        """Cut every interval boundary up to ``t_us``."""
        rec = self.rec
        nxt = (rec.current_index + 1) * self.interval_us
        while nxt <= t_us:
            info = {"clients_connected": max(self._online_max, len(self.online))}
            rec.cut(nxt, self.phase_of(nxt / 1e6), index=rec.current_index + 1, info=info)
            self._online_max = len(self.online)
            nxt += self.interval_us
        if len(self.online) > self._online_max:
            self._online_max = len(self.online)

    # -- connection and send events -----------------------------------------------------------------------
    def connected(self, client: int, t_us: int, connect_us: int, handshake_us: int | None = None) -> None:
        """``connect_us`` from the user's start (its scheduled connect), ``handshake_us`` login + handshake."""
        self.advance(t_us)
        self.local_clients.add(client)
        self.online.add(client)
        self.rec.connected(client, t_us, connect_us, connect_us if handshake_us is None else handshake_us)
        self.advance(t_us)

    def connect_failed(self, client: int, t_us: int, kind: str, detail: str, status: int | None) -> None:
        self.advance(t_us)
        self.local_clients.add(client)
        self.rec.connect_failed(t_us)
        self.errors[kind] += 1
        self.event(t_us, "error", client=client, code=status, detail=f"{kind}: {detail}", error=kind)

    def closed(self, client: int, t_us: int, code: int, reason: str, by_us: bool) -> None:
        self.advance(t_us)
        if client in self.online:
            self.online.discard(client)
            self.rec.left(client, t_us)
        if not by_us:
            self.rec.count("closes", t_us)
            self.close_codes[str(code)] += 1
            role = "stalled" if self.plan.is_stalled(client) else None  # expected closes of slow consumers
            self.event(t_us, "close", client=client, code=code, reason=reason, role=role)

    def error(self, client: int | None, t_us: int, kind: str, detail: str) -> None:
        self.advance(t_us)
        self.rec.count("errors", t_us)
        self.errors[kind] += 1
        self.event(t_us, "error", client=client, detail=detail, error=kind)

    def event(self, t_us: int, kind: str, **fields: Any) -> None:
        self.events.append({"t_s": t_us / 1e6, "kind": kind, **{k: v for k, v in fields.items() if v is not None}})

    def sent(self, sender: int, seq: int, intended_us: int, actual_us: int) -> None:
        self.advance(actual_us)
        self.rec.sent(sender, seq, intended_us, actual_us)

    def send_skipped(self, sender: int, intended_us: int) -> None:
        self.rec.send_skipped(sender, intended_us)

    # -- the batch work -----------------------------------------------------------------------------------
    def flush(self, now_us: int | None = None) -> Delivered | None:
        """Account for everything received since the last flush."""
        if now_us is not None:
            self.advance(now_us)
        if not self._texts:
            return None
        texts, owners, times, counts = self._texts, self._owner, self._time, self._count
        self._texts, self._owner, self._time, self._count = [], [], [], []
        probe = self._probe.take() if len(self._probe) else None
        self._probe_last.clear()
        counts_a = np.asarray(counts, dtype=np.int64)
        receivers = np.repeat(np.asarray(owners, dtype=np.int64), counts_a)
        recv_us = np.repeat(np.asarray(times, dtype=np.int64), counts_a)
        if now_us is None:
            self.advance(int(recv_us.max()))
        delivered = self.rec.ingest(texts, recv_us, receivers, delivered=True)
        if probe is not None:  # by their messages' intended send time, like every delivery (issue 13)
            unstamped, stamped = socket_latency.record_batch(self.rec, probe, recv_us)
            self.probe_unstamped += unstamped
            self.probe_stamped += stamped
        return delivered

    # -- fan-out (a single process completes its own) ---------------------------------------------------------
    def take_fanout_parts(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        return self.rec.take_fanout_parts()

    def collect_fanout(self, now_us: int) -> None:
        self.rec.collect_fanout(now_us)

    # -- records ------------------------------------------------------------------------------------------
    def take_records(self, now_us: int, final: bool = False) -> list[dict[str, Any]]:
        """Interval records final by ``now_us`` (all when ``final``), histograms encoded, oldest first."""
        self.advance(now_us)
        out = []
        for record in self.rec.take_records(now_us, final=final):
            item: dict[str, Any] = dict(record)
            item["histograms"] = {name: histograms.encode(h) for name, h in record.get("histograms", {}).items()}
            out.append(item)
        return out

    def take_events(self) -> list[dict[str, Any]]:
        events, self.events = self.events, []
        return events + [dict(e) for e in self.rec.take_events()]

    def take_outbox(self) -> dict[str, list[tuple[int, ...]]]:
        return self.rec.take_outbox()
