"""Fan-out completion per message: from its intended send time to its last expected receiver.

At send time the driver says how many receivers a message should reach (those online then, see
:meth:`wsbench.core.accounting.DeliveryAccounting.expected_receivers`). Deliveries are folded in per
batch with numpy (count and latest receipt per message). A message is *complete* once it reached as
many receivers as expected; its fan-out time is then known. A message still incomplete after
``timeout_us`` is given up (it lost a delivery, or a receiver left) and counted as ``incomplete``:
it has no fan-out time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(slots=True)
class Completed:
    """Messages that completed or were given up since the previous call."""

    sender_index: np.ndarray  # int64, one per completed message
    fanout_us: np.ndarray  # int64, intended send -> last receipt, per completed message that had receivers
    expired_sender_index: np.ndarray  # int64, of given-up messages
    intended_us: np.ndarray | None = None  # int64, the intended send time of each fanout_us value
    expired_intended_us: np.ndarray | None = None  # int64, of given-up messages


class FanoutTracker:
    def __init__(self, senders: int, timeout_us: int = 10_000_000, capacity: int = 1024) -> None:
        self.senders = senders
        self.timeout_us = timeout_us
        self._cap = capacity
        self.intended = np.zeros((senders, capacity), dtype=np.int64)
        self.expected = np.zeros((senders, capacity), dtype=np.int32)
        self.got = np.zeros((senders, capacity), dtype=np.int32)
        self.last = np.zeros((senders, capacity), dtype=np.int64)
        self.done = np.zeros((senders, capacity), dtype=bool)
        self.n_sent = np.zeros(senders, dtype=np.int64)
        self.low = np.zeros(senders, dtype=np.int64)  # below this every message is done
        self.incomplete = 0

    def _grow(self, need: int) -> None:
        cap = self._cap
        while cap <= need:
            cap *= 2
        for name in ("intended", "expected", "got", "last", "done"):
            old = getattr(self, name)
            new = np.zeros((self.senders, cap), dtype=old.dtype)
            new[:, : self._cap] = old
            setattr(self, name, new)
        self._cap = cap

    def sent(self, sender_index: int, seq: int, intended_us: int, expected_receivers: int) -> None:
        if seq >= self._cap:
            self._grow(seq)
        self.intended[sender_index, seq] = intended_us
        self.expected[sender_index, seq] = expected_receivers
        if self.n_sent[sender_index] <= seq:
            self.n_sent[sender_index] = seq + 1

    def delivered(self, sender_index: np.ndarray, seqs: np.ndarray, recv_us: np.ndarray) -> None:
        """New (not duplicated) deliveries of messages this tracker was told about."""
        if len(seqs) == 0:
            return
        ok = (sender_index >= 0) & (seqs >= 0) & (seqs < self.n_sent[np.maximum(sender_index, 0)])
        if not ok.all():
            sender_index, seqs, recv_us = sender_index[ok], seqs[ok], recv_us[ok]
            if len(seqs) == 0:  # nothing this tracker was told about (the recorder counts it as never sent)
                return
        # group by message (a sort), then one fancy update per message: several times faster than
        # np.add.at / np.maximum.at on the 2-D arrays
        flat = sender_index * self._cap + seqs
        order = np.argsort(flat, kind="stable")
        fs, rs = flat[order], recv_us[order]
        starts = np.flatnonzero(np.concatenate(([True], fs[1:] != fs[:-1])))
        uniq = fs[starts]
        got = self.got.reshape(-1)
        last = self.last.reshape(-1)
        got[uniq] += np.diff(np.append(starts, len(fs))).astype(got.dtype)
        last[uniq] = np.maximum(last[uniq], np.maximum.reduceat(rs, starts))

    def collect(self, now_us: int) -> Completed:
        """Messages complete (or given up at ``now_us``) since the last call."""
        done_s: list[np.ndarray] = []
        fan: list[np.ndarray] = []
        fan_t: list[np.ndarray] = []
        exp_s: list[np.ndarray] = []
        exp_t: list[np.ndarray] = []
        for s in range(self.senders):
            lo, hi = int(self.low[s]), int(self.n_sent[s])
            if hi <= lo:
                continue
            got = self.got[s, lo:hi]
            expected = self.expected[s, lo:hi]
            done = self.done[s, lo:hi]
            complete = ~done & (got >= expected)
            with_receivers = complete & (expected > 0)
            if complete.any():
                done_s.append(np.full(int(complete.sum()), s, dtype=np.int64))
                if with_receivers.any():
                    intended = self.intended[s, lo:hi][with_receivers]
                    fan.append(self.last[s, lo:hi][with_receivers] - intended)
                    fan_t.append(intended)
            expired = ~done & ~complete & (self.intended[s, lo:hi] < now_us - self.timeout_us)
            if expired.any():
                n = int(expired.sum())
                self.incomplete += n
                exp_s.append(np.full(n, s, dtype=np.int64))
                exp_t.append(self.intended[s, lo:hi][expired])
            done |= complete | expired
            not_done = np.flatnonzero(~done)
            self.low[s] = lo + (int(not_done[0]) if len(not_done) else hi - lo)
        cat = np.concatenate
        empty = np.empty(0, dtype=np.int64)
        return Completed(
            cat(done_s) if done_s else empty,
            cat(fan) if fan else empty,
            cat(exp_s) if exp_s else empty,
            cat(fan_t) if fan_t else empty,
            cat(exp_t) if exp_t else empty,
        )

    def pending(self) -> int:
        return int((self.n_sent - self.low).sum())
