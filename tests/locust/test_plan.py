"""Who sends what when in a Locust run (pure)."""

from __future__ import annotations

import numpy as np
import pytest

from wsbench.core.scenario_loading import load_text
from wsbench.errors import UsageError
from wsbench.locust.plan import RunPlan


def plan(text: str) -> RunPlan:
    return RunPlan(load_text(text, "test.yaml"))


def test_per_sender_times_are_the_open_schedule_split_by_sender() -> None:
    p = plan("clients: 10\nsenders: 3\nrate: 300/s\nduration: 2s\nwarmup: 1s\ndrain: 1s\n")
    total = p.schedule.total_messages
    assert total == 900
    seen = []
    for sender in range(3):
        times = list(p.send_times(sender))
        assert [seq for seq, _ in times] == list(range(len(times)))
        seen += [(t, sender, seq) for seq, t in times]
    assert len(seen) == total
    ks = np.arange(total)
    expected = sorted(zip(p.schedule.times(ks).tolist(), (ks % 3).tolist(), (ks // 3).tolist(), strict=True))
    assert sorted(seen) == expected


def test_roles_phases_and_nicknames() -> None:
    p = plan("clients: 6\nsenders: 2\nstalled_clients: 1\nduration: 3s\nwarmup: 1s\ndrain: 2s\n")
    assert [p.is_sender(c) for c in range(6)] == [True, True, False, False, False, False]
    assert p.readers() == [0, 1, 2, 3, 4]
    assert p.phase_name(0.5, None) == "connect"
    assert p.phase_name(1.5, 1.0) == "warmup"
    assert p.phase_name(3.0, 1.0) == "measure"
    assert p.phase_name(5.5, 1.0) == "drain"
    assert p.load_duration_s == 6.0
    assert p.client_of_nickname(p.nickname(4, "ab12"), "ab12") == 4
    assert p.client_of_nickname("someone", "ab12") is None


def test_sizes_follow_the_distribution_and_the_seed() -> None:
    p = plan("clients: 4\nsize: {uniform: [64B, 80B]}\n")
    first, again, other = p.sizes(0), p.sizes(0), p.sizes(1)
    a = [next(first) for _ in range(50)]
    assert a == [next(again) for _ in range(50)]
    assert a != [next(other) for _ in range(50)]
    assert all(64 <= x <= 80 for x in a) and len(set(a)) > 5


def test_closed_model_is_refused_with_a_reason() -> None:
    with pytest.raises(UsageError, match="open model"):
        plan("clients: 4\nmodel: closed\n")


def test_churn_is_refused_with_a_reason() -> None:
    with pytest.raises(UsageError, match="no churn"):
        plan("clients: 4\nchurn: {rate: 1/s}\n")


def test_a_capacity_search_needs_stages_on_the_interval_grid() -> None:
    """Locust's records are whole intervals of one grid: a stage between two grid points could not be
    judged on its own records, so it is refused, naming the stage and the fix."""
    ramp = "clients: 4\nsteps: {start: 100/s, stop: 400/s, factor: 2, duration: %s}\nwarmup: %s\n"
    ramp += "search: {thresholds: ['delivery.lost == 0']}\n"
    assert [p.name for p in plan(ramp % ("2s", "1s")).phases][:3] == ["warmup", "step-1", "step-2"]
    with pytest.raises(UsageError, match=r"stage step-1 runs from 0.5 s to 2 s; make warmup.duration"):
        plan(ramp % ("1.5s", "0.5s"))
    with pytest.raises(UsageError, match=r"stage step-1 runs from 1 s to 2.5 s"):
        plan(ramp % ("1.5s", "1s"))
    plan(ramp.replace("search: {thresholds: ['delivery.lost == 0']}\n", "") % ("1.5s", "1s"))  # no search: fine
