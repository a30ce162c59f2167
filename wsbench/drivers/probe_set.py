"""The engine's probe receivers: which clients they are, their frames' stamps, their latencies.

The engine keeps one :class:`ProbeSet`. It picks the probes (``scenario.probes`` clients, spread over
the plain receivers, or over the senders when every reader sends), opens them with
:func:`wsbench.drivers.probe.open_probe` instead of picows, and after each batch has been accounted
hands it the batch (:meth:`ProbeSet.ingest`) so that the probes' new deliveries are recorded in
``latency_probes``, ``latency_socket``, ``generator_delay`` and ``latency_socket_uncorrected`` of the
interval of their message's intended send time (:func:`wsbench.core.socket_latency.record_batch`, the
Locust collector's rule too). The kernel stamps are converted to the run's clock with a
:class:`~wsbench.core.stamps.ClockBridge`, re-checked every interval.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from wsbench.core.recorder import Recorder
from wsbench.core.socket_latency import ProbeFrames, record_batch
from wsbench.core.stamps import ClockBridge
from wsbench.drivers.chat_client import ClientState, ReceiveBuffer, open_chat
from wsbench.drivers.probe import ProbeTransport, open_probe


def choose_probes(count: int, senders: int, clients: int, stalled: int) -> list[int]:
    """``count`` client ids spread evenly over the plain receivers (over the senders if there are none)."""
    plain = list(range(senders, clients - stalled))
    pool = plain or list(range(senders))
    count = min(count, len(pool))
    if count <= 0:
        return []
    return [pool[int((i + 0.5) * len(pool) / count)] for i in range(count)]


class ProbeSet:
    def __init__(self, ids: list[int], epoch_ns: int) -> None:
        self.ids = frozenset(ids)
        self.epoch_ns = epoch_ns
        self.frames = ProbeFrames()
        self.clock = ClockBridge(time.monotonic_ns, time.time_ns)
        self.no_stamps: str | None = None  # why the kernel does not stamp (first reason seen)
        self.opened = 0
        self.unstamped = 0  # new deliveries to probes without a stamp, and with one (whole run)
        self.stamped = 0
        self.warned = False  # the run said once that there are no stamps

    def __bool__(self) -> bool:
        return bool(self.ids)

    async def open(
        self, ws_url: str, cookie: str, state: ClientState, on_close: Any, timeout: float, rx: ReceiveBuffer
    ) -> ProbeTransport | Any:
        if not ws_url.startswith("ws://"):  # TLS: the kernel's stamps are of ciphertext records
            self.no_stamps = self.no_stamps or "probe receivers read plain TCP, and this target is wss://"
            return await open_chat(ws_url, cookie, state, on_close, timeout, rx)
        transport, no_stamps = await open_probe(ws_url, cookie, state, on_close, timeout, rx, self.frames)
        self.opened += 1
        if no_stamps and self.no_stamps is None:
            self.no_stamps = no_stamps
        return transport

    def take(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The probes' part of the batch just taken from the shared receive buffer (``None``: nothing)."""
        if not len(self.frames):
            return None
        return self.frames.take()

    def ingest(
        self, rec: Recorder, taken: tuple[np.ndarray, np.ndarray, np.ndarray] | None, recv_us: np.ndarray
    ) -> None:
        """Record the probes' new deliveries of the batch ``rec`` just ingested (``recv_us``: the whole
        batch's), by their messages' intended send time: :func:`wsbench.core.socket_latency.record_batch`,
        the Locust collector's rule too."""
        if taken is None:
            return
        position, kernel_ns, own = taken
        kernel_us = np.where(kernel_ns > 0, (kernel_ns - self.clock.offset.ns - self.epoch_ns) // 1000, -1)
        unstamped, stamped = record_batch(rec, (position, kernel_us, own), recv_us)
        self.unstamped += unstamped
        self.stamped += stamped

    def take_interval(self) -> dict[str, Any]:
        """The interval's generator fields (the clock bridge's); re-checks the clock offset."""
        self.clock.recheck()
        return {
            "clock_offset_uncertainty_us": round(self.clock.offset.uncertainty_ns / 1000, 3),
            "clock_steps": self.clock.steps,
        }

    def kernel_stamps(self) -> bool:
        return self.no_stamps is None

    def unstamped_reason(self) -> str | None:
        """Why there are no kernel stamps: refused at set-up, or enabled but never returned."""
        if self.no_stamps is not None:
            return self.no_stamps
        if self.unstamped and not self.stamped:
            return "the kernel returned no receive stamps (SO_TIMESTAMPNS was accepted)"
        return None
