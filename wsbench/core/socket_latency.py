"""Latency at the socket: what the probe receivers' kernel stamps say (pure code, no socket).

A probe receiver (:mod:`wsbench.drivers.probe`) is an ordinary client of the room whose frames are
accounted like everyone's (``latency`` includes them), and which also knows, per frame, when its last
TCP segment reached the kernel. Per new delivery to a probe, three latencies are recorded in each
interval's histograms:

* ``latency_probes``: intended send time to the user-space receive time (``latency``, for the probes alone);
* ``latency_socket``: intended send time to the kernel's receive stamp: what the server (and the
  network) took, whatever the generator's own event loop did after the bytes arrived;
* ``generator_delay``: the user-space receive time minus the kernel stamp: how long the frame waited
  in the generator (socket buffer, event loop) before the generator looked at it;
* ``latency_socket_uncorrected``: the *actual* send time to the kernel stamp (``latency_socket``
  without the generator's own lateness in sending, as ``latency_uncorrected`` is to ``latency``).

For the stamped deliveries ``latency_probes = latency_socket + generator_delay`` exactly.

Which stamps are a frame's own
------------------------------
The kernel keeps one stamp per socket buffer, and TCP merges ("coalesces") a segment that arrives
while earlier data still waits to be read into the waiting buffer, which then carries the *newest*
segment's stamp. A frame read from such a buffer gets the stamp of a later frame, not its own. The
probe sees it: two consecutive reads that return the same stamp came from one merged buffer, and only
the last frame of such a run owns the stamp (its segment was the last merged in). Frames whose stamp
is not their own (``coalesced``) are left out of ``latency_socket`` and ``generator_delay`` (they are
in ``latency`` and ``latency_probes``); their count is in the interval counters. A frame is the last
of its run when the frames after it were sent later, which does not depend on how long the server
took with it, so the frames kept are a fair sample.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from wsbench.core.recorder import Recorder

#: interval histograms written by the probes
HISTOGRAMS = ("latency_probes", "latency_socket", "generator_delay", "latency_socket_uncorrected")
#: interval counters written by the probes
COUNTERS = ("probe_delivered", "probe_stamped", "probe_coalesced")


class ProbeFrames:
    """What the probes add per received text frame, beside the shared receive buffer's entry.

    ``position`` is the frame's index in the shared buffer's current batch, ``kernel_ns`` its stamp
    (``CLOCK_REALTIME``; 0: none), ``own`` whether that stamp is the frame's own (see the module doc).
    """

    __slots__ = ("kernel_ns", "own", "position")

    def __init__(self) -> None:
        self.position = array("q")
        self.kernel_ns = array("q")
        self.own = array("b")

    def take(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = (
            np.frombuffer(self.position, dtype=np.int64).copy(),
            np.frombuffer(self.kernel_ns, dtype=np.int64).copy(),
            np.frombuffer(self.own, dtype=np.int8).astype(bool),
        )
        self.clear()
        return out

    def clear(self) -> None:
        del self.position[:]
        del self.kernel_ns[:]
        del self.own[:]

    def __len__(self) -> int:
        return len(self.position)


@dataclass(slots=True)
class ProbeSamples:
    """The latencies (us) of one batch's new deliveries to probes."""

    user_us: np.ndarray  # latency_probes
    socket_us: np.ndarray  # latency_socket (stamped, own stamp)
    delay_us: np.ndarray  # generator_delay (same deliveries as socket_us)
    socket_uncorrected_us: np.ndarray  # latency_socket_uncorrected (same deliveries)
    coalesced: int  # new deliveries whose stamp was not their own
    unstamped: int  # new deliveries that carried no stamp at all


def probe_samples(
    position: np.ndarray,
    kernel_mono_us: np.ndarray,
    own: np.ndarray,
    new: np.ndarray,
    recv_us: np.ndarray,
    intended_us: np.ndarray,
    actual_us: np.ndarray | None = None,
) -> ProbeSamples:
    """Per-delivery latencies of the probes' frames in one batch.

    ``position``, ``kernel_mono_us`` (the stamp on the run's clock, us since its epoch; negative: no
    stamp) and ``own`` are per probe frame; ``new``, ``recv_us`` and ``intended_us`` per frame of the
    whole batch (``new``: a first receipt, per the accounting; frames without a trailer are not new),
    and so is ``actual_us`` (the actual send times; default: the intended ones).
    """
    position = np.asarray(position, dtype=np.int64)
    keep = np.asarray(new, dtype=bool)[position]
    pos = position[keep]
    k_us = np.asarray(kernel_mono_us, dtype=np.int64)[keep]
    mine = np.asarray(own, dtype=bool)[keep]
    r_us = np.asarray(recv_us, dtype=np.int64)[pos]
    i_us = np.asarray(intended_us, dtype=np.int64)[pos]
    a_us = np.asarray(actual_us if actual_us is not None else intended_us, dtype=np.int64)[pos]
    stamped = k_us >= 0
    good = stamped & mine
    return ProbeSamples(
        user_us=np.maximum(r_us - i_us, 0),
        socket_us=np.maximum(k_us[good] - i_us[good], 0),
        delay_us=np.maximum(r_us[good] - k_us[good], 0),
        socket_uncorrected_us=np.maximum(k_us[good] - a_us[good], 0),
        coalesced=int(np.count_nonzero(stamped & ~mine)),
        unstamped=int(np.count_nonzero(~stamped)),
    )


def record_batch(
    rec: Recorder, probe: tuple[np.ndarray, np.ndarray, np.ndarray], recv_us: np.ndarray
) -> tuple[int, int]:
    """Record the probes' part of the batch ``rec`` just ingested: their histograms (:data:`HISTOGRAMS`)
    and counters (:data:`COUNTERS`) go to the interval of each message's **intended send time**, like
    every delivery (:mod:`wsbench.core.recorder`), in both drivers.

    ``probe`` is ``(position, kernel_us, own)`` per probe frame (:class:`ProbeFrames`, the stamp on the
    run's clock in us, negative: none); ``recv_us`` is the whole batch's, as given to ``rec.ingest``.
    Returns the batch's new probe deliveries ``(without a stamp, with one)`` (a run's "no stamps" check).
    """
    seen = rec.last_batch
    if seen is None:
        return 0, 0
    position, kernel_us, own = probe
    valid = seen.valid
    new_full = np.zeros(len(valid), dtype=bool)
    new_full[np.flatnonzero(valid)] = seen.new
    intended, actual = seen.intended_us, seen.actual_us
    when = np.where(valid[position], intended[position], recv_us[position])
    unstamped = stamped = 0
    for t_us, sel in rec.group_by_interval(when):
        s = probe_samples(position[sel], kernel_us[sel], own[sel], new_full, recv_us, intended, actual)
        values = (s.user_us, s.socket_us, s.delay_us, s.socket_uncorrected_us)
        for name, v in zip(HISTOGRAMS, values, strict=True):
            rec.record_values(name, t_us, v)
        for name, n in zip(COUNTERS, (len(s.user_us), len(s.socket_us), s.coalesced), strict=True):
            if n:
                rec.count(name, t_us, n)
        unstamped += s.unstamped
        stamped += len(s.socket_us) + s.coalesced
    return unstamped, stamped


# -- the summary's view (the self-check built on these histograms: wsbench.core.selfcheck) ------------------
def probes_summary(intervals: list[dict[str, Any]], probe_events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The summary's ``probes`` block: how many probe receivers, whether the kernel stamped, the counts."""
    if not probe_events and not any("probe_delivered" in (r.get("counters") or {}) for r in intervals):
        return None
    # one event per run (wsbench run) or one per probe of each Locust process
    ev = probe_events[0] if probe_events else {}
    stamped = [e for e in probe_events if e.get("kernel_stamps")]
    unstamped = [e for e in probe_events if not e.get("kernel_stamps")]

    def total(name: str) -> int:
        return sum(int((r.get("counters") or {}).get(name, 0)) for r in intervals)

    return {
        "receivers": sum(int(e.get("receivers") or 0) for e in probe_events) if probe_events else None,
        "kernel_stamps": (not unstamped) if probe_events else None,
        "detail": (unstamped or stamped or [ev])[0].get("detail"),
        "delivered": total("probe_delivered"),
        "stamped": total("probe_stamped"),
        "coalesced": total("probe_coalesced"),
        "clock_steps": max((int((r.get("generator") or {}).get("clock_steps", 0)) for r in intervals), default=0),
    }
