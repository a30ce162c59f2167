"""Measured cases: a slow consumer under a broadcast (SPEC 11, 7.4) and Nagle stalls (SPEC 13.1).

The slow-consumer run is made once per target and shared by three cases (close, memory, the others'
latency). Latency is taken from each message's *intended* send time on a fixed schedule, so a server
that stalls the sender is charged for the stall (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
from dataclasses import dataclass, field

from hdrh.histogram import HdrHistogram

from wsbench.conform.http_client import fmt_duration, now
from wsbench.conform.model import Outcome
from wsbench.conform.session import (
    REPLY_TIMEOUT,
    SAID,
    CaseContext,
    CaseSkipped,
    Peer,
    join_line,
    join_room,
    leave_line,
)
from wsbench.conform.wire import OP_TEXT, CloseObservation, encode_frame
from wsbench.core import histograms

#: Broadcast used to find a slow consumer: message size (capped by max_message_size), rate, duration.
#: Fewer, larger messages (8 MB/s in all) keep the per-message CPU of server and gate low, so that a
#: busy machine does not turn into a backlog that reads as latency. The baseline (no slow client) and
#: the stall run equally long, so both phases are compared on the same footing; the stall is long
#: enough for a queue without a bound to grow to many times send_buffer_limit (about 20 MB), and for
#: memory to be seen to level off (SPEC 11.3).
SLOW_MESSAGE_SIZE = 32768
SLOW_RATE = 250.0
SLOW_DURATION = 2.5
STALL_DURATION = SLOW_DURATION
FAST_RECEIVERS = 3
#: The slow client's receive buffer (set before connect, so the kernel cannot hide a slow reader).
SLOW_RCVBUF = 4096
#: The others' latency with the slow client, against an equally long run without it: the median must
#: stay within FACTOR x (+ SLACK_MS) and the p99 within FACTOR x (+ TAIL_SLACK_MS). A broadcast that
#: waits on the slow socket delays every delivery by seconds (the median shows it); a busy shared
#: machine delays single deliveries by a scheduler slice or a few (100-400 ms measured at load 10), which
#: moves a p99 of a 2.5 s run but not its median, so the tail gets the larger slack.
LATENCY_FACTOR = 3.0
LATENCY_SLACK_MS = 50.0
TAIL_SLACK_MS = 500.0
#: SPEC 11.3 "bounded", judged on RSS samples (every RSS_PERIOD s) across the stall. Growth of at most
#: RSS_ALLOWANCE + 4 x send_buffer_limit passes at once. More than that (a garbage-collected runtime's
#: heap can grow by several MiB under this load) still passes when the growth has levelled off (the
#: last third of the stall added at most LATE_FRACTION of what an unbounded queue adds in that time, or
#: LATE_FLOOR) and stays under FAR_BELOW of what an unbounded queue would hold by the end (about 20 MB
#: here: every frame broadcast during the stall).
RSS_ALLOWANCE = 4 * 2**20
RSS_PERIOD = 0.1
LATE_FRACTION = 0.25
LATE_FLOOR = 2**20
FAR_BELOW = 0.5

#: Nagle: rounds of the conversation pattern; a median gap above STALL_MS between two frames sent
#: together is a delayed-ACK stall (about 40 ms on Linux, versus well under 1 ms with TCP_NODELAY).
NAGLE_ROUNDS = 25
STALL_MS = 20.0


@dataclass
class Phase:
    sent: int = 0
    scheduled: int = 0
    received: list[int] = field(default_factory=list)
    histogram: HdrHistogram = field(default_factory=histograms.new_histogram)

    @property
    def lost(self) -> int:
        return sum(self.scheduled - r for r in self.received)

    @property
    def p99_ms(self) -> float | None:
        return histograms.value_ms(self.histogram, 99.0) if self.histogram.get_total_count() else None

    @property
    def p50_ms(self) -> float | None:
        return histograms.value_ms(self.histogram, 50.0) if self.histogram.get_total_count() else None


@dataclass
class SlowConsumerRun:
    size: int
    rate: float
    duration: float
    baseline: Phase
    loaded: Phase
    stats_before: dict[str, object] | None
    stats_after: dict[str, object] | None
    rss_before: int | None
    rss_samples: list[tuple[float, int]]  # (seconds into the stall, RSS bytes)
    stall_s: float  # how long the stall (loaded phase) lasted
    unbounded_bytes: int  # what a queue without a bound would hold for the slow client at the end
    leave_after: float | None  # seconds from the start of the loaded phase to the others' leave line
    leave_counts: list[int]
    slow_close: CloseObservation | None
    slow_bytes: int

    @property
    def closes_delta(self) -> int | None:
        if not self.stats_before or not self.stats_after:
            return None
        a, b = self.stats_before.get("slow_consumer_closes"), self.stats_after.get("slow_consumer_closes")
        return int(b) - int(a) if isinstance(a, int) and isinstance(b, int) else None


def _rss(stats: dict[str, object] | None) -> int | None:
    value = stats.get("rss_bytes") if stats else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


async def broadcast_phase(
    sender: Peer, receivers: list[Peer], size: int, rate: float, duration: float, tag: str
) -> tuple[Phase, float]:
    """One sender on a fixed schedule, receivers timing each delivery from its intended send time."""
    count = int(rate * duration)
    phase = Phase(scheduled=count)
    start = now() + 0.02
    prefixes = [f"{tag}{i:07d} " for i in range(count)]
    pad = "x" * max(0, size - len(prefixes[0]))

    async def send_all() -> None:
        for i in range(count):
            delay = start + i / rate - now()
            if delay > 0:
                await asyncio.sleep(delay)
            await sender.ws.send_text(prefixes[i] + pad)
            phase.sent += 1

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(send_all(), duration + 3.0)
    marker = sender.nick + SAID + tag
    needed = phase.sent

    def done() -> bool:
        return all(
            sum(1 for m in r.messages_from(sender.nick) if m.text.startswith(marker)) >= needed for r in receivers
        )

    await receivers[0].ws.wait_until(done, 1.5)
    for r in receivers:
        await r.ws.wait_until(done, 0.2)
    skip = len(sender.nick) + len(SAID)
    for r in receivers:
        got = 0
        for m in r.messages_from(sender.nick):
            body = m.text[skip:]
            if not body.startswith(tag):
                continue
            seq = int(body[len(tag) : len(tag) + 7])
            latency_us = max(1, int((m.t - (start + seq / rate)) * 1e6))
            phase.histogram.record_value(min(latency_us, histograms.HIGHEST_US))
            got += 1
        phase.received.append(got)
    return phase, start


async def run_slow_consumer(ctx: CaseContext) -> SlowConsumerRun:
    size = min(SLOW_MESSAGE_SIZE, ctx.options.max_message_size)
    if size < 16:
        raise CaseSkipped(f"max_message_size {size} is too small for the timed messages of this case")
    peers = await join_room(ctx, 1 + FAST_RECEIVERS)
    sender, receivers = peers[0], peers[1:]
    baseline, _ = await broadcast_phase(sender, receivers, size, SLOW_RATE, SLOW_DURATION, "a")
    stats_before = await ctx.stats()
    slow = await ctx.join(tag="slow", read=False, auto_pong=False, rcvbuf=SLOW_RCVBUF)
    await receivers[0].wait_line(join_line(slow.nick), 1.0)

    samples: list[tuple[float, int]] = []
    sampling = True
    t0 = now()

    async def sample() -> None:
        while sampling:
            rss = _rss(await ctx.stats())
            if rss is not None:
                samples.append((now() - t0, rss))
            await asyncio.sleep(RSS_PERIOD)

    sampler = asyncio.get_running_loop().create_task(sample())
    try:
        loaded, start = await broadcast_phase(sender, receivers, size, SLOW_RATE, STALL_DURATION, "b")
        await receivers[0].wait_line(leave_line(slow.nick), 0.5)
    finally:
        sampling = False
        await sampler
    stall_s = now() - t0
    stats_after = await ctx.stats()
    rss = _rss(stats_after)
    if rss is not None:
        samples.append((now() - t0, rss))
    frame_bytes = len((sender.nick + SAID).encode()) + size + 4  # relayed line plus a 4-byte frame header
    line = leave_line(slow.nick)
    leave_times = [m.t for m in receivers[0].ws.messages if m.text == line]
    slow.ws.start_reading()
    close = await slow.ws.observe_close(start, 4.0, end_timeout=2.5)
    return SlowConsumerRun(
        size=size,
        rate=SLOW_RATE,
        duration=STALL_DURATION,
        baseline=baseline,
        loaded=loaded,
        stats_before=stats_before,
        stats_after=stats_after,
        rss_before=_rss(stats_before),
        rss_samples=samples,
        stall_s=stall_s,
        unbounded_bytes=loaded.sent * frame_bytes,
        leave_after=leave_times[0] - start if leave_times else None,
        leave_counts=[r.count(line) for r in receivers],
        slow_close=close,
        slow_bytes=slow.ws.bytes_received,
    )


async def slow_run(ctx: CaseContext) -> SlowConsumerRun:
    return await ctx.measurement("slow_consumer", lambda: run_slow_consumer(ctx))


def _load_text(run: SlowConsumerRun) -> str:
    return f"{run.rate:g} msg/s x {run.size} B for {run.duration:g} s"


@dataclass(frozen=True)
class MemoryVerdict:
    """SPEC 11.3 judged from RSS samples across the stall (see RSS_ALLOWANCE and what follows it)."""

    growth: int  # peak RSS minus RSS before the stall
    late_growth: int  # how much the last third of the stall added to the peak of the first two thirds
    allowance: int  # growth that passes outright
    late_limit: int  # levelled off: the last third added at most this
    far_below: int  # and the growth stays under this
    passed: bool


def judge_memory(
    rss_before: int, samples: list[tuple[float, int]], stall_s: float, unbounded: int, send_buffer_limit: int
) -> MemoryVerdict:
    """Pure: is the server's memory bounded across the stall (SPEC 11.3)?"""
    peak = max([rss_before, *(rss for _, rss in samples)])
    cut = stall_s * 2 / 3
    early_peak = max([rss_before, *(rss for t, rss in samples if t < cut)])
    growth, late = peak - rss_before, peak - early_peak
    allowance = RSS_ALLOWANCE + 4 * send_buffer_limit
    late_limit = max(LATE_FLOOR, int(LATE_FRACTION * unbounded / 3))
    far_below = int(FAR_BELOW * unbounded)
    passed = growth <= allowance or (late <= late_limit and growth <= far_below)
    return MemoryVerdict(growth, late, allowance, late_limit, far_below, passed)


async def slow_consumer_close(ctx: CaseContext) -> Outcome:
    run = await slow_run(ctx)
    problems = []
    close = run.slow_close
    how = "no observation"
    if close is not None:
        if close.kind == "close":
            how = f"close {close.code} {close.reason!r}"
            if close.code != 1008:
                problems.append(f"closed with {close.code}, not 1008")
        elif close.kind == "dropped":
            how = "dropped without close frame" + (" (TCP reset)" if close.end and close.end.kind == "rst" else "")
        else:
            how = "still open"
            problems.append("never closed")
    if run.leave_after is None:
        problems.append("no leave line during the load")
    elif set(run.leave_counts) != {1}:
        problems.append(f"leave line counts {run.leave_counts}")
    delta = run.closes_delta
    if delta is None:
        counter = "/stats slow_consumer_closes unavailable"
        interval = ctx.options.ping_interval
        if run.leave_after is not None and interval > 0 and run.leave_after > interval:
            problems.append("closed only after a ping could have timed out")
    else:
        counter = f"/stats slow_consumer_closes +{delta}"
        if delta < 1:
            problems.append("not counted as a slow-consumer close")
    seen = f"under {_load_text(run)}: the non-reading client got {how}"
    if run.leave_after is not None:
        seen += f"; others saw its leave line {fmt_duration(run.leave_after)} into the load"
    seen += f"; {counter}; it received {run.slow_bytes / 1024:.0f} KiB in all"
    return Outcome(not problems, seen + (f" — {', '.join(problems)}" if problems else ""))


async def slow_consumer_memory(ctx: CaseContext) -> Outcome:
    run = await slow_run(ctx)
    if run.rss_before is None or not run.rss_samples:
        return Outcome(False, "/stats has no rss_bytes: the server's memory cannot be checked")
    v = judge_memory(run.rss_before, run.rss_samples, run.stall_s, run.unbounded_bytes, ctx.options.send_buffer_limit)
    mib = 2**20
    seen = (
        f"RSS {run.rss_before / mib:.1f} MiB before, +{v.growth / mib:.1f} MiB at the peak "
        f"({len(run.rss_samples)} samples over {run.stall_s:.1f} s), +{v.late_growth / mib:.1f} MiB in the last third; "
        f"an unbounded queue would hold {run.unbounded_bytes / mib:.1f} MiB; "
        f"allowed +{v.allowance / mib:.1f} MiB, or levelled off (last third <= +{v.late_limit / mib:.1f} MiB) "
        f"and under +{v.far_below / mib:.1f} MiB; under {_load_text(run)}"
    )
    return Outcome(v.passed, seen)


async def slow_consumer_others(ctx: CaseContext) -> Outcome:
    run = await slow_run(ctx)
    base, loaded = run.baseline, run.loaded
    if base.p99_ms is None or loaded.p99_ms is None or base.p50_ms is None or loaded.p50_ms is None:
        return Outcome(False, f"nothing delivered (baseline {base.received}, with slow client {loaded.received})")
    limit = LATENCY_FACTOR * base.p50_ms + LATENCY_SLACK_MS
    tail_limit = LATENCY_FACTOR * base.p99_ms + TAIL_SLACK_MS
    problems = []
    if loaded.lost:
        problems.append(f"{loaded.lost} deliveries lost or not sent")
    if loaded.p50_ms > limit:
        problems.append(f"median over {limit:.1f} ms")
    if loaded.p99_ms > tail_limit:
        problems.append(f"p99 over {tail_limit:.1f} ms")
    seen = (
        f"{FAST_RECEIVERS} other clients' median {loaded.p50_ms:.1f} ms, p99 {loaded.p99_ms:.1f} ms with the slow "
        f"client vs {base.p50_ms:.1f} / {base.p99_ms:.1f} ms without (allowed {LATENCY_FACTOR:g}x + "
        f"{LATENCY_SLACK_MS:g} ms / + {TAIL_SLACK_MS:g} ms); "
        f"delivered {sum(loaded.received)}/{loaded.scheduled * len(loaded.received)}"
    )
    return Outcome(not problems, seen + (f" — {', '.join(problems)}" if problems else ""))


async def nodelay_conversation(ctx: CaseContext) -> Outcome:
    """The conversation pattern: A talks, B answers with two frames at once; the server writes both to
    A. With Nagle on, the second waits for A's delayed ACK of the first (~40 ms)."""
    a, b = await join_room(ctx, 2)
    gaps: list[float] = []
    for i in range(NAGLE_ROUNDS):
        await a.ws.send_text(f"q{i}")
        if not await b.wait_from(a.nick, i + 1, REPLY_TIMEOUT):
            return Outcome(False, f"round {i}: B never got A's message")
        await b.ws.send_raw(encode_frame(OP_TEXT, f"r{i}a".encode()) + encode_frame(OP_TEXT, f"r{i}b".encode()))
        if not await a.wait_from(b.nick, 2 * (i + 1), REPLY_TIMEOUT):
            return Outcome(False, f"round {i}: A did not get both of B's answers")
        first, second = a.messages_from(b.nick)[-2:]
        gaps.append(second.t - first.t)
    median_ms = statistics.median(gaps) * 1000
    worst_ms = max(gaps) * 1000
    stalled = median_ms >= STALL_MS
    seen = (
        f"{NAGLE_ROUNDS} rounds: second of two back-to-back frames arrived {median_ms:.2f} ms after the first "
        f"(median; max {worst_ms:.1f} ms)"
    )
    if ctx.options.nodelay:
        return Outcome(not stalled, seen + (" — a Nagle/delayed-ACK stall" if stalled else ""))
    # started with --no-nodelay: the stall must show, proving the server really cleared TCP_NODELAY
    return Outcome(
        stalled,
        seen + (" — stall seen, as expected with --no-nodelay" if stalled else " — no stall although --no-nodelay"),
    )
