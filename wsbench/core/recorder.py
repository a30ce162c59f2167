"""The one measuring pipeline of both drivers: frames in, typed interval records out (sans I/O).

A driver moves bytes and keeps time; everything else is here. It feeds a :class:`Recorder` with

* batches of received text frames: ``ingest(frames, recv_us, receivers)`` (bytes, receive time in
  microseconds after the run's epoch, receiving client id), decoded and accounted in one vectorized
  pass (:func:`wsbench.core.payload.decode_batch`, :class:`~wsbench.core.accounting.DeliveryAccounting`);
* what its clients did: ``connected``, ``connect_failed``, ``left``, ``sent``, ``send_skipped``, ``count``;
* interval boundaries: ``cut(t_us, phase)`` closes the current interval and opens the next;

and takes back interval records (``take_records``) and events (``take_events``) to write.

Which interval a number belongs to
----------------------------------
A delivery belongs to the interval (and so to the phase and stage) of its message's **intended send
time**, wherever it arrives (wrk2, vegeta): a warm-up message that arrives during the first stage is a
warm-up delivery, a stage's late deliveries are that stage's, and ``delivered``, ``duplicated``,
``reordered``, the latency and fan-out histograms and ``expected`` of an interval are those of the
messages intended in it. What is not about a message (connects, closes, errors, join and leave lines,
frames without a trailer, deliveries back to their sender, the generator's own figures) belongs to the
interval in which it happened.

When a record is final: an interval's record is taken ``hold_us`` after the interval ended, later
deliveries of its messages come in a late supplement (:mod:`wsbench.core.intervals`, which keeps the
intervals and takes their records).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np

from wsbench.core import histograms, payload
from wsbench.core.accounting import DeliveryAccounting
from wsbench.core.chat import JOIN_SUFFIX, LEAVE_SUFFIX, Nicknames
from wsbench.core.fanout import Completed, FanoutTracker
from wsbench.core.intervals import IntervalRecord, Intervals, PhaseTotals

#: frames without a wsbench trailer described in warnings (the rest are only counted)
DESCRIBED_FRAMES = 5


#: a trailer's send time this far after its receipt cannot be this run's message (clocks: one in ``wsbench run``;
#: Locust workers on other hosts are bridged by round trips to within a few ms, see ``wsbench.core.stamps``)
CAUSALITY_SLACK_US = 50_000


class Event(TypedDict, total=False):
    """An ``event`` record's fields (``t_s``, ``kind`` and the kind's own)."""

    t_s: float
    kind: str
    warning: str
    error: str
    client: int
    detail: str


@dataclass(slots=True)
class Delivered:
    """New deliveries of one batch (Locust fires a request event per delivery)."""

    latency_ms: np.ndarray  # float64, from the intended send time
    length: np.ndarray  # int64, frame payload bytes


@dataclass(slots=True)
class BatchView:
    """How the last batch was read, for a driver's own extra measurements (probe receivers)."""

    valid: np.ndarray  # bool, per frame: it carries a wsbench trailer
    new: np.ndarray  # bool, per valid frame: a first receipt
    intended_us: np.ndarray  # int64, per frame (meaningless where not valid)
    actual_us: np.ndarray


class Recorder:
    """The measurement of one process's clients (all of them for ``wsbench run``, a worker's for Locust).

    ``local_completion``: this process sees every delivery (``wsbench run``), so it counts ``expected``
    at send time and completes fan-outs itself; otherwise (Locust) the master does both from what
    :attr:`outbox` and :meth:`take_fanout_parts` ship.
    """

    def __init__(
        self,
        acc: DeliveryAccounting,
        nicknames: Nicknames,
        *,
        hold_us: int,
        fanout_timeout_us: int,
        local_completion: bool,
        first_index: int = 0,
        start_us: int = 0,
        phase: str = "connect",
    ) -> None:
        self.acc = acc
        self.nicknames = nicknames
        self.local = local_completion
        self.fan = FanoutTracker(max(len(acc.senders), 1), timeout_us=fanout_timeout_us) if local_completion else None
        self.intervals = Intervals(hold_us=hold_us, first_index=first_index, start_us=start_us, phase=phase)
        self.events: list[Event] = []
        self.outbox: dict[str, list[tuple[int, ...]]] = {"joined": [], "left": [], "saw_join": [], "sent": []}
        self._fanout_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._warned: set[str] = set()
        self.described_frames = 0
        self.latency_above_ceiling = 0
        self.last_batch: BatchView | None = None

    # -- intervals (kept by self.intervals: wsbench.core.intervals.Intervals) -----------------------------
    @property
    def phases(self) -> dict[str, PhaseTotals]:
        """The totals of every phase, from the records taken so far."""
        return self.intervals.phases

    @property
    def current_index(self) -> int:
        return self.intervals.current_index

    @property
    def current_phase(self) -> str:
        return self.intervals.current_phase

    @property
    def current_start_us(self) -> int:
        return self.intervals.current_start_us

    def set_phase(self, phase: str) -> None:
        """The current interval belongs to ``phase`` (:meth:`Intervals.set_phase`)."""
        self.intervals.set_phase(phase)

    def relabel_open(self, phase: str) -> None:
        """Every interval not taken yet after the last finished phase's now belongs to ``phase``
        (:meth:`Intervals.relabel_open`: a capacity search that stopped)."""
        self.intervals.relabel_open(phase)

    def cut(self, t_us: int, phase: str, index: int | None = None, info: dict[str, Any] | None = None) -> None:
        """Close the current interval at ``t_us``, open the next one in ``phase`` (:meth:`Intervals.cut`: a
        driver cuts every boundary up to ``t`` before it records anything at ``t``)."""
        self.intervals.cut(t_us, phase, index, info)

    def group_by_interval(self, t_us: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """``(a time in the interval, mask)`` per interval the times ``t_us`` fall in."""
        return self.intervals.group_by_interval(t_us)

    def record_values(self, name: str, t_us: int, values_us: np.ndarray) -> None:
        """A driver's own histogram ``name`` (e.g. the probes'), in the interval of ``t_us``."""
        if len(values_us):
            self.intervals.at_time(t_us).pending.setdefault(name, []).append(np.asarray(values_us, dtype=np.int64))

    def count(self, name: str, t_us: int, n: int = 1) -> None:
        self.intervals.at_time(t_us).counters[name] += n

    def warn_once(self, kind: str, t_us: int, detail: str, **fields: Any) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            self.event(t_us, "warning", warning=kind, detail=detail, **fields)

    def event(self, t_us: int, kind: str, **fields: Any) -> None:
        self.events.append({"t_s": t_us / 1e6, "kind": kind, **{k: v for k, v in fields.items() if v is not None}})  # type: ignore[typeddict-item]

    # -- clients ---------------------------------------------------------------------------------------
    def connected(self, client: int, t_us: int, connect_us: int, handshake_us: int) -> None:
        """``connect_us``: from the client's scheduled connect time; ``handshake_us``: login + handshake."""
        self.acc.joined(client, t_us)
        self.outbox["joined"].append((client, t_us))
        data = self.intervals.at_time(t_us)
        data.counters["connect_ok"] += 1
        histograms.record_many(data.histogram("connect"), [max(connect_us, 1)])
        histograms.record_many(data.histogram("connect_handshake"), [max(handshake_us, 1)])

    def connect_failed(self, t_us: int) -> None:
        data = self.intervals.at_time(t_us)
        data.counters["connect_errors"] += 1
        data.counters["errors"] += 1

    def left(self, client: int, t_us: int) -> None:
        if self.acc.online(client):
            self.acc.left(client, t_us)
            self.outbox["left"].append((client, t_us))

    # -- sends -----------------------------------------------------------------------------------------
    def sent(self, sender: int, seq: int, intended_us: int, actual_us: int) -> None:
        """Message ``seq`` of client ``sender`` went out at ``actual_us`` (intended ``intended_us``)."""
        acc = self.acc
        acc.sent(sender, seq, actual_us)
        data = self.intervals.of_message(intended_us)
        c = data.counters
        c["sent"] += 1
        lag = actual_us - intended_us
        data.send_lag.add(lag)
        if lag > data.send_lag_us_max:
            data.send_lag_us_max = lag
        if self.fan is not None:
            expected = acc.expected_receivers(sender)
            self.fan.sent(int(acc.sender_index[sender]), seq, intended_us, expected)
            c["expected"] += expected
        else:
            self.outbox["sent"].append((sender, seq, intended_us, actual_us))

    def send_skipped(self, sender: int, intended_us: int) -> None:
        """A scheduled message of a sender that was no longer connected."""
        self.count("send_skipped", intended_us)
        self.warn_once(
            "send_skipped",
            intended_us,
            f"scheduled messages were not sent: sender {sender} was no longer connected "
            "(counted as send_skipped, not as sent or lost)",
        )

    # -- receipt ---------------------------------------------------------------------------------------
    def ingest(
        self, frames: list[bytes], recv_us: np.ndarray, receivers: np.ndarray, *, delivered: bool = False
    ) -> Delivered | None:
        """A batch of text frames: ``recv_us`` and ``receivers`` per frame, in arrival order.

        ``delivered``: return the new deliveries' latencies and lengths (Locust's request events; it
        costs a pass over the frames, which ``wsbench run`` does not pay)."""
        self.last_batch = None
        if not frames:
            return None
        batch = payload.decode_batch(frames)
        valid = batch.valid
        others = ~valid
        never = self._never_sent(batch, recv_us)
        if never is not None:  # replayed from another run, or forged: no delivery of this run's
            self._count_never_sent(never, receivers, recv_us)
            valid = valid & ~never
        if not valid.all():
            if others.any():
                self._other_frames(frames, np.flatnonzero(others), receivers, recv_us)
            receivers, recv_us = receivers[valid], recv_us[valid]
            senders, seqs = batch.sender[valid], batch.seq[valid]
            intended, actual = batch.intended_us[valid], batch.actual_us[valid]
        else:
            senders, seqs, intended, actual = batch.sender, batch.seq, batch.intended_us, batch.actual_us
        if len(seqs) == 0:
            return None
        res = self.acc.ingest(receivers, senders, seqs)
        self.last_batch = BatchView(valid, res.new, batch.intended_us, batch.actual_us)
        if res.unknown:
            self._uncounted(res.counted, receivers, senders, recv_us)
        new = res.new
        n_new = res.delivered
        all_new = n_new == len(new)
        ceiling = 0
        for data, sel in self.intervals.of_messages(intended):
            c = data.counters
            if sel is None:
                got = new if not all_new else None
                r_us, i_us, a_us = (
                    (recv_us, intended, actual) if got is None else (recv_us[got], intended[got], actual[got])
                )
                dup = res.duplicated
                reord = res.reordered
            else:
                got = sel & new
                r_us, i_us, a_us = recv_us[got], intended[got], actual[got]
                dup = int(np.count_nonzero(sel & res.counted & ~new)) if res.duplicated else 0
                reord = int(np.count_nonzero(sel & res.reordered_mask)) if res.reordered else 0
            if len(r_us):
                c["delivered"] += len(r_us)
                corrected = np.maximum(r_us - i_us, 0)
                ceiling += int(np.count_nonzero(corrected > histograms.HIGHEST_US))
                histograms.record_many(data.histogram("latency"), corrected)
                histograms.record_many(data.histogram("latency_uncorrected"), np.maximum(r_us - a_us, 0))
            if dup:
                c["duplicated"] += dup
            if reord:
                c["reordered"] += reord
            if ceiling:
                c["latency_above_ceiling"] += ceiling
                self._ceiling(ceiling, int(recv_us[-1]))
                ceiling = 0
        if n_new:
            if all_new:
                si, sq, r_new = res.sender_index, seqs, recv_us
            else:
                si, sq, r_new = res.sender_index[new], seqs[new], recv_us[new]
            if self.fan is not None:
                self.fan.delivered(si, sq, r_new)
            else:
                self._fanout_parts.append((si, sq, r_new))
        if not delivered:
            return None
        lengths = np.fromiter(map(len, frames), np.int64, count=len(frames))
        if not valid.all():
            lengths = lengths[valid]
        i_new, r_all = (intended, recv_us) if all_new else (intended[new], recv_us[new])
        return Delivered((r_all - i_new) / 1000.0, lengths if all_new else lengths[new])

    def _never_sent(self, batch: payload.DecodedBatch, recv_us: np.ndarray) -> np.ndarray | None:
        """Per frame: a valid trailer of a message this run never sent; ``None`` when there is none (the
        common case). Such a frame was replayed from another run (a server that keeps a history) or forged.

        * *Received before it was sent*: its trailer's actual send time is more than
          :data:`CAUSALITY_SLACK_US` after its receipt (both on the run's clock). Both drivers.
        * *Ahead of its sender*: with every send known here (``local_completion``, ``wsbench run``: a send is
          recorded before its frame is written), a sequence number its sender has not reached. A Locust
          worker does not know the other workers' sends, so a replay whose send times lie in the past of
          this run is counted as it arrives there."""
        valid = batch.valid
        never = valid & (batch.actual_us > recv_us + CAUSALITY_SLACK_US)
        if self.fan is not None:
            senders, index = batch.sender, self.acc.sender_index
            known = valid & (senders >= 0) & (senders < len(index))
            si = np.where(known, index[np.where(known, senders, 0)], -1)
            never |= (si >= 0) & (batch.seq >= self.fan.n_sent[np.maximum(si, 0)])
        return never if never.any() else None

    def _count_never_sent(self, never: np.ndarray, receivers: np.ndarray, recv_us: np.ndarray) -> None:
        n = int(np.count_nonzero(never))
        first = int(np.flatnonzero(never)[0])
        t = int(recv_us[first])
        self.count("never_sent", t, n)
        self.warn_once(
            "never_sent",
            t,
            f"client {int(receivers[first])} received a message its sender never sent (a wsbench trailer sent "
            "after it was received, or with a sequence number the sender had not reached: replayed from another "
            "run, or forged); not counted as a delivery, counted as delivery.never_sent",
            client=int(receivers[first]),
        )

    def _ceiling(self, n: int, t_us: int) -> None:
        self.latency_above_ceiling += n
        self.warn_once(
            "latency_ceiling",
            t_us,
            f"deliveries later than the histograms' {histograms.HIGHEST_US / 1e6:g} s ceiling were recorded at the "
            "ceiling (latency.above_ceiling counts them)",
        )

    def _uncounted(
        self, counted: np.ndarray | None, receivers: np.ndarray, senders: np.ndarray, recv_us: np.ndarray
    ) -> None:
        """Trailer-carrying frames the accounting could not count: back to their own sender (a SPEC 7.2
        violation) or from/to a client that is not a sender/reader of this run."""
        assert counted is not None
        odd = ~counted
        back = odd & (senders == receivers)
        n_back = int(np.count_nonzero(back))
        t = int(recv_us[-1])
        if n_back:
            self.count("back_to_sender", t, n_back)
            first = int(np.flatnonzero(back)[0])
            self.warn_once(
                "back_to_sender",
                t,
                f"the server sent client {int(receivers[first])} its own message (SPEC 7.2: a message goes to every "
                "other client); counted as delivery.back_to_sender",
                client=int(receivers[first]),
            )
        rest = int(np.count_nonzero(odd)) - n_back
        if rest:
            self.count("unknown", t, rest)

    def _other_frames(self, frames: list[bytes], where: np.ndarray, receivers: np.ndarray, recv_us: np.ndarray) -> None:
        """Join and leave lines (SPEC 7.1, 7.5) and anything that carries no trailer.

        A join line reaches every client with the same bytes: ``N`` clients joining make ``N**2`` join
        frames, so each distinct text is read once and its receivers are handled together.
        """
        by_text: dict[bytes, list[int]] = {}
        for i in where.tolist():
            by_text.setdefault(frames[i], []).append(i)
        for frame, rows in by_text.items():
            text = frame.decode("utf-8", "replace")
            t = int(recv_us[rows[-1]])
            if text.startswith("~~~") and text.endswith(JOIN_SUFFIX):
                who = self.nicknames.client_of(text[3 : -len(JOIN_SUFFIX)])
                if who is not None:
                    obs, when = receivers[rows], recv_us[rows]
                    self.acc.saw_join_many(obs, who, when)
                    if not self.local:
                        self.outbox["saw_join"].extend(
                            (o, who, w) for o, w in zip(obs.tolist(), when.tolist(), strict=True) if o != who
                        )
                self.count("join_lines", t, len(rows))
            elif text.startswith("~~~") and text.endswith(LEAVE_SUFFIX):
                self.count("leave_lines", t, len(rows))
            else:
                self.count("no_trailer", t, len(rows))
                for i in rows[: max(0, DESCRIBED_FRAMES - self.described_frames)]:
                    self.event(
                        int(recv_us[i]),
                        "warning",
                        warning="no_trailer",
                        client=int(receivers[i]),
                        detail=f"a text frame without a wsbench trailer: {text[:80]!r}",
                    )
                self.described_frames += len(rows)

    # -- fan-out ---------------------------------------------------------------------------------------
    def collect_fanout(self, now_us: int) -> Completed | None:
        """Fan-outs completed (or given up) by ``now_us``, into the intervals of their messages."""
        if self.fan is None:
            return None
        done = self.fan.collect(now_us)
        self.record_fanout(done.fanout_us, done.intended_us, done.expired_intended_us)
        return done

    def record_fanout(
        self, fanout_us: np.ndarray, intended_us: np.ndarray | None, expired_us: np.ndarray | None
    ) -> None:
        if len(fanout_us) and intended_us is not None:
            pos = self.intervals.positions(intended_us)
            for p in np.unique(pos).tolist():
                values = fanout_us if len(pos) == 1 else fanout_us[pos == p]
                histograms.record_many(self.intervals.at(p).histogram("fanout"), np.maximum(values, 0))
        if expired_us is not None and len(expired_us):
            pos = self.intervals.positions(expired_us)
            for p, n in zip(*np.unique(pos, return_counts=True), strict=True):
                self.intervals.at(int(p)).counters["fanout_incomplete"] += int(n)

    def take_fanout_parts(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        parts, self._fanout_parts = self._fanout_parts, []
        return parts

    def take_outbox(self) -> dict[str, list[tuple[int, ...]]]:
        box = self.outbox
        self.outbox = {name: [] for name in box}
        return box

    # -- records ---------------------------------------------------------------------------------------
    def take_records(self, now_us: int, *, final: bool = False, late: bool = True) -> list[IntervalRecord]:
        """Records that are final by ``now_us`` (every one when ``final``), and late supplements."""
        return self.intervals.take_records(now_us, final=final, late=late)

    def has_due(self, now_us: int) -> bool:
        """Whether :meth:`take_records` has a record to give at ``now_us``."""
        return self.intervals.has_due(now_us)

    def take_final_phases(self) -> list[str]:
        """Phases every record of which was taken since the last call (their totals are complete, but
        for late supplements)."""
        return self.intervals.take_final_phases()

    def take_events(self) -> list[Event]:
        events, self.events = self.events, []
        return events
