import itertools

import numpy as np
import pytest

from wsbench.core.pacing import ClosedLoop, OpenSchedule, Phase, churn_schedule, phase_at, plan_phases, sending_end


def test_constant_rate_schedule_is_evenly_spaced_and_round_robin() -> None:
    phases = plan_phases(0.0, None, [("measure", 2.0, 1000.0, None)], 1.0)
    sched = OpenSchedule(phases, senders=10)
    ks, ts = sched.between(0.0, 2.0)
    assert len(ks) == 2000 == sched.total_messages
    assert ts[0] == 0.0
    assert np.allclose(np.diff(ts), 1e-3)
    senders = sched.sender_of(ks)
    assert np.array_equal(np.bincount(senders), np.full(10, 200))
    # each sender is evenly spaced at rate/senders
    assert np.allclose(np.diff(ts[senders == 3]), 1e-2)


def test_consecutive_windows_neither_repeat_nor_skip() -> None:
    phases = plan_phases(
        1.0, 200.0, [("a", 1.5, 300.0, None), ("ramp", 2.0, 100.0, 900.0), ("c", 0.7, 333.3, None)], 0.5
    )
    sched = OpenSchedule(phases, senders=3)
    cuts = np.sort(np.random.default_rng(7).uniform(0, 6, 500))
    edges = [0.0, *cuts.tolist(), 10.0]
    got = np.concatenate([sched.between(a, b)[0] for a, b in itertools.pairwise(edges)])
    assert np.array_equal(got, np.arange(sched.total_messages))
    times = sched.times(got)
    assert np.all(np.diff(times) >= 0)
    assert times[-1] < sending_end(phases)


def test_ramp_integrates_the_rate() -> None:
    ramp = Phase("ramp", "measure", 0.0, 10.0, 100.0, 1100.0)
    assert ramp.total == pytest.approx(6000.0)  # mean rate 600/s over 10 s
    sched = OpenSchedule([ramp, Phase("drain", "drain", 10.0, 1.0)], senders=1)
    ks, ts = sched.between(0.0, 11.0)
    assert len(ks) == 6000
    # messages in the last second come at about the final rate, in the first at about the first
    assert np.count_nonzero(ts >= 9.0) == pytest.approx(1050, abs=2)
    assert np.count_nonzero(ts < 1.0) == pytest.approx(150, abs=2)
    # the inverse is exact: N(T(k)) == k
    for k in (0, 1, 17, 2500, 5999):
        assert sched.due_count(float(sched.times(np.array([k]))[0])) == pytest.approx(k, abs=1e-6)


def test_falling_ramp_and_zero_rate_phase() -> None:
    phases = [
        Phase("down", "measure", 0.0, 4.0, 1000.0, 0.0),
        Phase("idle", "measure", 4.0, 2.0, 0.0),
        Phase("drain", "drain", 6.0, 1.0),
    ]
    sched = OpenSchedule(phases, senders=2)
    assert sched.total_messages == 2000
    ks, ts = sched.between(0.0, 7.0)
    assert len(ks) == 2000 and ts.max() < 4.0
    assert sched.next_time_after(4.5) is None


def test_phase_plan_and_lookup() -> None:
    phases = plan_phases(2.0, None, [("s1", 3.0, 50.0, None), ("s2", 3.0, 80.0, None)], 1.0)
    assert [(p.name, p.kind, p.start_s) for p in phases] == [
        ("warmup", "warmup", 0.0),
        ("s1", "measure", 2.0),
        ("s2", "measure", 5.0),
        ("drain", "drain", 8.0),
    ]
    assert phases[0].rate == 50.0  # warm-up defaults to the first stage's rate
    assert phase_at(phases, 4.99).name == "s1"
    assert phase_at(phases, 5.0).name == "s2"
    assert phase_at(phases, 100.0).name == "drain"


def test_closed_loop_waits_for_completion_and_think_time() -> None:
    loop = ClosedLoop(senders=2, outstanding=2, think_time_s=0.5)
    assert loop.due(0.0) == [0, 0, 1, 1]
    for s in loop.due(0.0):
        loop.sent(s)
    assert loop.due(0.1) == []
    loop.completed(1, now=1.0)
    assert loop.due(1.2) == []  # thinking until 1.5
    assert loop.due(1.5) == [1]
    assert loop.in_flight(0) == 2


def test_churn_schedule_spreads_replacements_over_the_measured_stages_only() -> None:
    phases = plan_phases(2.0, None, [("a", 1.0, 100.0, None), ("b", 2.0, 200.0, None)], 1.0)
    times = churn_schedule(phases, 2.0)
    assert times == pytest.approx([2.5, 3.5, 4.0, 4.5])  # a: 2.0-3.0, b: 3.0-5.0; none at a stage's end
    assert churn_schedule(phases, 2.0, limit=3) == pytest.approx([2.5, 3.5, 4.0])
    assert churn_schedule(phases, 0.0) == []
