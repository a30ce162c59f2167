"""The body of ``GET /stats`` (SPEC 5): the server's counts and its process figures (resident set size,
uptime, CPU time), under the SPEC's keys, in one place.

Shared by the two servers: it reads the process and formats counts each server keeps, not the wire (no
protocol handling here).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

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

    def stats(
        self,
        server: str,
        framework_version: str,
        *,
        connections: int,
        online: int,
        messages_in: int,
        deliveries_out: int,
        slow_consumer_closes: int,
    ) -> dict[str, Any]:
        """The ``/stats`` body (SPEC 5.1) from a server's own counts and this process's figures."""
        return {
            "server": server,
            "framework_version": framework_version,
            "connections": connections,
            "online": online,
            "messages_in": messages_in,
            "deliveries_out": deliveries_out,
            "slow_consumer_closes": slow_consumer_closes,
            "rss_bytes": self.rss_bytes(),
            "uptime_s": self.uptime_s(),
            "cpu_s": self.cpu_s(),
        }
