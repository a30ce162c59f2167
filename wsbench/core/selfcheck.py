"""Was the load generator, not the server, the limit? The one rule both drivers' runs are judged by.

Two questions, kept apart because they have different answers on a healthy run:

**What did the generator add?** (informational). With kernel-stamped probe receivers
(:mod:`wsbench.core.socket_latency`) the generator's own part of every probe delivery is measured:
``generator_delay`` (kernel stamp to user-space receipt) and ``send_lag`` (how late it sent). Every
event loop adds some: at 100 clients and ~20,000 deliveries/s a quiet generator at 40 % of a core adds
a p99 of about 1.5 ms to a latency p99 of about 4 ms, because frames wait in socket buffers while the
loop serves the other sockets. That is the generator's floor, not a bottleneck, and the summary says it
as a fact whenever it was measured (``generator.delay_detail``, the terminal's ``self-check:`` line):
"the generator added p50 X / p99 Y of its own on receipt (Z % of the latency p99); at the socket the
server's latency was p50 A / p99 B".

**Did the generator limit the run?** (the ``generator.bottleneck`` warning). Only with evidence that
it was saturated, judged over the measured sending intervals of the whole run (:func:`judge`):

* **CPU near a full core, sustained**: in at least :data:`BUSY_SHARE` (a quarter) of the measured
  full-length intervals the generator process used at least :data:`CPU_PCT_LIMIT` (90 %) of a core
  (a Locust run: its busiest process in each interval). Each driver process is one event loop on one
  core; at 90 % its own queueing delay is several times its per-event service time and grows without
  bound toward 100 % (M/D/1: rho / 2(1 - rho) service times, 4.5 at 0.9, 49.5 at 0.99). One busy
  interval is a burst the loop absorbs (a GC, a phase start's catch-up); a quarter of the run holds far
  more than the slowest 1 % of deliveries, so the run's p99 is shaped by it.
* **The send schedule falling behind**: ``send_lag`` p99 over the measured phases at least
  :data:`SEND_LAG_MS_LIMIT` (20 ms). A generator that keeps up sends within its timer's granularity
  (well under a millisecond here); 20 ms late at the 99th percentile is twenty times that, and
  since latency counts from the intended send time that lateness is in ``latency``. The p99 of the
  run, not one interval's maximum: a single hiccup moves a maximum, not the p99.
* **The measured delay growing over the run**: the ``generator_delay`` p50 of the last third of the
  measured time is at least :data:`GROWTH_FACTOR` (2x) that of the first third and at least
  :data:`GROWTH_MS` (1 ms) more (each third with at least :data:`GROWTH_MIN_COUNT` probe deliveries).
  A generator that keeps up has a stationary delay; one that reads slower than frames arrive builds a
  queue, and in an open model the queue (so the delay) grows with time. The median, so that a burst of
  a few slow frames does not count as growth.
* **Starved of CPU**: over the measured sending intervals its event loop got less than
  :data:`CPU_GOT_LIMIT` (half) of the CPU time it asked for: its CPU time against the time its
  event-loop thread was runnable but waiting on a run queue (``cpu_wait_s``, the kernel's schedstat:
  :mod:`wsbench.schedstat`). A loop that waits longer for a CPU than it runs is not limited by its own
  work but by whoever holds its CPU (the server on the same cores, another job on a shared machine),
  and every frame it reads waits with it. Unlike CPU % this is seen at any demand: a generator that
  wants 30 % of a core and gets 10 % never reaches the CPU sign. The self-check line always gives the
  share it got and the mean wait each time it ran, starved or not.

and only when the generator's share of the latency is then no longer noise: its measured receive
delay p99, or its send lag p99, is at least :data:`DELAY_P99_MS` (1 ms, above the timer and
scheduling noise of a loaded machine) and at least :data:`DELAY_SHARE` (a quarter) of the ``latency``
p99. Without kernel stamps (``self_check`` ``estimated``) the receive delay is not measured: sustained
CPU alone is then enough, and the warning says the share was not measured. A saturated generator whose
share stays small (a slow server: 200 ms of latency, 2 ms of it the generator's) is named in the
informational line ("it showed signs of saturation (...), but ...") and not warned about: the
latencies are still the server's.

Event-loop lag is not a sign of its own at the run level: what it does to the numbers is measured
directly (as send lag and as receive delay).

Per interval, both drivers (``wsbench run``'s engine and the Locust master, per worker) feed every
interval record to :class:`BottleneckCheck`, which writes one ``generator_busy`` warning event per
generator process at its first measured interval at the limits (CPU >= 90 %, loop lag or send lag
>= 20 ms): *where and when* the generator was busy, named per Locust worker. Those events are signs,
not the verdict (results files before this rule called them ``generator_bottleneck``; both kinds are
read the same way). The verdict is :func:`judge`'s, from the results file, so both drivers, ``wsbench
report`` and ``compare`` say the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from wsbench.core import histograms
from wsbench.core.rollup import Counts

#: per interval (the ``generator_busy`` sign) and per run (CPU share): at least this % of one core
CPU_PCT_LIMIT = 90.0
#: per interval: event-loop lag at least this (ms) is a sign
LOOP_LAG_MS_LIMIT = 20.0
#: per interval: a send this late (ms) is a sign; per run: the send-lag p99 this high is saturation
SEND_LAG_MS_LIMIT = 20.0
#: the run's CPU evidence: at least this share of the measured full-length intervals at CPU_PCT_LIMIT
BUSY_SHARE = 0.25
#: the generator's part (receive delay or send lag) matters when its p99 is at least this (ms) ...
DELAY_P99_MS = 1.0
#: ... and at least this share of the all-receiver ``latency`` p99
DELAY_SHARE = 0.25
#: growth of the receive delay: last third's p50 at least this many times the first third's ...
GROWTH_FACTOR = 2.0
#: ... and at least this much (ms) more, each third holding at least GROWTH_MIN_COUNT probe deliveries
GROWTH_MS = 1.0
GROWTH_MIN_COUNT = 20
#: starved of CPU: the event loop got less than this share of the CPU time it asked for (ran / (ran + waited))
CPU_GOT_LIMIT = 0.5
#: phases whose intervals are not judged (nothing measured is sent in them)
UNJUDGED_PHASES = frozenset({"connect", "warmup", "drain"})
#: the per-interval sign's event kind, and the one files before the run-level rule used
BUSY_EVENT = "generator_busy"
BUSY_EVENTS = frozenset({BUSY_EVENT, "generator_bottleneck"})


def bottleneck_reasons(cpu_pct: float, loop_lag_ms: float, send_lag_ms: float) -> list[str]:
    """What one interval's generator figures show at the limits (the per-interval sign)."""
    reasons = []
    if cpu_pct >= CPU_PCT_LIMIT:
        reasons.append(f"generator CPU at {cpu_pct:.0f}% of a core")
    if loop_lag_ms >= LOOP_LAG_MS_LIMIT:
        reasons.append(f"event-loop lag up to {loop_lag_ms:.1f} ms")
    if send_lag_ms >= SEND_LAG_MS_LIMIT:
        reasons.append(f"messages sent up to {send_lag_ms:.1f} ms after their intended time")
    return reasons


@dataclass
class BottleneckCheck:
    """One ``generator_busy`` sign per generator process, at its first measured interval at the limits."""

    interval_s: float
    warned: set[str] = field(default_factory=set)

    def check(self, record: Mapping[str, Any], who: str = "") -> dict[str, Any] | None:
        """The warning event's fields (``t_s``, ``warning``, ``detail``, ``worker``) or ``None``."""
        gen = record.get("generator") or {}
        if who in self.warned or record.get("phase") in UNJUDGED_PHASES or not gen:
            return None
        span = float(record.get("end_s", 0.0)) - float(record.get("start_s", 0.0))
        if span < self.interval_s / 2:  # a short interval's CPU share means little
            return None
        reasons = bottleneck_reasons(
            float(gen.get("cpu_pct", 0.0)),
            float(gen.get("loop_lag_ms_max", 0.0)),
            float(gen.get("send_lag_ms_max", 0.0)),
        )
        if not reasons:
            return None
        self.warned.add(who)
        where = f" ({who})" if who else ""
        return {
            "t_s": float(record.get("end_s", 0.0)),
            "warning": BUSY_EVENT,
            "detail": f"the generator{where} was at its limits in an interval: " + "; ".join(reasons),
            **({"worker": who} if who else {}),
        }


# -- the run's evidence, from the results rows (pure) ------------------------------------------------------
def cpu_busy_ratio(rows: Sequence[Mapping[str, Any]]) -> float | None:
    """Share of the rows' full-length intervals at :data:`CPU_PCT_LIMIT` or more; ``None`` without figures.

    A row of one interval holds its CPU %; a row folded from several (a long run) holds their sum and
    count, and counts as busy when their mean is at the limit (a mean can hide a busy minority, so a long
    run's ratio is a lower bound).
    """
    busy = total = 0
    for row in rows:
        gen = row.get("generator") or {}
        n = int(gen.get("cpu_pct_n", 0) or 0)
        if n <= 0:
            continue
        total += n
        if float(gen.get("cpu_pct_sum", 0.0)) / n >= CPU_PCT_LIMIT:
            busy += n
    return busy / total if total else None


@dataclass(frozen=True)
class CpuWait:
    """The generator's wait for a CPU over some rows (``wsbench.schedstat``: its event-loop thread's run-queue
    wait, against the process's CPU time): ``got_ratio`` = ran / (ran + waited), the share of the CPU time it
    asked for that it got; ``ms_per_slice`` the mean wait each time it got a CPU."""

    wait_s: float
    got_ratio: float | None
    ms_per_slice: float | None


def cpu_wait(rows: Sequence[Mapping[str, Any]]) -> CpuWait | None:
    """The rows' :class:`CpuWait`; ``None`` when no row has the figures (old files, no schedstat)."""
    gens = [g for r in rows if (g := r.get("generator") or {}).get("cpu_wait_s") is not None]
    if not gens:
        return None
    waited = sum(float(g["cpu_wait_s"]) for g in gens)
    ran = sum(float(g.get("cpu_s", 0.0)) for g in gens)
    slices = sum(int(g.get("cpu_slices", 0) or 0) for g in gens)
    return CpuWait(
        round(waited, 4),
        round(ran / (ran + waited), 4) if ran + waited > 0 else None,
        round(waited * 1e3 / slices, 3) if slices else None,
    )


def delay_thirds(rows: Sequence[Mapping[str, Any]], name: str = "generator_delay") -> tuple[Any, Any] | None:
    """The merged ``name`` histograms of the first and the last third of the rows' time span."""
    timed = [r for r in rows if r.get("end_s") is not None]
    if len(timed) < 3:
        return None
    start = min(float(r.get("start_s", 0.0)) for r in timed)
    end = max(float(r["end_s"]) for r in timed)
    third = (end - start) / 3.0
    first, last = Counts(), Counts()
    for r in timed:
        h = (r.get("histograms") or {}).get(name)
        if h is None:
            continue
        if float(r["end_s"]) <= start + third + 1e-9:
            first.add(h)
        elif float(r.get("start_s", 0.0)) >= end - third - 1e-9:
            last.add(h)
    return first.histogram(), last.histogram()


@dataclass(frozen=True)
class Signs:
    """What the run's self-check is judged from (percentile dicts as ``histograms.summary_ms`` makes)."""

    latency: Mapping[str, Any]
    socket: Mapping[str, Any] = field(default_factory=dict)
    delay: Mapping[str, Any] = field(default_factory=dict)
    socket_uncorrected: Mapping[str, Any] = field(default_factory=dict)
    send_lag: Mapping[str, Any] = field(default_factory=dict)
    cpu_busy_ratio: float | None = None
    delay_first: Mapping[str, Any] = field(default_factory=dict)  # generator_delay, first third
    delay_last: Mapping[str, Any] = field(default_factory=dict)  # generator_delay, last third
    busy_events: Sequence[Mapping[str, Any]] = ()
    cpu_wait: CpuWait | None = None


def signs_from_rows(
    rows: Sequence[Mapping[str, Any]],
    latency: Mapping[str, Any],
    probe: Mapping[str, Mapping[str, Any]],
    send_lag: Mapping[str, Any],
    busy_events: Sequence[Mapping[str, Any]] = (),
) -> Signs:
    """The :class:`Signs` of a run: ``rows`` its measured sending rows, ``probe`` its probe percentiles."""
    thirds = delay_thirds(rows)
    first, last = (histograms.summary_ms(h) for h in thirds) if thirds else ({}, {})
    return Signs(
        latency=latency,
        socket=probe.get("latency_socket") or {},
        delay=probe.get("generator_delay") or {},
        socket_uncorrected=probe.get("latency_socket_uncorrected") or {},
        send_lag=send_lag,
        cpu_busy_ratio=cpu_busy_ratio(rows),
        delay_first=first,
        delay_last=last,
        busy_events=[e for e in busy_events if e.get("warning") in BUSY_EVENTS],
        cpu_wait=cpu_wait(rows),
    )


# -- the verdict ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    self_check: str  # "measured" (kernel-stamped probes) or "estimated"
    added: str | None  # what the generator added (measured only): the informational line
    saturation: list[str]  # the evidence of saturation found
    bottleneck: bool
    detail: str | None  # the warning, when bottleneck
    cpu_busy_ratio: float | None = None  # share of measured intervals at CPU_PCT_LIMIT


def _ms(value: Any) -> str:
    return "-" if value is None else f"{float(value):.2f} ms"


def _counted(p: Mapping[str, Any]) -> bool:
    return bool(p.get("count")) and p.get("p99") is not None


def _share(p99: Any, latency_p99: Any) -> float | None:
    if p99 is None or not latency_p99:
        return None
    return float(p99) / float(latency_p99)


def _matters(p99: Any, latency_p99: Any) -> bool:
    """A generator part (p99, ms) that is no longer noise: >= DELAY_P99_MS and >= DELAY_SHARE of latency."""
    if p99 is None or float(p99) < DELAY_P99_MS:
        return False
    share = _share(p99, latency_p99)
    return share is None or share >= DELAY_SHARE


def _added(s: Signs) -> str:
    lat99 = s.latency.get("p99")
    share = _share(s.delay.get("p99"), lat99)
    lag = s.send_lag if _counted(s.send_lag) else None
    unc = s.socket_uncorrected if _counted(s.socket_uncorrected) else None
    return (
        f"the generator added p50 {_ms(s.delay.get('p50'))} / p99 {_ms(s.delay.get('p99'))} of its own on receipt"
        + (f" ({share:.0%} of the latency p99 {_ms(lat99)})" if share is not None else "")
        + (f" and sent p50 {_ms(lag['p50'])} / p99 {_ms(lag['p99'])} late" if lag else "")
        + f"; at the socket the server's latency was p50 {_ms(s.socket.get('p50'))} / p99 {_ms(s.socket.get('p99'))}"
        + (f" (from the actual send: p50 {_ms(unc['p50'])} / p99 {_ms(unc['p99'])})" if unc else "")
        + (f"; {_got(s.cpu_wait)}" if s.cpu_wait is not None and s.cpu_wait.got_ratio is not None else "")
    )


def _got(w: CpuWait) -> str:
    per = f", waiting {w.ms_per_slice:.3f} ms for a CPU each time it ran" if w.ms_per_slice is not None else ""
    return f"its event loop got {w.got_ratio:.0%} of the CPU time it asked for{per}"


def saturation(s: Signs) -> list[str]:
    """The evidence that the generator was saturated over the run (empty: none)."""
    out = []
    if s.cpu_busy_ratio is not None and s.cpu_busy_ratio >= BUSY_SHARE:
        out.append(
            f"its CPU was at {CPU_PCT_LIMIT:.0f}% of a core or more in {s.cpu_busy_ratio:.0%} of the measured intervals"
        )
    if _counted(s.send_lag) and float(s.send_lag["p99"]) >= SEND_LAG_MS_LIMIT:
        out.append(f"its send schedule fell behind: send lag p99 {_ms(s.send_lag['p99'])}")
    w = s.cpu_wait
    if w is not None and w.got_ratio is not None and w.got_ratio < CPU_GOT_LIMIT:
        out.append(f"it was starved of CPU: {_got(w)}")
    first, last = s.delay_first, s.delay_last
    if (
        int(first.get("count") or 0) >= GROWTH_MIN_COUNT
        and int(last.get("count") or 0) >= GROWTH_MIN_COUNT
        and first.get("p50") is not None
        and last.get("p50") is not None
    ):
        a, b = float(first["p50"]), float(last["p50"])
        if b >= GROWTH_FACTOR * a and b - a >= GROWTH_MS:
            out.append(
                f"its own receive delay grew over the run: p50 {_ms(a)} in the first third, {_ms(b)} in the last"
            )
    return out


def _where(events: Sequence[Mapping[str, Any]]) -> str:
    if not events:
        return ""
    workers = sorted({str(e["worker"]) for e in events if e.get("worker")})
    first = min(float(e.get("t_s", 0.0)) for e in events)
    return f" (at its limits first at {first:.0f} s" + (f"; workers {', '.join(workers)}" if workers else "") + ")"


def judge(s: Signs) -> Verdict:
    """The run's self-check (see the module doc): what the generator added, and whether it was the limit."""
    measured = _counted(s.delay)
    lat99 = s.latency.get("p99")
    found = saturation(s)
    added = _added(s) if measured else None
    lag_matters = _counted(s.send_lag) and _matters(s.send_lag["p99"], lat99)
    if measured:
        matters = _matters(s.delay["p99"], lat99) or lag_matters
    else:  # the receive delay is unmeasured: sustained CPU is taken at its word
        matters = lag_matters or bool(s.cpu_busy_ratio is not None and s.cpu_busy_ratio >= BUSY_SHARE)
    bottleneck = bool(found) and matters
    if found and not bottleneck and added is not None:
        added += (
            f"; it showed signs of saturation ({'; '.join(found)}), but its own part (receive delay, send lag) "
            f"stayed under {DELAY_SHARE:.0%} of the latency p99: not the bottleneck"
        )
    detail = None
    if bottleneck:
        why = "; ".join(found) + _where(s.busy_events)
        if measured:
            detail = f"the generator was the bottleneck: {why}; {added}"
        else:
            lag = s.send_lag
            share = _share(lag.get("p99"), lat99) if _counted(lag) else None
            unmeasured = "(no kernel-stamped probes)"
            detail = f"the generator was the bottleneck: {why}; " + (
                f"its send lag p99 is {share:.0%} of the latency p99, its receive delay is not measured {unmeasured}"
                if share is not None
                else f"its own share of the latency is not measured {unmeasured}"
            )
    return Verdict("measured" if measured else "estimated", added, found, bottleneck, detail, s.cpu_busy_ratio)
