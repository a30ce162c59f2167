"""The intervals of a run (core/intervals.py): where a time falls, when a record is taken, late supplements."""

from __future__ import annotations

import numpy as np

from wsbench.core.intervals import COUNTER_NAMES, HISTOGRAM_NAMES, Intervals

S = 1_000_000


def test_a_time_falls_in_the_interval_that_started_last_before_it() -> None:
    iv = Intervals(hold_us=S, start_us=0, phase="connect")
    iv.cut(1 * S, "warmup")
    iv.cut(2 * S, "measure")
    assert (iv.current_index, iv.current_phase, iv.current_start_us) == (2, "measure", 2 * S)
    assert iv.positions(np.array([-5, 0, S - 1, S, 2 * S, 9 * S])).tolist() == [0, 0, 0, 1, 2, 2]
    assert iv.of_message(int(1.5 * S)) is iv.at(1) and iv.of_message(3 * S) is iv.at(2)
    groups = iv.of_messages(np.array([int(2.5 * S), int(1.5 * S), int(2.6 * S)]))
    assert [(data is iv.at(p), mask.tolist()) for (data, mask), p in zip(groups, (1, 2), strict=True)] == [
        (True, [False, True, False]),
        (True, [True, False, True]),
    ]
    [(only, everything)] = iv.of_messages(np.array([int(2.1 * S), int(2.2 * S)]))
    assert only is iv.at(2) and everything is None
    assert [(t, m.tolist()) for t, m in iv.group_by_interval(np.array([int(0.5 * S), int(2.5 * S)]))] == [
        (0, [True, False]),
        (2 * S, [False, True]),
    ]


def test_a_record_is_taken_a_hold_after_its_interval_ended_and_late_values_come_as_a_supplement() -> None:
    iv = Intervals(hold_us=S // 2, first_index=7, start_us=0, phase="s1")
    iv.at_time(int(0.5 * S)).counters["sent"] += 3
    iv.cut(1 * S, "s2", info={"clients_connected": 4, "generator": {"cpu": 0.5}, "server": {"rss": 1}})
    assert not iv.has_due(int(1.4 * S)) and iv.take_records(int(1.4 * S)) == []
    assert iv.has_due(int(1.5 * S))
    (record,) = iv.take_records(int(1.5 * S))
    assert (record["index"], record["phase"], record["start_s"], record["end_s"]) == (7, "s1", 0.0, 1.0)
    assert list(record["counters"])[: len(COUNTER_NAMES)] == list(COUNTER_NAMES)
    assert record["counters"]["sent"] == 3 and set(HISTOGRAM_NAMES) <= set(record["histograms"])
    assert (record["clients_connected"], record["generator"], record["server"]) == (
        4,
        {"cpu": 0.5, "send_lag_ms_max": 0.0},
        {"rss": 1},
    )
    assert iv.take_final_phases() == ["s1"] and iv.take_final_phases() == []
    iv.at_time(int(0.9 * S)).counters["delivered"] += 2  # after s1's record was taken
    iv.cut(2 * S, "drain")
    later = iv.take_records(int(2.5 * S))
    assert [(r["index"], r.get("late", False)) for r in later] == [(8, False), (7, True)]
    assert later[1]["counters"] == {"delivered": 2} and later[1]["phase"] == "s1"
    assert iv.phases["s1"].counters == {"sent": 3, "delivered": 2} and iv.phases["s1"].span_s == 1.0


def test_the_last_interval_is_taken_at_the_end_unless_it_just_began_empty() -> None:
    iv = Intervals(hold_us=S, start_us=0, phase="measure")
    iv.cut(1 * S, "drain")
    iv.cut(2 * S, "drain")  # begins 5 ms before the end, with nothing in it: no record
    records = iv.take_records(int(2.005 * S), final=True)
    assert [(r["index"], r["phase"], r["end_s"]) for r in records] == [(0, "measure", 1.0), (1, "drain", 2.0)]


def test_a_stopped_search_relabels_what_was_not_taken_yet() -> None:
    iv = Intervals(hold_us=S, start_us=0, phase="step-1")
    iv.cut(1 * S, "step-2")
    iv.take_records(2 * S)  # step-1 is final
    iv.cut(3 * S, "step-2")
    iv.relabel_open("drain")
    records = iv.take_records(4 * S, final=True)
    assert [(r["index"], r["phase"]) for r in records] == [(1, "drain"), (2, "drain")]
    assert iv.take_final_phases() == ["step-1", "drain"]
