"""The process figures of ``GET /stats`` (SPEC 5): resident set size, uptime and CPU time.

Shared by the two servers: it reads the process, not the wire (no protocol handling here).
"""

from __future__ import annotations

import contextlib
import time

import psutil


class ProcessMeter:
    """Reads this process's figures; the RSS keeps its last value when /proc cannot be opened."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.process = psutil.Process()
        self._rss = 0

    def rss_bytes(self) -> int:
        """The resident set size; the last one read when /proc cannot be opened (out of descriptors)."""
        with contextlib.suppress(OSError, psutil.Error):
            self._rss = self.process.memory_info().rss
        return self._rss

    def uptime_s(self) -> float:
        return round(time.monotonic() - self.started, 3)

    def cpu_s(self) -> float:
        return round(time.process_time(), 4)
