import numpy as np

from wsbench.core.fanout import FanoutTracker


def test_fanout_is_intended_send_to_last_receiver() -> None:
    f = FanoutTracker(senders=2, timeout_us=1_000_000, capacity=2)
    for seq in range(5):  # grows past the initial capacity
        f.sent(0, seq, intended_us=1000 * seq, expected_receivers=3)
    f.sent(1, 0, intended_us=50, expected_receivers=1)
    f.delivered(np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0]), np.array([1100, 1500, 1300, 90]))
    f.delivered(np.array([0, 0]), np.array([1, 1]), np.array([2000, 2100]))
    done = f.collect(now_us=3000)
    assert sorted(done.fanout_us.tolist()) == [40, 1500]
    assert sorted(done.sender_index.tolist()) == [0, 1]
    assert f.pending() == 4  # 0/1 (two of three), 0/2..0/4
    f.delivered(np.array([0]), np.array([1]), np.array([2500]))
    assert f.collect(now_us=3000).fanout_us.tolist() == [1500]
    # given up after the timeout
    late = f.collect(now_us=10_000_000)
    assert len(late.expired_sender_index) == 3 and f.incomplete == 3
    assert f.pending() == 0


def test_messages_without_receivers_complete_without_a_fanout_time() -> None:
    f = FanoutTracker(senders=1)
    f.sent(0, 0, intended_us=10, expected_receivers=0)
    done = f.collect(now_us=20)
    assert done.sender_index.tolist() == [0] and len(done.fanout_us) == 0


def test_deliveries_of_unknown_messages_are_ignored() -> None:
    f = FanoutTracker(senders=1)
    f.sent(0, 0, intended_us=10, expected_receivers=1)
    f.delivered(np.array([0, 0, -1]), np.array([5, 0, 0]), np.array([100, 30, 40]))
    assert f.collect(now_us=100).fanout_us.tolist() == [20]


def test_batched_updates_equal_per_delivery_updates() -> None:
    rng = np.random.default_rng(2)
    f = FanoutTracker(senders=4, capacity=64)
    got = np.zeros((4, 600), dtype=np.int64)
    last = np.zeros((4, 600), dtype=np.int64)
    for s in range(4):
        for q in range(600):
            f.sent(s, q, intended_us=q, expected_receivers=50)
    for b in range(60):
        si = rng.integers(0, 4, 300)
        sq = rng.integers(b * 9, b * 9 + 60, 300) % 600
        recv = rng.integers(0, 10**9, 300)
        f.delivered(si, sq, recv)
        for s, q, r in zip(si, sq, recv, strict=True):
            got[s, q] += 1
            last[s, q] = max(last[s, q], r)
    assert np.array_equal(f.got[:, :600], got) and np.array_equal(f.last[:, :600], last)
