"""When messages are meant to be sent: the phase plan, the open model's fixed schedule, the closed loop.

Open model (wrk2 style): the send times are fixed in advance by the rate, whatever the server does.
With the total rate ``r(t)`` (messages per second over all senders; constant in a stage or a linear
ramp), ``N(t) = integral of r`` counts the messages due by ``t`` and message ``k`` (0, 1, 2, ...) is
intended at ``T(k)``, the time ``N`` reaches ``k``. Message ``k`` goes to sender ``k mod senders``,
so each sender sends at ``r / senders`` and the senders are evenly staggered. A generator that falls
behind sends late, and the latency it reports from ``T(k)`` includes the wait (no coordinated
omission).

Closed model: each sender keeps at most ``outstanding`` messages in flight; a message is done when
every receiver expected to get it has it (or after a timeout), then the sender waits ``think_time``
and sends again. Throughput is the outcome; latency is measured from the actual send.

Times here are seconds from the start of the load (the end of the connect phase). Pure code: no
clock, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MEASURED = "measure"


@dataclass(frozen=True, slots=True)
class Phase:
    """A span of the load with a total rate ramping linearly from ``rate`` to ``rate_to``."""

    name: str
    kind: str  # "warmup" | "measure" | "drain"
    start_s: float
    duration_s: float
    rate: float = 0.0
    rate_to: float | None = None

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    @property
    def final_rate(self) -> float:
        return self.rate if self.rate_to is None else self.rate_to

    @property
    def sends(self) -> bool:
        return self.kind != "drain"

    def rate_at(self, t: float) -> float:
        """Total rate at ``t`` (seconds from the load start)."""
        if self.duration_s <= 0:
            return self.rate
        frac = min(max((t - self.start_s) / self.duration_s, 0.0), 1.0)
        return self.rate + (self.final_rate - self.rate) * frac

    def count(self, tau: float) -> float:
        """Messages due in the first ``tau`` seconds of this phase (clamped to the phase)."""
        tau = min(max(tau, 0.0), self.duration_s)
        if not self.sends:
            return 0.0
        slope = (self.final_rate - self.rate) / self.duration_s if self.duration_s > 0 else 0.0
        return self.rate * tau + 0.5 * slope * tau * tau

    @property
    def total(self) -> float:
        return self.count(self.duration_s)

    def offsets(self, u: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`count`: seconds into the phase at which count reaches each ``u``."""
        u = np.asarray(u, dtype=np.float64)
        r0 = self.rate
        slope = (self.final_rate - self.rate) / self.duration_s if self.duration_s > 0 else 0.0
        if slope == 0.0:
            return u / r0 if r0 > 0 else np.zeros_like(u)
        a = 0.5 * slope
        disc = np.maximum(r0 * r0 + 4.0 * a * u, 0.0)
        denom = r0 + np.sqrt(disc)
        # 2u / (r0 + sqrt(r0^2 + 4au)) is the stable root of a*tau^2 + r0*tau - u = 0
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(denom > 0, 2.0 * u / np.where(denom > 0, denom, 1.0), 0.0)
        return out


def plan_phases(
    warmup_s: float,
    warmup_rate: float | None,
    stages: Sequence[tuple[str, float, float, float | None]],
    drain_s: float,
) -> list[Phase]:
    """Warm-up, the measured stages ``(name, duration_s, rate, rate_to)`` and the drain, back to back."""
    phases: list[Phase] = []
    t = 0.0
    if warmup_s > 0:
        rate = warmup_rate if warmup_rate is not None else (stages[0][2] if stages else 0.0)
        phases.append(Phase("warmup", "warmup", t, warmup_s, rate))
        t += warmup_s
    for name, duration, rate, rate_to in stages:
        phases.append(Phase(name, MEASURED, t, duration, rate, rate_to))
        t += duration
    phases.append(Phase("drain", "drain", t, drain_s, 0.0))
    return phases


def phase_at(phases: Sequence[Phase], t: float) -> Phase:
    """The phase that holds ``t`` (the last one for times past the end, the first before the start)."""
    for phase in phases:
        if t < phase.end_s:
            return phase
    return phases[-1]


def sending_end(phases: Sequence[Phase]) -> float:
    """When the last sending phase ends."""
    ends = [p.end_s for p in phases if p.sends]
    return max(ends) if ends else 0.0


class OpenSchedule:
    """The fixed send schedule of the open model over a list of phases."""

    def __init__(self, phases: Sequence[Phase], senders: int) -> None:
        if senders < 1:
            raise ValueError("the open model needs at least one sender")
        self.phases = list(phases)
        self.senders = senders
        self._starts: list[float] = []
        total = 0.0
        for phase in self.phases:
            self._starts.append(total)
            total += phase.total
        self._totals = [*self._starts[1:], total]
        self.total_messages = math.ceil(total - 1e-9) if total > 0 else 0

    def due_count(self, t: float) -> float:
        """``N(t)``: messages due strictly before ``t`` (continuous)."""
        for phase, before in zip(self.phases, self._starts, strict=True):
            if t < phase.end_s:
                return before + phase.count(t - phase.start_s)
        return self._totals[-1] if self._totals else 0.0

    def _index_at(self, t: float) -> int:
        return min(math.ceil(self.due_count(t) - 1e-9), self.total_messages)

    def between(self, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray]:
        """Messages intended in ``[t0, t1)``: their global indexes and intended times (seconds).

        Consecutive windows ``[a, b)``, ``[b, c)`` never repeat or skip a message.
        """
        k0, k1 = self._index_at(t0), self._index_at(t1)
        if k1 <= k0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
        ks = np.arange(k0, k1, dtype=np.int64)
        return ks, self.times(ks)

    def times(self, ks: np.ndarray) -> np.ndarray:
        """Intended times of global message indexes ``ks``."""
        ks = np.asarray(ks, dtype=np.int64)
        out = np.empty(len(ks), dtype=np.float64)
        starts = np.asarray(self._starts)
        which = np.searchsorted(starts, ks.astype(np.float64), side="right") - 1
        which = np.clip(which, 0, len(self.phases) - 1)
        for i in np.unique(which):
            phase = self.phases[int(i)]
            mask = which == i
            out[mask] = phase.start_s + phase.offsets(ks[mask] - self._starts[int(i)])
        return out

    def sender_of(self, ks: np.ndarray) -> np.ndarray:
        return np.asarray(ks, dtype=np.int64) % self.senders

    def next_time_after(self, t: float) -> float | None:
        """The intended time of the first message due at or after ``t`` (``None`` when there is none)."""
        k = self._index_at(t)
        if k >= self.total_messages:
            return None
        return float(self.times(np.array([k]))[0])


@dataclass(slots=True)
class _ClosedSender:
    outstanding: int = 0
    ready_at: float = 0.0


class ClosedLoop:
    """The closed model's state: which senders may send now.

    The driver calls :meth:`due` on each tick, sends one message for each sender returned (and calls
    :meth:`sent`), and calls :meth:`completed` when a message is done (delivered to all its expected
    receivers, or timed out).
    """

    def __init__(self, senders: int, outstanding: int = 1, think_time_s: float = 0.0) -> None:
        if outstanding < 1:
            raise ValueError("outstanding must be at least 1")
        self.outstanding = outstanding
        self.think_time_s = think_time_s
        self._senders = [_ClosedSender() for _ in range(senders)]

    def due(self, now: float) -> list[int]:
        out: list[int] = []
        for i, s in enumerate(self._senders):
            if s.outstanding < self.outstanding and now >= s.ready_at:
                out.extend([i] * (self.outstanding - s.outstanding))
        return out

    def sent(self, sender: int) -> None:
        self._senders[sender].outstanding += 1

    def completed(self, sender: int, now: float) -> None:
        s = self._senders[sender]
        s.outstanding = max(0, s.outstanding - 1)
        s.ready_at = now + self.think_time_s

    def in_flight(self, sender: int) -> int:
        return self._senders[sender].outstanding


def churn_schedule(phases: Sequence[Phase], rate: float, limit: int | None = None) -> list[float]:
    """When receivers are replaced (seconds from the load start): ``rate`` per second, evenly spaced over
    the measured phases only (never in the warm-up or the drain), at most ``limit`` in all.

    The first replacement comes one period into the measured time, so the first stage starts with the
    room the barrier checked.
    """
    out: list[float] = []
    if rate <= 0:
        return out
    period = 1.0 / rate
    for phase in phases:
        if phase.kind != MEASURED:
            continue
        k = 1
        while k * period < phase.duration_s - 1e-9:
            if limit is not None and len(out) >= limit:
                return out
            out.append(phase.start_s + k * period)
            k += 1
    return out
