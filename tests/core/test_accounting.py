"""Delivery accounting: exact counts, and receivers joining and leaving mid-run."""

import numpy as np
import pytest

from wsbench.core.accounting import DeliveryAccounting

S = 1_000_000  # one second in microseconds


def broadcast(acc: DeliveryAccounting, sender: int, times_s: list[float]) -> None:
    for seq, t in enumerate(times_s):
        acc.sent(sender, seq, int(t * S))


def deliver(acc: DeliveryAccounting, receiver: int, sender: int, seqs: list[int]):
    return acc.ingest(np.full(len(seqs), receiver), np.full(len(seqs), sender), np.array(seqs))


def everyone_online(clients: int, senders: list[int], **kw: int) -> DeliveryAccounting:
    acc = DeliveryAccounting(clients, senders, **kw)
    for c in range(clients):
        acc.joined(c, 0)
    for s in senders:  # all joined before the load, and each sender saw the later joiners
        for c in range(clients):
            if c > s:
                acc.saw_join(s, c, 0)
            elif c < s:
                acc.saw_join(c, s, 0)
    return acc


def test_everything_delivered_in_order() -> None:
    acc = everyone_online(4, [0, 1])
    broadcast(acc, 0, [1 + i * 0.1 for i in range(10)])
    broadcast(acc, 1, [1 + i * 0.1 for i in range(10)])
    for r in range(4):
        for s in (0, 1):
            if r != s:
                res = deliver(acc, r, s, list(range(10)))
                assert res.new.all() and res.delivered == 10
    t = acc.totals()
    assert (t.expected, t.delivered, t.lost, t.pairs, t.pairs_with_loss) == (60, 60, 0, 6, 0)
    assert acc.duplicated == acc.reordered == 0


def test_every_kth_dropped_gives_the_exact_loss() -> None:
    acc = everyone_online(5, [0])
    broadcast(acc, 0, [i * 0.01 for i in range(100)])
    for r in range(1, 5):
        deliver(acc, r, 0, [q for q in range(100) if (q + r) % 7 != 0])
    t = acc.totals()
    dropped = sum(1 for r in range(1, 5) for q in range(100) if (q + r) % 7 == 0)
    assert t.lost == dropped and t.expected == 400 and t.delivered == 400 - dropped
    assert t.pairs_with_loss == 4


def test_lost_at_the_end_of_the_stream_counts_too() -> None:
    acc = everyone_online(2, [0])
    broadcast(acc, 0, [0.1, 0.2, 0.3, 0.4])
    deliver(acc, 1, 0, [0, 1])
    assert acc.totals().lost == 2


def test_duplicates_and_reorders_are_counted_not_delivered_twice() -> None:
    acc = everyone_online(2, [0])
    broadcast(acc, 0, [i * 0.1 for i in range(8)])
    res = deliver(acc, 1, 0, [0, 1, 1, 3, 2, 4, 0, 6, 7, 5, 5])
    assert res.new.tolist() == [True, True, False, True, True, True, False, True, True, True, False]
    assert (res.delivered, res.duplicated, res.reordered) == (8, 3, 2)
    t = acc.totals()
    assert (t.expected, t.delivered, t.lost) == (8, 8, 0)


def test_reorder_across_batches_and_below_the_first_delivery() -> None:
    acc = everyone_online(2, [0])
    broadcast(acc, 0, [i * 0.1 for i in range(6)])
    assert deliver(acc, 1, 0, [5, 3]).reordered == 1  # 3 below the first seen (5)
    res = deliver(acc, 1, 0, [4, 0, 4, 1, 2])
    assert (res.reordered, res.duplicated) == (4, 1)
    assert acc.totals().lost == 0


def test_receiver_joining_mid_run_expects_only_what_was_sent_after_it_was_registered() -> None:
    acc = DeliveryAccounting(3, [0])
    acc.joined(0, 0)
    acc.joined(1, 0)
    acc.saw_join(0, 1, 0)
    broadcast(acc, 0, [float(i) for i in range(10)])  # at 0 s .. 9 s
    acc.joined(2, int(4.9 * S))  # handshake done at 4.9 s ...
    acc.saw_join(0, 2, int(5.5 * S))  # ... the sender saw its join line at 5.5 s
    acc.saw_join(1, 2, int(5.5 * S))
    deliver(acc, 1, 0, list(range(10)))
    deliver(acc, 2, 0, [6, 7, 8])  # 9 lost; 5 was sent before the join line: uncertain, not expected
    t = acc.totals()
    assert (t.expected, t.delivered, t.lost) == (10 + 4, 10 + 3, 1)
    # a message sent in the uncertain window that did arrive counts as expected and delivered
    deliver(acc, 2, 0, [5])
    t = acc.totals()
    assert (t.expected, t.delivered, t.lost) == (15, 15 - 1, 1)


def test_receiver_leaving_mid_run() -> None:
    acc = everyone_online(3, [0], leave_margin_us=S)
    broadcast(acc, 0, [float(i) for i in range(10)])
    acc.left(2, int(8.5 * S))  # messages sent at >= 7.5 s are not expected at client 2
    deliver(acc, 1, 0, list(range(10)))
    deliver(acc, 2, 0, [0, 1, 2, 3, 4])
    t = acc.totals()
    assert (t.expected, t.lost) == (10 + 8, 3)  # 5, 6, 7 sent while 2 was certainly online
    # it did get 8 (sent 0.5 s before it left): then 5..7 were surely due, and 8 counts
    deliver(acc, 2, 0, [8])
    t = acc.totals()
    assert (t.expected, t.delivered, t.lost) == (10 + 9, 10 + 6, 3)


def test_without_join_lines_the_later_handshake_is_the_start() -> None:
    acc = DeliveryAccounting(2, [0])
    acc.joined(0, 0)
    broadcast(acc, 0, [0.0, 1.0, 2.0, 3.0])
    acc.joined(1, int(1.5 * S))
    deliver(acc, 1, 0, [2])
    assert (acc.totals().expected, acc.totals().lost) == (2, 1)


def test_receiver_that_saw_the_senders_join_expects_all_of_its_messages() -> None:
    acc = DeliveryAccounting(2, [1])
    acc.joined(0, 0)
    acc.joined(1, int(2 * S))
    acc.saw_join(0, 1, int(2 * S))  # client 0 was there first
    broadcast(acc, 1, [2.0, 2.0001, 3.0])
    deliver(acc, 0, 1, [1, 2])
    assert (acc.totals().expected, acc.totals().lost) == (3, 1)


def test_never_connected_receivers_and_stalled_clients_expect_nothing() -> None:
    acc = DeliveryAccounting(4, [0], receivers=[1, 2])  # 3 is stalled (not a receiver)
    for c in (0, 1, 3):
        acc.joined(c, 0)
        acc.saw_join(0, c, 0)
    broadcast(acc, 0, [0.5, 0.6])
    deliver(acc, 1, 0, [0, 1])
    res = deliver(acc, 3, 0, [0])
    assert res.unknown == 1 and not res.new.any()
    t = acc.totals()
    assert (t.expected, t.delivered, t.lost, t.pairs) == (2, 2, 0, 1)
    assert acc.expected_receivers(0) == 1


def test_unknown_senders_are_not_counted() -> None:
    acc = everyone_online(3, [0])
    broadcast(acc, 0, [0.1])
    res = acc.ingest(np.array([1, 1, 2]), np.array([2, 0, 99]), np.array([0, 0, 0]))
    assert res.new.tolist() == [False, True, False] and res.unknown == 2


def test_totals_by_send_window_and_cutoff() -> None:
    acc = everyone_online(2, [0])
    broadcast(acc, 0, [float(i) for i in range(10)])
    deliver(acc, 1, 0, [0, 1, 2, 4, 5, 6, 7])
    first_half = acc.totals(0, 5 * S)
    second_half = acc.totals(5 * S, 10 * S)
    assert (first_half.expected, first_half.lost) == (5, 1)
    assert (second_half.expected, second_half.lost) == (5, 2)
    # during the run: messages younger than the cut-off are not yet due
    assert acc.totals(cutoff_us=8 * S).lost == 1


def test_sequence_numbers_must_be_contiguous() -> None:
    acc = everyone_online(2, [0])
    acc.sent(0, 0, 1)
    with pytest.raises(ValueError, match="sequence"):
        acc.sent(0, 2, 2)


def test_batches_agree_with_a_one_by_one_reference() -> None:
    """Random duplicates, reorders and drops, fed in random batches, against plain sets."""
    rng = np.random.default_rng(3)
    clients, senders, n = 6, [0, 2, 5], 300
    acc = everyone_online(clients, senders)
    for s in senders:
        broadcast(acc, s, [i * 0.001 for i in range(n)])
    stream = []
    for r in range(clients):
        for s in senders:
            if r == s:
                continue
            seqs = [q for q in range(n) if rng.random() > 0.05]
            seqs += list(rng.choice(seqs, 15))  # duplicates
            order = np.arange(len(seqs), dtype=float)
            order[rng.choice(len(seqs), 20)] += rng.normal(0, 30, 20)  # some arrive late/early
            stream += [(r, s, seqs[i]) for i in np.argsort(order, kind="stable")]
    rng.shuffle(stream)  # interleave pairs (order within a pair is kept below)
    per_pair_order: dict = {}
    for r, s, q in stream:
        per_pair_order.setdefault((r, s), []).append(q)
    ordered = []
    cursors = {k: 0 for k in per_pair_order}
    keys = list(per_pair_order)
    while keys:
        k = keys[int(rng.integers(len(keys)))]
        ordered.append((k[0], k[1], per_pair_order[k][cursors[k]]))
        cursors[k] += 1
        if cursors[k] == len(per_pair_order[k]):
            keys.remove(k)
    # reference
    seen: dict = {}
    dup = reord = 0
    for r, s, q in ordered:
        got = seen.setdefault((r, s), [])
        if q in got:
            dup += 1
        else:
            if got and q < max(got):
                reord += 1
            got.append(q)
    lost = sum(n - len(v) for v in seen.values())
    # fed in random batch sizes
    i = 0
    while i < len(ordered):
        j = i + int(rng.integers(1, 200))
        chunk = np.array(ordered[i:j])
        acc.ingest(chunk[:, 0], chunk[:, 1], chunk[:, 2])
        i = j
    t = acc.totals()
    assert (acc.duplicated, acc.reordered) == (dup, reord)
    assert t.lost == lost
    assert t.delivered == sum(len(v) for v in seen.values())
    assert t.expected == n * 5 * 3


def test_saw_join_many_is_saw_join_for_each_observer() -> None:
    rng = np.random.default_rng(3)
    one = DeliveryAccounting(8, [0, 1, 2], list(range(8)))
    many = DeliveryAccounting(8, [0, 1, 2], list(range(8)))
    for joined in (1, 5, 7, 99):  # 99: not one of ours, ignored
        observers = rng.integers(0, 8, size=12)  # repeats and the joiner itself among them
        times = np.sort(rng.integers(0, 1000, size=12))
        for o, t in zip(observers.tolist(), times.tolist(), strict=True):
            if o != joined and joined < 8:
                one.saw_join(o, joined, t)
        many.saw_join_many(observers, joined, times)
    assert (one.obs == many.obs).all() and (one.r_saw == many.r_saw).all()
    assert (many.obs >= 0).any() and many.r_saw.any()


def test_teardown_after_a_short_drain_does_not_hide_end_of_run_losses() -> None:
    """Issue 10 item 1: a server that drops everything from t=9 s; drain 0.2 s; teardown closes all."""
    acc = everyone_online(3, [0], leave_margin_us=S)
    times = [i * 0.01 for i in range(1000)]  # 10 s of sends
    broadcast(acc, 0, times)
    delivered = [seq for seq, t in enumerate(times) if t < 9.0]
    for r in (1, 2):
        deliver(acc, r, 0, delivered)
    end = int(10.2 * S)  # the end of a 0.2 s drain
    acc.end(end)
    for c in range(3):
        acc.left(c, end + 1000)  # the teardown's closes
    t = acc.totals()
    dropped = 2 * sum(1 for t_s in times if t_s >= 9.0)
    assert (t.expected, t.lost) == (2 * len(times), dropped)
    assert t.delivered == 2 * len(delivered)


def test_a_receiver_that_left_during_the_run_keeps_its_leave_margin_after_the_end() -> None:
    acc = everyone_online(3, [0], leave_margin_us=S)
    broadcast(acc, 0, [i * 0.1 for i in range(100)])  # 0 .. 9.9 s
    deliver(acc, 1, 0, list(range(100)))
    deliver(acc, 2, 0, list(range(40)))  # receiver 2 left at 5 s: sends from 4 s on are not expected
    acc.left(2, 5 * S)
    acc.end(10 * S)
    t = acc.totals()
    assert (t.expected, t.lost) == (100 + 40, 0)


def test_receipts_of_two_processes_merge_to_one_accounting() -> None:
    """The Locust master merges workers' receipts with the core's export/merge, not by poking arrays."""
    whole, a, b, master = (everyone_online(4, [0]) for _ in range(4))
    for acc in (whole, a, b, master):
        broadcast(acc, 0, [i * 0.1 for i in range(20)])
    plan = {1: [s for s in range(20) if s != 4], 2: [0, 1, 3, 2, *range(4, 20)], 3: list(range(15))}
    for r, seqs in plan.items():
        deliver(whole, r, 0, seqs)
        deliver(a if r < 3 else b, r, 0, seqs)
    master.merge_receipts(a.export_receipts([1, 2]))
    master.merge_receipts(b.export_receipts([3]))
    assert master.totals() == whole.totals()
    assert (master.reordered, master.duplicated) == (whole.reordered, whole.duplicated) == (1, 0)


def test_a_later_receipt_state_of_a_process_replaces_its_earlier_one() -> None:
    """A Locust worker ships its receipts mid-run (a stage verdict) and again at the end: the master's
    accounting then equals one that saw every delivery, a hole filled since included."""
    whole, a, b, master = (everyone_online(4, [0]) for _ in range(4))
    for acc in (whole, a, b, master):
        broadcast(acc, 0, [i * 0.1 for i in range(20)])
    for acc, r in ((whole, 1), (a, 1), (whole, 3), (b, 3)):
        deliver(acc, r, 0, [s for s in range(10) if s != 4])  # a hole at 4
    early_a, early_b = a.export_receipts([1, 2]), b.export_receipts([3])
    master.merge_receipts(early_a)
    master.merge_receipts(early_b)
    assert master.totals(0, S) == whole.totals(0, S) and master.totals(0, S).lost == 1 + 10 + 1  # 2 got none yet
    for acc, r in ((whole, 1), (a, 1)):
        deliver(acc, r, 0, [4, *range(10, 20), 12])  # the hole filled (reordered), a duplicate
    for acc, r in ((whole, 2), (a, 2)):
        deliver(acc, r, 0, list(range(20)))
    master.merge_receipts(a.export_receipts([1, 2]), replacing=early_a)
    master.merge_receipts(b.export_receipts([3]), replacing=early_b)
    assert master.totals() == whole.totals()
    assert (master.delivered, master.reordered, master.duplicated) == (whole.delivered, 1, 1)
    assert master.holes == whole.holes
