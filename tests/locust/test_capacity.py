"""The capacity search on a Locust master (locust/capacity.py, Aggregator.judge), without Locust or sockets:
two workers' collectors, verdict parts with receipts, the core's rule on the merged numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from wsbench.core import payload
from wsbench.core.results import ResultsWriter, read_results
from wsbench.core.scenario_loading import load_text
from wsbench.core.summary import summarize
from wsbench.locust.aggregate import Aggregator, pack_part
from wsbench.locust.collector import Collector
from wsbench.locust.plan import RunPlan

TAG = "t1"
S = 1_000_000
LOAD_START = 1 * S  # epoch us; step-1 [1, 2) s, step-2 [2, 3), step-3 [3, 4), step-4 [4, 5), drain [5, 6)
SCENARIO = """\
clients: 4
senders: 2
warmup: 0s
steps: {start: 10/s, stop: 40/s, step: 10/s, duration: 1s}
drain: 1s
search:
  thresholds: ['delivery.lost == 0']
  grace: 0.5s
"""


class Workers:
    """Clients 0 and 2 on worker-0, 1 and 3 on worker-1; senders 0 and 1."""

    def __init__(self, plan: RunPlan) -> None:
        self.plan = plan
        self.cols = {w: Collector(plan, TAG, distributed=True) for w in (0, 1)}
        for col in self.cols.values():
            col.phase_of = lambda t_s: plan.phase_name(t_s, LOAD_START / S)
        self.seq = [0, 0]
        for c in range(4):
            self.cols[c % 2].connected(c, 1000 + c, 5000)

    def stage(self, t0_s: float, lose_at: int | None = None) -> None:
        """Each sender sends 5 messages in the second from ``t0_s``; all delivered 2 ms later but one
        delivery to client 3 (``lose_at``: that message's position)."""
        for k in range(5):
            for sender in (0, 1):
                t = int((t0_s + k * 0.2) * S) + sender * 1000
                seq = self.seq[sender]
                self.seq[sender] += 1
                self.cols[sender % 2].sent(sender, seq, t, t + 5)
                body = f"{self.plan.nickname(sender, TAG)}说：{payload.encode(sender, seq, t, t + 5, 64)}".encode()
                for r in range(4):
                    if r != sender and not (r == 3 and k == lose_at):
                        self.cols[r % 2].on_texts(r, [body], t + 2000)
            for col in self.cols.values():
                col.flush(int((t0_s + k * 0.2) * S) + 3000)

    def part(self, w: int, now_s: float, receipts: bool = False, final: bool = False) -> dict:
        col = self.cols[w]
        col.flush(int(now_s * S))
        records = col.take_records(int(now_s * S), final=final)
        return pack_part(col, f"worker-{w}", records, final, int(now_s * S), receipts=receipts)


def test_the_master_judges_each_stage_on_every_process_numbers_and_stops_the_search(tmp_path: Path) -> None:
    plan = RunPlan(load_text(SCENARIO, "ramp.yaml"))
    path = tmp_path / "r.jsonl"
    w = Workers(plan)
    with ResultsWriter(path) as writer:
        writer.header(kind="run", driver="locust", interval_s=1.0, scenario=plan.scenario.resolved())
        agg = Aggregator(plan, writer, 2, master_generator=False)
        agg.load_start_s = LOAD_START / S
        assert agg.search is not None
        agg.search.load_start_us = LOAD_START
        w.stage(1.0)  # step-1: all delivered
        w.stage(2.0, lose_at=2)  # step-2: client 3 misses one message of sender 0 and one of sender 1
        agg.absorb(w.part(0, 2.5, receipts=True))
        assert agg.judge(int(2.5 * S)) is None and not agg.search.core.verdicts  # worker-1 not in yet
        agg.absorb(w.part(1, 2.5, receipts=True))
        assert agg.judge(int(2.5 * S)) is None
        assert [(v.stage, v.passed) for v in agg.search.core.verdicts] == [("step-1", True)]
        w.stage(3.0)  # step-3 runs while step-2's verdict is awaited
        agg.absorb(w.part(0, 3.5, receipts=True))
        assert agg.judge(int(3.5 * S)) is None
        agg.absorb(w.part(0, 4.6))  # worker-0 is quick: step-3's record comes before step-2's verdict ...
        assert agg.search.held and all(r["phase"] == "step-3" for r in agg.search.held)
        agg.absorb(w.part(1, 4.6, receipts=True))  # ... worker-1 is late with its verdict part
        stopped = agg.judge(int(4.6 * S))
        assert stopped is not None and stopped[0] == "step-2" and stopped[1] == pytest.approx(3.6)
        assert [p.name for p in plan.phases] == ["step-1", "step-2", "drain"]
        assert plan.phases[-1].start_s == pytest.approx(3.6)
        assert not agg.search.held
        rows = {r["name"]: r["value"] for r in agg.live_view()["delivery"]}  # the web UI shows the verdicts
        assert rows["search: stage step-1"] == "held at 10/s" and rows["search: stage step-2"] == "broke at 20/s"
        for k in (0, 1):
            agg.absorb(w.part(k, 5.0, receipts=True, final=True))
        agg.collect_fanout(5 * S, give_up_all=True)
        agg.write_master_records(None)
        assert agg.judge(5 * S, final=True) is None  # the search stopped: step-3 is never judged
        agg.release_held(everything=True)
    results = read_results(path)
    thresholds = results.events_of("threshold")
    assert [(e["stage"], e["passed"], e["t_s"]) for e in thresholds] == [("step-1", True, 2.5), ("step-2", False, 4.6)]
    assert thresholds[1]["verdicts"][0]["observed"] == 2  # both workers' receipts: the two misses at client 3
    drain = [e for e in results.events_of("phase") if e.get("name") == "drain"]
    assert drain and drain[0]["detail"] == "stage step-2 broke the search thresholds"
    phases = {r["phase"] for r in results.intervals}
    assert "step-3" not in phases and "drain" in phases  # what step-3 sent is the drain's, whoever shipped it
    assert results.counter("sent", phases=["drain"]) == 10
    s = summarize(results)
    assert [(st["name"], st["passed"]) for st in s["stages"]] == [("step-1", True), ("step-2", False)]
    assert s["capacity"]["highest_rate_held"] == 10.0 and s["capacity"]["broke_at_rate"] == 20.0
