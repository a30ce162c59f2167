"""Merging what several Locust processes measured gives what one process would have measured."""

from __future__ import annotations

from typing import Any

from wsbench.core import histograms, payload
from wsbench.core.results import ResultsWriter, read_results
from wsbench.core.scenario_loading import load_text
from wsbench.locust.aggregate import Aggregator, pack_part
from wsbench.locust.collector import Collector
from wsbench.locust.plan import RunPlan

TAG = "t1"
CLIENTS = 6
SENDERS = 2
MESSAGES = 20


def the_plan() -> RunPlan:
    return RunPlan(load_text(f"clients: {CLIENTS}\nsenders: {SENDERS}\nduration: 2s\n", "t.yaml"))


def text(p: RunPlan, sender: int, seq: int, t_us: int) -> bytes:
    return f"{p.nickname(sender, TAG)}说：{payload.encode(sender, seq, t_us, t_us + 3, 128)}".encode()


def deliveries(p: RunPlan) -> list[tuple[int, bytes, int]]:
    """(receiver, frame, receipt time) with one hole, a lost tail, a duplicate and a swap."""
    out = []
    for sender in range(SENDERS):
        for r in range(CLIENTS):
            if r == sender:
                continue
            seqs = list(range(MESSAGES))
            if r == 3 and sender == 0:
                seqs.remove(5)
            if r == 3 and sender == 1:
                seqs = seqs[:-2]
            if r == 4 and sender == 1:
                seqs.insert(8, 7)
            if r == 5 and sender == 0:
                seqs[2], seqs[3] = seqs[3], seqs[2]
            for k, seq in enumerate(seqs):  # the k-th arrival, 60 ms after the k-th send
                out.append((r, text(p, sender, seq, 2_000_000 + seq * 50_000), 2_060_000 + k * 50_000 + 100 * r))
    return out


def run(collectors: dict[int, Collector], owner: dict[int, int], p: RunPlan) -> None:
    for col in collectors.values():
        col.phase_of = lambda t: "measure"
    for c in range(CLIENTS):
        collectors[owner[c]].connected(c, 1_000 + c, 5_000)
    collectors[owner[2]].on_texts(2, [f"~~~{p.nickname(5, TAG)}进入了聊天室~~~".encode()], 1_600)
    for sender in range(SENDERS):
        for seq in range(MESSAGES):
            t = 2_000_000 + seq * 50_000
            collectors[owner[sender]].sent(sender, seq, t, t + 3)
    for r, frame, t in sorted(deliveries(p), key=lambda d: d[2]):
        collectors[owner[r]].on_texts(r, [frame], t)
        if t % 7 == 0:
            for col in collectors.values():
                col.flush()
    for col in collectors.values():
        col.flush()
    for c in range(CLIENTS):
        collectors[owner[c]].closed(c, 9_000_000, 1000, "", True)


def aggregate(p: RunPlan, collectors: dict[int, Collector], path: str) -> tuple[Aggregator, dict[str, Any]]:
    with ResultsWriter(path) as writer:
        writer.header(kind="run", driver="locust", interval_s=1.0)
        agg = Aggregator(p, writer, len(collectors), master_generator=False)
        agg.load_start_s = 0.0
        for name, col in collectors.items():
            records = col.take_records(10_000_000, final=True)
            agg.absorb(pack_part(col, f"worker-{name}", records, final=True, as_of_us=0))
        agg.collect_fanout(10_000_000, give_up_all=True)
        agg.write_master_records(None)
        totals = agg.totals()
    return agg, totals


def test_two_workers_merge_to_the_single_process_numbers(tmp_path: Any) -> None:
    p = the_plan()
    single = {0: Collector(p, TAG, distributed=True)}
    run(single, dict.fromkeys(range(CLIENTS), 0), p)
    split = {0: Collector(p, TAG, distributed=True), 1: Collector(p, TAG, distributed=True)}
    run(split, {c: c % 2 for c in range(CLIENTS)}, p)

    one_agg, one = aggregate(p, single, str(tmp_path / "one.jsonl"))
    two_agg, two = aggregate(p, split, str(tmp_path / "two.jsonl"))
    # the single process's own accounting, untouched by any merging
    direct = single[0].acc.totals().as_dict()
    assert one == direct == two
    assert two == {"expected": 200, "delivered": 197, "lost": 3, "pairs": 10, "pairs_with_loss": 2}
    assert two_agg.acc.duplicated == one_agg.acc.duplicated == 1
    assert two_agg.acc.reordered == one_agg.acc.reordered == 1

    a, b = read_results(tmp_path / "one.jsonl"), read_results(tmp_path / "two.jsonl")
    for name in ("latency", "latency_uncorrected", "fanout", "connect"):
        assert histograms.same_counts(a.histogram(name, phases=None), b.histogram(name, phases=None))
    assert a.histogram("latency", phases=None).get_total_count() == 197
    assert b.histogram("fanout", phases=None).get_total_count() == 2 * MESSAGES - 3  # 3 never complete
    for counter in ("sent", "delivered", "duplicated", "connect_ok"):
        assert a.counter(counter, phases=None) == b.counter(counter, phases=None)
    assert b.counter("delivered", phases=None) == 197
    assert b.counter("sent", phases=None) == 2 * MESSAGES
    # expected is counted at send time (the readers online then), by the master, as `wsbench run` does
    assert b.counter("expected", phases=None) == a.counter("expected", phases=None) == 200
    assert b.counter("expected", phases=None) - b.counter("delivered", phases=None) == 3
