import random

import pytest

from wsbench.core import histograms as h


def test_batch_recorder_matches_record_value_exactly() -> None:
    rng = random.Random(7)
    values = [int(rng.expovariate(1 / 800)) for _ in range(20_000)] + [0, 1, 2047, 2048, 59_999_999, h.HIGHEST_US]
    reference = h.new_histogram()
    for v in values:
        reference.record_value(v)
    recorder = h.BatchRecorder()
    for v in values:
        recorder.add(v)
    assert len(recorder) == len(values)
    batch = recorder.take()
    assert h.same_counts(reference, batch)
    assert batch.get_max_value() == reference.get_max_value()
    assert batch.get_min_value() == reference.get_min_value()
    assert len(recorder) == 0  # take() starts a new interval


def test_out_of_range_values_are_clamped_and_counted() -> None:
    recorder = h.BatchRecorder()
    for v in (-5, 10, h.HIGHEST_US + 1_000_000):
        recorder.add(v)
    hist = recorder.take()
    assert recorder.clamped == 2
    assert hist.get_total_count() == 3
    assert hist.get_value_at_percentile(100) >= h.HIGHEST_US


def test_encode_decode_and_merge_are_exact() -> None:
    a, b = h.new_histogram(), h.new_histogram()
    h.record_many(a, list(range(1, 1001)))
    h.record_many(b, [5000] * 1000)
    merged = h.merge([h.encode(a), b, None])
    assert merged.get_total_count() == 2000
    assert h.same_counts(h.decode(h.encode(merged)), merged)
    summary = h.summary_ms(merged)
    assert summary["p50"] == pytest.approx(1.0, abs=0.001)
    assert summary["p99"] == pytest.approx(5.0, rel=0.001)
    assert summary["count"] == 2000


def test_summary_of_empty_histogram_has_no_numbers() -> None:
    summary = h.summary_ms(h.new_histogram())
    assert summary["count"] == 0 and summary["p99"] is None and summary["max"] is None


def test_percentile_distribution_reaches_the_tail() -> None:
    hist = h.new_histogram()
    h.record_many(hist, list(range(1, 100_001)))
    points = h.percentile_distribution(hist)
    assert points[0][0] <= 1.0
    assert points[-1][0] == pytest.approx(100.0)
    assert points[-1][1] == pytest.approx(100.0, rel=0.001)


def test_vectorized_percentiles_and_mean_equal_hdrh() -> None:
    import numpy as np

    rng = np.random.default_rng(5)
    for _ in range(20):
        hist = h.new_histogram()
        n = int(rng.integers(1, 20000))
        values = rng.lognormal(rng.uniform(0, 14), rng.uniform(0.1, 3), n).astype(np.int64)
        h.record_many(hist, np.clip(values, 0, h.HIGHEST_US))
        ps = [0.0, 1.0, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0]
        assert h.percentiles_us(hist, ps) == [hist.get_value_at_percentile(p) for p in ps]
        assert h.mean_us(hist) == pytest.approx(hist.get_mean_value(), rel=1e-12)


def test_adding_an_empty_interval_keeps_the_minimum() -> None:
    """Issue 10 item 7: a stage whose intervals include an empty one reports its true minimum."""
    from wsbench.core import histograms as hg

    stage = hg.new_histogram()
    full = hg.new_histogram()
    hg.record_many(full, [5_000, 7_000])
    for part in (hg.new_histogram(), full, hg.new_histogram()):
        hg.add(stage, part)
    assert hg.summary_ms(stage)["min"] == 5.0
    assert stage.get_total_count() == 2
