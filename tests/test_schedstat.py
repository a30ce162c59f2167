"""wsbench.schedstat: the calling thread's wait for a CPU, from the kernel's per-task scheduler statistics."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from wsbench.schedstat import RunQueueWait, WaitSample, read

KERNEL_FIGURES = os.path.exists("/proc/thread-self/schedstat")


def test_the_calling_threads_figures_are_read_and_its_cpu_time_counts_in_them() -> None:
    before = read()
    if not KERNEL_FIGURES:  # a kernel without CONFIG_SCHED_INFO: no figures, never a guess
        assert before is None and not RunQueueWait().available and RunQueueWait().sample() is None
        return
    assert before is not None
    end = time.thread_time() + 0.05
    while time.thread_time() < end:  # 50 ms on a CPU
        pass
    after = read()
    assert after is not None
    assert after[0] - before[0] >= 40_000_000  # ns on a CPU, this thread's
    assert after[1] >= before[1] and after[2] >= before[2]


def test_another_threads_cpu_time_is_not_this_threads() -> None:
    if not KERNEL_FIGURES:
        assert read() is None
        return
    before = read()

    def spin() -> None:
        end = time.thread_time() + 0.1
        while time.thread_time() < end:
            pass

    t = threading.Thread(target=spin)
    t.start()
    t.join()
    after = read()
    assert before is not None and after is not None
    assert after[0] - before[0] < 50_000_000  # the other thread's 100 ms are its own


def test_samples_are_the_differences_between_calls(tmp_path: Path) -> None:
    stat = tmp_path / "schedstat"
    stat.write_text("1000 2000000 10\n")
    wait = RunQueueWait(str(stat))
    stat.write_text("5000 7000000 25\n")
    assert wait.sample() == WaitSample(wait_s=0.005, slices=15)
    assert wait.sample() == WaitSample(wait_s=0.0, slices=0)
    assert (WaitSample(0.5, 3) + WaitSample(0.25, 1)).fields() == {"cpu_wait_s": 0.75, "cpu_slices": 4}


def test_no_figures_without_the_file(tmp_path: Path) -> None:
    missing = RunQueueWait(str(tmp_path / "absent"))
    assert missing.sample() is None
    garbled = tmp_path / "garbled"
    garbled.write_text("not numbers\n")
    assert read(str(garbled)) is None and RunQueueWait(str(garbled)).sample() is None
