"""Generator self-checks: its own CPU, event-loop lag, open file descriptors, how late it sends.

A load generator that is itself saturated reports its own delays as the server's. Each interval
records what the generator went through; :func:`bottleneck_reasons` says when one interval was at the
limits (a ``generator_busy`` sign), and :mod:`wsbench.core.selfcheck` judges from the whole run whether
the generator was the bottleneck (the report's warning).
"""

from __future__ import annotations

import asyncio
import os
import time

import psutil

from wsbench.core.selfcheck import bottleneck_reasons as bottleneck_reasons  # the rule is the core's


class CpuMeter:
    """CPU seconds of this process between calls."""

    def __init__(self) -> None:
        self._proc = psutil.Process()
        self._last_cpu = self._cpu()
        self._last_wall = time.monotonic()
        self.total_s = 0.0

    def _cpu(self) -> float:
        t = os.times()
        return t.user + t.system

    def sample(self) -> tuple[float, float]:
        """``(cpu_seconds, cpu_percent_of_one_core)`` since the previous sample."""
        cpu, wall = self._cpu(), time.monotonic()
        used, span = cpu - self._last_cpu, wall - self._last_wall
        self._last_cpu, self._last_wall = cpu, wall
        self.total_s += used
        return used, (100.0 * used / span if span > 0 else 0.0)

    def open_fds(self) -> int:
        try:
            return self._proc.num_fds()
        except (psutil.Error, AttributeError):
            return -1


class LoopLagMonitor:
    """Schedules a callback every ``period_s`` and records how late it runs (the loop's lag).

    Timers fire on whole milliseconds, so up to about 1 ms of lag is the timer's resolution.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, period_s: float = 0.025) -> None:
        self.loop = loop
        self.period_s = period_s
        self.max_lag_s = 0.0
        self._expected = 0.0
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._expected = time.monotonic() + self.period_s
        self._handle = self.loop.call_later(self.period_s, self._tick)

    def _tick(self) -> None:
        # time.monotonic, not loop.time(): uvloop's loop time has a resolution of one millisecond
        now = time.monotonic()
        lag = now - self._expected
        if lag > self.max_lag_s:
            self.max_lag_s = lag
        self._expected = now + self.period_s
        self._handle = self.loop.call_later(self.period_s, self._tick)

    def take_max_ms(self) -> float:
        lag, self.max_lag_s = self.max_lag_s, 0.0
        return round(max(lag, 0.0) * 1e3, 3)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
