"""The capacity search's rule (core/search.py), one copy for both drivers: synthetic frames, no sockets."""

from __future__ import annotations

import numpy as np

from wsbench.core import histograms, payload
from wsbench.core.accounting import DeliveryAccounting, Totals
from wsbench.core.chat import Nicknames, message_line
from wsbench.core.intervals import PhaseTotals
from wsbench.core.pacing import Phase
from wsbench.core.recorder import Recorder
from wsbench.core.scenario import Search
from wsbench.core.search import CapacitySearch, judge_stage, stopped_plan

S = 1_000_000
NICKS = Nicknames("wsb", "t1")
PHASES = [
    Phase("warmup", "warmup", 0.0, 1.0, 50.0),
    Phase("step-1", "measure", 1.0, 1.0, 100.0),
    Phase("step-2", "measure", 2.0, 1.0, 200.0),
    Phase("step-3", "measure", 3.0, 1.0, 300.0),
    Phase("drain", "drain", 4.0, 0.5),
]


def search(stop: bool = False, grace: float = 0.5) -> Search:
    return Search.model_validate(
        {"thresholds": ["latency.p99 < 500ms", "delivery.lost == 0"], "stop": stop, "grace": grace}
    )


def recorder(hold_s: float) -> Recorder:
    """Sender 0 and receivers 1 and 2, online from the start; the load starts at 0 (warm-up), step-1 at 1 s."""
    acc = DeliveryAccounting(3, [0], range(3))
    rec = Recorder(acc, NICKS, hold_us=int(hold_s * S), fanout_timeout_us=10 * S, local_completion=True)
    for c in range(3):
        rec.connected(c, 1000 + c, 5000, 2000)
        if c:
            acc.saw_join(0, c, 1500)
    rec.cut(1 * S, "step-1")
    return rec


def send(rec: Recorder, seq: int, t_s: float) -> None:
    rec.sent(0, seq, int(t_s * S), int(t_s * S))


def deliver(rec: Recorder, seq: int, t_s: float, receiver: int, recv_s: float) -> None:
    body = message_line(NICKS.of(0), payload.encode(0, seq, int(t_s * S), int(t_s * S) + 5, 100)).encode()
    rec.ingest([body], np.array([int(recv_s * S)], np.int64), np.array([receiver], np.int64))


def verdict_when_final(rec: Recorder, cap: CapacitySearch, now_s: float) -> list[str]:
    """What a driver does at each interval boundary: judge the stages whose records are all final."""
    rec.take_records(int(now_s * S))
    judged = []
    for name in rec.take_final_phases():
        i = cap.stage_index(PHASES, name)
        if i is None:
            continue
        p = PHASES[i]
        totals = rec.acc.totals(int(p.start_s * S), int(p.end_s * S))  # the load starts at 0
        if cap.judge(p, totals, rec.phases[name]) is not None:
            judged.append(name)
    return judged


def two_stages(rec: Recorder, cap: CapacitySearch) -> list[str]:
    """step-1: five messages, the last one reaching receiver 1 700 ms late (during step-2);
    step-2: five messages, one never reaching receiver 2."""
    judged = []
    for seq in range(5):
        t = 1.0 + seq * 0.2
        send(rec, seq, t)
        deliver(rec, seq, t, 2, t + 0.002)
        if seq < 4:
            deliver(rec, seq, t, 1, t + 0.002)
    rec.cut(2 * S, "step-2")
    for seq in range(5, 10):
        t = 2.0 + (seq - 5) * 0.2
        send(rec, seq, t)
        deliver(rec, seq, t, 1, t + 0.002)
        if seq != 7:
            deliver(rec, seq, t, 2, t + 0.002)
        if seq == 7:
            deliver(rec, 4, 1.8, 1, 2.5)  # step-1's late one, arriving in step-2's time
        judged += verdict_when_final(rec, cap, t + 0.01)
    rec.cut(3 * S, "step-3")
    judged += verdict_when_final(rec, cap, 3.2)
    judged += verdict_when_final(rec, cap, 3.6)
    return judged


def by_expr(verdicts: list[dict]) -> dict[str, tuple[bool, object]]:
    return {v["expr"]: (v["passed"], v["observed"]) for v in verdicts}


def test_each_stage_is_judged_on_its_own_messages_once_its_records_are_final() -> None:
    """Issue 10 item 2: step-1's late delivery is step-1's latency (it breaks step-1's p99), not step-2's;
    step-2 breaks on its own loss alone."""
    cap = CapacitySearch(search(stop=False))
    rec = recorder(hold_s=0.5)
    judged = two_stages(rec, cap)
    assert judged == ["step-1", "step-2"]  # step-1 at 2.5 s (its end + the grace), step-2 at 3.5 s
    one, two = cap.verdicts
    assert (one.stage, one.rate, one.passed) == ("step-1", 100.0, False)
    v1 = by_expr(one.verdicts)
    assert v1["latency.p99 < 500ms"][0] is False and float(v1["latency.p99 < 500ms"][1]) >= 690
    assert v1["delivery.lost == 0"] == (True, 0)  # the late one arrived before the verdict: delivered
    assert (two.stage, two.rate, two.passed) == ("step-2", 200.0, False)
    v2 = by_expr(two.verdicts)
    assert v2["latency.p99 < 500ms"][0] is True and float(v2["latency.p99 < 500ms"][1]) < 10
    assert v2["delivery.lost == 0"] == (False, 1)
    assert one.event_fields() == {
        "stage": "step-1",
        "rate": 100.0,
        "passed": False,
        "verdicts": one.verdicts,
        "detail": "broke at 100/s",
    }
    assert not cap.stopping


def test_a_message_not_delivered_by_the_verdict_is_lost_for_it() -> None:
    cap = CapacitySearch(search(stop=False, grace=0.2))
    rec = recorder(hold_s=0.2)
    judged = two_stages(rec, cap)  # step-1's late delivery (at 2.5 s) comes after its verdict (2.2 s)
    assert judged == ["step-1", "step-2"]
    assert by_expr(cap.verdicts[0].verdicts)["delivery.lost == 0"] == (False, 1)
    assert rec.phases["step-1"].counters["delivered"] == 10  # the file still gets it, as a late supplement


def test_with_stop_the_first_broken_stage_ends_the_search() -> None:
    cap = CapacitySearch(search(stop=True))
    rec = recorder(hold_s=0.5)
    assert two_stages(rec, cap) == ["step-1"]
    assert cap.stopping and [v.stage for v in cap.verdicts] == ["step-1"]
    assert cap.stop_reason(cap.verdicts[0]) == "stage step-1 broke the search thresholds"
    assert cap.due_s(PHASES[1]) == 2.5


def test_the_stopped_plan_keeps_the_stages_up_to_the_broken_one_and_drains_from_the_stop() -> None:
    plan = stopped_plan(PHASES, "step-1", 2.5)
    assert [(p.name, p.start_s, p.duration_s) for p in plan] == [
        ("warmup", 0.0, 1.0),
        ("step-1", 1.0, 1.0),
        ("drain", 2.5, 0.5),
    ]
    # a verdict later than the next stage's end (grace >= a stage): that stage still is not one
    late = stopped_plan(PHASES, "step-1", 3.2)
    assert [p.name for p in late] == ["warmup", "step-1", "drain"] and late[-1].start_s == 3.2


def test_the_verdict_reads_only_the_stage_totals_it_is_given() -> None:
    """Both drivers hand the rule the same three things: the accounting's totals of the stage's sends,
    the stage's folded records and nothing else (the Locust master folds records it did not make)."""
    pt = PhaseTotals()
    h = histograms.new_histogram()
    histograms.record_many(h, [1000, 2000, 600_000])
    pt.add_record({"index": 1, "start_s": 1.0, "end_s": 2.0, "phase": "step-1",
                   "counters": {"sent": 100, "delivered": 199}, "histograms": {"latency": h}})  # fmt: skip
    pt.add_record({"index": 1, "start_s": 1.0, "end_s": 2.0, "phase": "step-1",
                   "counters": {"delivered": 1}, "histograms": {}}, with_span=False)  # fmt: skip
    pt.add_record({"index": 1, "start_s": 1.0, "end_s": 2.0, "phase": "step-1", "late": True,
                   "counters": {"delivered": 0}, "histograms": {}})  # fmt: skip
    v = judge_stage(search(), PHASES[1], Totals(200, 200, 0, 2, 0), pt)
    assert pt.span_s == 1.0 and pt.counters["delivered"] == 200
    assert not v.passed and by_expr(v.verdicts)["delivery.lost == 0"] == (True, 0)
