"""Delivery accounting per (sender, receiver) pair: expected, delivered, lost, duplicated, out of order.

Fed by a driver with plain numbers (client ids, sequence numbers, microseconds on the run's one
monotonic clock); no I/O, no clock of its own.

What is recorded
----------------
* ``joined(client, t)`` when a client's handshake completed, ``left(client, t)`` when it started to
  close or saw its connection end;
* ``saw_join(observer, joined, t)`` (or ``saw_join_many`` for a batch) when a client received another's join line
  ``~~~{nickname}进入了聊天室~~~`` (SPEC 7.1): the server's own word on the order of registrations;
* ``sent(sender, seq, t)`` for every message, with sequence numbers 0, 1, 2, ... per sender;
* ``ingest(receivers, senders, seqs)`` for batches of deliveries, in arrival order per receiver.

Receipt (per batch, vectorized)
-------------------------------
Per pair the server must keep the sender's order (SPEC 7.3), so the normal delivery is "greater than
anything seen before from that sender". Each pair keeps the first and the highest sequence number
received and the set of holes in between. A delivery above the highest is new (a jump leaves holes);
one that fills a hole (or lies below the first) is new and *reordered*; anything else is a
*duplicate*. The common case is decided for the whole batch with numpy; only anomalies are looked at
one by one.

Which messages a receiver should get (the expected window)
---------------------------------------------------------
A message is expected at receiver R when the server handled it while R was online (SPEC 1.3, 7.2).
The generator cannot see the server's order directly, so it uses what is certain on its own clock:

* start: if the sender S received R's join line at ``t``, every message S sent after ``t`` was
  handled after R's registration; if R received S's join line, R was online before S, so all of S's
  messages count; if neither was seen (a server without join lines), the later of the two handshake
  completions is used;
* end: a receiver that left *during the run* stops being expected to get messages sent in the last
  ``leave_margin`` before it left (they may have been handled after the server dropped it); until
  then they count. The end of the run (:meth:`end`, the end of the drain) is not a leave: a receiver
  still online then expects every message sent while it was online, so a message not delivered by
  the end of the drain is lost, whatever the drain's length (the teardown's closes are ignored);
* order: once R received message ``q`` of S, every later message of S is expected too, and every
  earlier one after R's start (SPEC 7.3), so holes below the highest delivery are always losses.

Messages outside the certain window that arrive anyway count as expected and delivered; those that do
not arrive count as neither. ``lost = expected - delivered``, known once the drain is over.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

NEVER = np.iinfo(np.int64).max
_SEQ_BITS = 40  # sequence numbers below 2**40 per sender; pair ids below 2**23


@dataclass(slots=True)
class IngestResult:
    """Per delivery of a batch: ``new`` (first receipt of that message at that receiver) and the
    sender index; and the batch counts."""

    new: np.ndarray  # bool, per delivery
    sender_index: np.ndarray  # int64, -1 for deliveries from unknown senders
    delivered: int  # new deliveries
    duplicated: int
    reordered: int
    unknown: int  # from clients that are not senders, or to receivers that are not accounted
    counted: np.ndarray | None = None  # bool, per delivery: accounted (a known sender to a known receiver)
    reordered_mask: np.ndarray | None = None  # bool, per delivery: new and out of order


@dataclass(slots=True)
class Totals:
    expected: int
    delivered: int
    lost: int
    pairs: int
    pairs_with_loss: int

    def as_dict(self) -> dict[str, int]:
        return {
            "expected": self.expected,
            "delivered": self.delivered,
            "lost": self.lost,
            "pairs": self.pairs,
            "pairs_with_loss": self.pairs_with_loss,
        }


@dataclass(slots=True)
class Receipts:
    """What the receivers of one process received, per (sender, receiver) pair, to merge elsewhere
    (a Locust worker's part for the master): :meth:`DeliveryAccounting.export_receipts` and
    :meth:`DeliveryAccounting.merge_receipts`."""

    receivers: np.ndarray  # int64 client ids (columns)
    first: np.ndarray  # int64 (senders, receivers)
    highest: np.ndarray  # int64 (senders, receivers)
    holes: dict[int, list[int]]  # pair id -> missing sequence numbers
    delivered: int
    duplicated: int
    reordered: int
    unknown: int


class DeliveryAccounting:
    """Accounting for ``senders`` (client ids) x ``receivers`` (client ids; default all clients)."""

    def __init__(
        self,
        clients: int,
        senders: Sequence[int],
        receivers: Iterable[int] | None = None,
        leave_margin_us: int = 1_000_000,
    ) -> None:
        self.clients = clients
        self.senders = list(senders)
        self.sender_index = np.full(max(clients, 1), -1, dtype=np.int64)
        for i, c in enumerate(self.senders):
            self.sender_index[c] = i
        n_s = len(self.senders)
        if n_s * clients >= 1 << (63 - _SEQ_BITS):
            raise ValueError(f"too many sender x receiver pairs ({n_s} x {clients})")
        self.is_receiver = np.zeros(max(clients, 1), dtype=bool)
        self.is_receiver[list(range(clients)) if receivers is None else list(receivers)] = True
        self.leave_margin_us = leave_margin_us
        self.join_us = np.full(clients, -1, dtype=np.int64)
        self.leave_us = np.full(clients, NEVER, dtype=np.int64)
        # obs[s, r]: when sender s saw r's join line (-1: never); r_saw[s, r]: r saw s's join line
        self.obs = np.full((n_s, clients), -1, dtype=np.int64)
        self.r_saw = np.zeros((n_s, clients), dtype=bool)
        self.first = np.full((n_s, clients), NEVER, dtype=np.int64)
        self.highest = np.full((n_s, clients), -1, dtype=np.int64)
        self.holes: dict[int, set[int]] = {}  # pair id -> missing sequence numbers in [first, highest]
        self.send_times: list[list[int]] = [[] for _ in range(n_s)]
        self.duplicated = 0
        self.reordered = 0
        self.delivered = 0
        self.unknown = 0
        self._online_receivers = 0
        self.end_us: int | None = None

    # -- connection events ------------------------------------------------------------------------
    def joined(self, client: int, t_us: int) -> None:
        self.join_us[client] = t_us
        if self.is_receiver[client]:
            self._online_receivers += 1

    def left(self, client: int, t_us: int) -> None:
        if self.join_us[client] >= 0 and self.leave_us[client] == NEVER:
            self.leave_us[client] = t_us
            if self.is_receiver[client]:
                self._online_receivers -= 1

    def end(self, t_us: int) -> None:
        """The run is over at ``t_us`` (the end of the drain): leaves at or after it are the teardown's,
        not the server's, and do not shorten any receiver's expected window."""
        self.end_us = t_us

    def online(self, client: int) -> bool:
        return bool(self.join_us[client] >= 0 and self.leave_us[client] == NEVER)

    def saw_join(self, observer: int, joined: int, t_us: int) -> None:
        """``observer`` received ``joined``'s join line at ``t_us``."""
        si = self.sender_index[observer]
        if si >= 0 and self.obs[si, joined] < 0:
            self.obs[si, joined] = t_us
        sj = self.sender_index[joined]
        if sj >= 0:
            self.r_saw[sj, observer] = True

    def saw_join_many(self, observers: np.ndarray, joined: int, t_us: np.ndarray) -> None:
        """:meth:`saw_join` for every observer of one join line at once (arrival order: the first sighting
        of an observer counts); ``joined`` itself among the observers is ignored (its own join line)."""
        if not 0 <= joined < self.clients:
            return
        observers = np.asarray(observers, dtype=np.int64)
        t_us = np.asarray(t_us, dtype=np.int64)
        keep = (observers != joined) & (observers >= 0) & (observers < self.clients)
        observers, t_us = observers[keep], t_us[keep]
        si = self.sender_index[observers]
        senders = si >= 0
        if senders.any():
            rows, first = np.unique(si[senders], return_index=True)
            when = t_us[senders][first]
            unset = self.obs[rows, joined] < 0
            self.obs[rows[unset], joined] = when[unset]
        sj = self.sender_index[joined]
        if sj >= 0:
            self.r_saw[sj, observers] = True

    def expected_receivers(self, sender: int) -> int:
        """Receivers online now, other than ``sender`` (what a message sent now should reach)."""
        own = 1 if self.is_receiver[sender] and self.online(sender) else 0
        return self._online_receivers - own

    # -- sends ---------------------------------------------------------------------------------------
    def sent(self, sender: int, seq: int, t_us: int) -> None:
        times = self.send_times[self.sender_index[sender]]
        if seq != len(times):
            raise ValueError(f"sender {sender}: sequence {seq} sent after {len(times)} messages")
        times.append(t_us)

    # -- receipt -------------------------------------------------------------------------------------
    def ingest(self, receivers: np.ndarray, senders: np.ndarray, seqs: np.ndarray) -> IngestResult:
        """A batch of deliveries (client ids and sequence numbers), in arrival order per receiver."""
        receivers = np.asarray(receivers, dtype=np.int64)
        senders = np.asarray(senders, dtype=np.int64)
        seqs = np.asarray(seqs, dtype=np.int64)
        n = len(seqs)
        new = np.zeros(n, dtype=bool)
        if n == 0:
            return IngestResult(new, np.empty(0, dtype=np.int64), 0, 0, 0, 0, new, new)
        in_range = (senders >= 0) & (senders < self.clients) & (receivers >= 0) & (receivers < self.clients)
        si = np.full(n, -1, dtype=np.int64)
        si[in_range] = self.sender_index[senders[in_range]]
        ok = in_range & (si >= 0) & (seqs >= 0) & (seqs < (1 << _SEQ_BITS))
        ok[ok] &= self.is_receiver[receivers[ok]] & (senders[ok] != receivers[ok])
        unknown = int(n - np.count_nonzero(ok))
        idx = np.flatnonzero(ok)
        if len(idx) == 0:
            self.unknown += unknown
            return IngestResult(new, si, 0, 0, 0, unknown, ok, new)
        pair = si[idx] * self.clients + receivers[idx]
        order = np.argsort(pair, kind="stable")  # groups pairs, keeps arrival order inside a pair
        p = pair[order]
        q = seqs[idx][order]
        base = p << _SEQ_BITS
        key = base + q
        highest = self.highest.reshape(-1)
        first = self.first.reshape(-1)
        prior = base + highest[p]  # highest before this batch (-1 -> base - 1)
        running = np.maximum.accumulate(key)
        before = np.empty_like(key)
        before[0] = -1
        before[1:] = running[:-1]
        before = np.maximum(before, prior)  # highest seen for this pair before this delivery
        fresh = key > before
        before_seq = before - base
        # first ever delivery of a pair
        first_ever = fresh & (before_seq < 0)
        if first_ever.any():  # at most one per pair: the pair's first delivery in this batch
            first[p[first_ever]] = q[first_ever]
        # jumps leave holes
        jumps = np.flatnonzero(fresh & (before_seq >= 0) & (q > before_seq + 1))
        for j in jumps:
            self.holes.setdefault(int(p[j]), set()).update(range(int(before_seq[j]) + 1, int(q[j])))
        is_new = fresh.copy()
        dup = 0
        reord = 0
        stale = np.flatnonzero(~fresh)
        for j in stale:  # in arrival order within each pair (the sort is stable)
            pid, s = int(p[j]), int(q[j])
            holes = self.holes.get(pid)
            if holes is not None and s in holes:
                holes.remove(s)
                if not holes:
                    del self.holes[pid]
                reord += 1
                is_new[j] = True
            elif s < first[pid]:
                if s + 1 < first[pid]:
                    self.holes.setdefault(pid, set()).update(range(s + 1, int(first[pid])))
                first[pid] = s
                reord += 1
                is_new[j] = True
            else:
                dup += 1
        # the highest per pair: the running maximum at the end of each pair's group (pairs are sorted)
        ends = np.flatnonzero(np.append(p[1:] != p[:-1], True))
        highest[p[ends]] = np.maximum(highest[p[ends]], running[ends] - base[ends])
        new_mask = np.zeros(n, dtype=bool)
        sel = idx[order]
        new_mask[sel] = is_new
        reordered_mask = np.zeros(n, dtype=bool)
        if reord:
            reordered_mask[sel] = is_new & ~fresh
        delivered = int(np.count_nonzero(is_new))
        self.delivered += delivered
        self.duplicated += dup
        self.reordered += reord
        self.unknown += unknown
        return IngestResult(new_mask, si, delivered, dup, reord, unknown, ok, reordered_mask)

    # -- receipts across processes ----------------------------------------------------------------
    def export_receipts(self, clients: Iterable[int]) -> Receipts:
        """The receipt state of the receivers among ``clients`` (the ones this process ran)."""
        cols = np.asarray(sorted(c for c in clients if self.is_receiver[c]), dtype=np.int64)
        mine = set(cols.tolist())
        return Receipts(
            receivers=cols,
            first=self.first[:, cols].copy(),
            highest=self.highest[:, cols].copy(),
            holes={pid: sorted(h) for pid, h in self.holes.items() if pid % self.clients in mine},
            delivered=self.delivered,
            duplicated=self.duplicated,
            reordered=self.reordered,
            unknown=self.unknown,
        )

    def merge_receipts(self, r: Receipts, replacing: Receipts | None = None) -> None:
        """Fold another process's receipts in (receivers of different processes are disjoint).

        ``replacing``: that process's receipts merged before, which ``r`` supersedes (a process ships
        its receipt state mid-run for a stage verdict, and again at the end)."""
        if replacing is not None:
            old = replacing.receivers
            if len(old):
                self.first[:, old] = NEVER
                self.highest[:, old] = -1
            for pid in replacing.holes:
                self.holes.pop(pid, None)
            self.delivered -= replacing.delivered
            self.duplicated -= replacing.duplicated
            self.reordered -= replacing.reordered
            self.unknown -= replacing.unknown
        cols = r.receivers
        if len(cols):
            self.first[:, cols] = np.minimum(self.first[:, cols], r.first)
            self.highest[:, cols] = np.maximum(self.highest[:, cols], r.highest)
        for pid, holes in r.holes.items():
            self.holes.setdefault(pid, set()).update(holes)
        self.delivered += r.delivered
        self.duplicated += r.duplicated
        self.reordered += r.reordered
        self.unknown += r.unknown

    # -- totals --------------------------------------------------------------------------------------
    def totals(self, t0_us: int | None = None, t1_us: int | None = None, cutoff_us: int | None = None) -> Totals:
        """Expected, delivered and lost for messages *sent* in ``[t0_us, t1_us)`` (default: all).

        ``cutoff_us`` treats messages sent at or after it as not yet due (an estimate during the run).
        """
        expected = delivered = lost = pairs = pairs_with_loss = 0
        receivers = np.flatnonzero(self.is_receiver[: self.clients] & (self.join_us >= 0))
        holes_by_sender: dict[int, list[tuple[int, set[int]]]] = {}
        for pid, holes in self.holes.items():
            holes_by_sender.setdefault(pid // self.clients, []).append((pid % self.clients, holes))
        for si, sender in enumerate(self.senders):
            times = np.asarray(self.send_times[si], dtype=np.int64)
            rs = receivers[receivers != sender]
            if len(rs) == 0 or self.join_us[sender] < 0:
                continue
            pairs += len(rs)
            n_sent = len(times)
            # certain window start
            obs = self.obs[si, rs]
            t_on = np.where(
                obs >= 0, obs, np.where(self.r_saw[si, rs], -1, np.maximum(self.join_us[sender], self.join_us[rs]))
            )
            leave = self.leave_us[rs]
            if self.end_us is not None:
                leave = np.where(leave >= self.end_us, NEVER, leave)
            t_off = np.where(leave == NEVER, NEVER, leave - self.leave_margin_us)
            if cutoff_us is not None:
                t_off = np.minimum(t_off, cutoff_us)
            a = np.searchsorted(times, t_on, side="left")
            b = np.searchsorted(times, t_off, side="left")
            first = self.first[si, rs]
            high = self.highest[si, rs]
            got_any = high >= 0
            a = np.where(got_any, np.minimum(a, first), a)
            b = np.where(got_any, np.maximum(b, high + 1), b)
            b = np.maximum(a, b)
            p0 = 0 if t0_us is None else int(np.searchsorted(times, t0_us, side="left"))
            p1 = n_sent if t1_us is None else int(np.searchsorted(times, t1_us, side="left"))
            d_lo = np.where(got_any, first, 0)
            d_hi = np.where(got_any, high + 1, 0)
            c_lo, c_hi = np.maximum(a, p0), np.minimum(b, p1)
            window = np.maximum(c_hi - c_lo, 0)
            in_cp = np.maximum(np.minimum(d_hi, c_hi) - np.maximum(d_lo, c_lo), 0)
            in_p = np.maximum(np.minimum(d_hi, p1) - np.maximum(d_lo, p0), 0)
            if holes_by_sender.get(si):
                pos = np.full(self.clients, -1, dtype=np.int64)
                pos[rs] = np.arange(len(rs))
                for r, holes in holes_by_sender[si]:
                    k = int(pos[r])
                    if k < 0:
                        continue
                    lo_cp, hi_cp = int(c_lo[k]), int(c_hi[k])
                    in_cp[k] -= sum(1 for h in holes if lo_cp <= h < hi_cp)
                    in_p[k] -= sum(1 for h in holes if p0 <= h < p1)
            pair_lost = window - in_cp
            expected += int(window.sum() + in_p.sum() - in_cp.sum())
            delivered += int(in_p.sum())
            lost += int(pair_lost.sum())
            pairs_with_loss += int(np.count_nonzero(pair_lost))
        return Totals(expected, delivered, lost, pairs, pairs_with_loss)
