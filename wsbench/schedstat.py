"""How long a thread waited for a CPU: the kernel's scheduler statistics of one task.

``/proc/thread-self/schedstat`` (Linux; the kernel's ``Documentation/scheduler/sched-stats.rst``) holds
three numbers for the calling thread: the time it spent on a CPU (ns), the time it spent *runnable but
waiting on a run queue* (ns), and how many time slices it ran. The second is what neither CPU time nor
wall time shows: a generator whose event loop is ready to read a frame but whose CPU is taken (by the
server on the same cores, by another job on a shared machine) adds that wait to every latency it
measures. ``psutil`` has no figure for it (its ``cpu_times`` are on-CPU time only), so it is read here,
with the standard library only; :mod:`wsbench.core.selfcheck` says what the figures mean.

The driver calls :meth:`RunQueueWait.sample` from its event-loop thread (the engine's asyncio loop, a
Locust process's gevent hub), so the figures are that thread's. Where the file does not exist (not
Linux, a kernel without ``CONFIG_SCHED_INFO``) every sample is ``None`` and the interval records leave
the fields out.
"""

from __future__ import annotations

from dataclasses import dataclass

PATH = "/proc/thread-self/schedstat"


def read(path: str = PATH) -> tuple[int, int, int] | None:
    """``(on_cpu_ns, run_queue_wait_ns, slices)`` of the calling thread, or ``None`` if unreadable."""
    try:
        with open(path, encoding="ascii") as f:
            fields = f.read().split()
        on_cpu, waited, slices = (int(x) for x in fields[:3])
    except (OSError, ValueError):
        return None
    return on_cpu, waited, slices


@dataclass
class WaitSample:
    """One interval's figures: seconds runnable but waiting for a CPU, and slices run."""

    wait_s: float
    slices: int

    def __add__(self, other: WaitSample) -> WaitSample:
        return WaitSample(self.wait_s + other.wait_s, self.slices + other.slices)

    def fields(self) -> dict[str, float | int]:
        """The interval record's ``generator`` keys (docs/results-format.md)."""
        return {"cpu_wait_s": round(self.wait_s, 6), "cpu_slices": self.slices}


class RunQueueWait:
    """The calling thread's run-queue wait between calls (create and sample it on the same thread)."""

    def __init__(self, path: str = PATH) -> None:
        self.path = path
        self._last = read(path)

    @property
    def available(self) -> bool:
        """Whether the kernel gives the figures (an interval with no sample then waited 0 s)."""
        return self._last is not None

    def sample(self) -> WaitSample | None:
        """Since the previous call; ``None`` when the kernel gives no figures."""
        now = read(self.path)
        last, self._last = self._last, now
        if now is None or last is None:
            return None
        return WaitSample(max(now[1] - last[1], 0) / 1e9, max(now[2] - last[2], 0))
