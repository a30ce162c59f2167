"""SPEC 11.3 "bounded memory" as the gate judges it (pure: RSS samples in, verdict out)."""

from __future__ import annotations

from wsbench.conform.measure import judge_memory

MIB = 2**20
LIMIT = 256 * 1024  # the gate's send_buffer_limit: growth up to 4 + 4 x 0.25 = 5 MiB passes outright
UNBOUNDED = 24 * MIB  # what queueing every frame of a 3 s stall would take


def samples(growth_at: list[float]) -> list[tuple[float, int]]:
    """RSS every 0.1 s over a 3 s stall, from 100 MiB, growing as the list says (MiB, interpolated)."""
    out = []
    for i in range(31):
        t = i / 10
        pos = t / 3 * (len(growth_at) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(growth_at) - 1)
        value = growth_at[lo] + (growth_at[hi] - growth_at[lo]) * (pos - lo)
        out.append((t, int((100 + value) * MIB)))
    return out


def test_small_growth_passes_outright() -> None:
    v = judge_memory(100 * MIB, samples([0, 1, 1.5, 1.5]), 3.0, UNBOUNDED, LIMIT)
    assert v.passed and v.growth == int(1.5 * MIB)


def test_a_garbage_collected_heap_that_levels_off_passes() -> None:
    # the Node.js run of the issue: +7.8 MiB with 5 MiB allowed, but reached early and flat since
    v = judge_memory(100 * MIB, samples([0, 6, 7.8, 7.8, 7.6, 7.8]), 3.0, UNBOUNDED, LIMIT)
    assert v.growth > v.allowance and v.late_growth < MIB and v.passed


def test_an_unbounded_queue_fails_even_when_small_and_gc_noise_cannot_hide_it() -> None:
    linear = judge_memory(100 * MIB, samples([0, 8, 16, 24]), 3.0, UNBOUNDED, LIMIT)
    assert not linear.passed and linear.late_growth > linear.late_limit
    # levelled off late but holding most of what was sent: not "far below" an unbounded queue
    held = judge_memory(100 * MIB, samples([0, 12, 18, 18]), 3.0, UNBOUNDED, LIMIT)
    assert not held.passed and held.growth > held.far_below
