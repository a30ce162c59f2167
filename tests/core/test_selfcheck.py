"""The generator self-check (wsbench.core.selfcheck): what it added is said, a bottleneck only on evidence."""

from __future__ import annotations

from typing import Any

from wsbench.core import histograms
from wsbench.core.selfcheck import (
    BUSY_EVENT,
    BottleneckCheck,
    CpuWait,
    Signs,
    cpu_busy_ratio,
    cpu_wait,
    delay_thirds,
    judge,
    signs_from_rows,
)


def pct(p50: float | None, p99: float | None, count: int = 1000) -> dict[str, Any]:
    return {"count": count if p99 is not None else 0, "p50": p50, "p99": p99}


# the README's main job on a quiet machine (100 clients, 19,800 deliveries/s, generator CPU peak 36 %)
QUIET = {
    "latency": pct(2.00, 4.06),
    "socket": pct(1.34, 2.91),
    "delay": pct(0.68, 1.56),
    "socket_uncorrected": pct(1.25, 2.56),
    "send_lag": pct(0.06, 0.80),
}


def signs(**overrides: Any) -> Signs:
    return Signs(**{**QUIET, **overrides})


def test_a_quiet_generator_is_described_and_not_called_the_bottleneck() -> None:
    v = judge(signs(cpu_busy_ratio=0.0))
    assert v.self_check == "measured" and not v.bottleneck and v.detail is None and v.saturation == []
    assert v.added == (
        "the generator added p50 0.68 ms / p99 1.56 ms of its own on receipt (38% of the latency p99 4.06 ms) "
        "and sent p50 0.06 ms / p99 0.80 ms late; at the socket the server's latency was p50 1.34 ms / "
        "p99 2.91 ms (from the actual send: p50 1.25 ms / p99 2.56 ms)"
    )


def test_sustained_cpu_with_a_large_measured_share_is_the_bottleneck() -> None:
    v = judge(
        signs(
            latency=pct(22.0, 40.0),
            delay=pct(20.5, 37.0),
            cpu_busy_ratio=0.8,
            busy_events=[{"t_s": 4.0, "warning": BUSY_EVENT, "worker": "w2"}],
        )
    )
    assert v.bottleneck and v.saturation == ["its CPU was at 90% of a core or more in 80% of the measured intervals"]
    assert v.detail is not None and v.detail.startswith(
        "the generator was the bottleneck: its CPU was at 90% of a core or more in 80% of the measured intervals "
        "(at its limits first at 4 s; workers w2); the generator added p50 20.50 ms / p99 37.00 ms"
    )


def test_one_busy_interval_in_fifteen_is_not_sustained() -> None:
    v = judge(signs(latency=pct(22.0, 40.0), delay=pct(20.5, 37.0), cpu_busy_ratio=1 / 15))
    assert not v.bottleneck and v.saturation == []
    assert v.added is not None and "saturation" not in v.added


def test_a_saturated_generator_whose_share_is_small_is_named_but_not_the_bottleneck() -> None:
    # a slow server: 200 ms of latency, 2 ms of it the generator's
    v = judge(signs(latency=pct(150.0, 200.0), delay=pct(0.5, 2.0), cpu_busy_ratio=0.9))
    assert not v.bottleneck and v.detail is None and v.saturation
    assert v.added is not None
    assert v.added.endswith(
        "; it showed signs of saturation (its CPU was at 90% of a core or more in 90% of the measured intervals), "
        "but its own part (receive delay, send lag) stayed under 25% of the latency p99: not the bottleneck"
    )


def test_a_send_schedule_falling_behind_is_the_bottleneck_with_or_without_probes() -> None:
    late = pct(12.0, 45.0)
    v = judge(signs(latency=pct(15.0, 60.0), send_lag=late))
    assert v.bottleneck and v.saturation == ["its send schedule fell behind: send lag p99 45.00 ms"]
    blind = judge(Signs(latency=pct(15.0, 60.0), send_lag=late))
    assert blind.self_check == "estimated" and blind.added is None and blind.bottleneck
    assert blind.detail is not None and blind.detail.endswith(
        "its send lag p99 is 75% of the latency p99, its receive delay is not measured (no kernel-stamped probes)"
    )
    # the same lateness beside a latency p99 of two seconds is noise
    assert not judge(Signs(latency=pct(900.0, 2000.0), send_lag=late)).bottleneck


def test_one_late_send_does_not_make_the_schedule_fall_behind() -> None:
    assert not judge(signs(send_lag=pct(0.1, 3.0))).saturation


def test_a_growing_receive_delay_is_the_bottleneck() -> None:
    grew = signs(
        latency=pct(6.0, 14.0),
        delay=pct(3.0, 9.0),
        delay_first=pct(0.6, 1.5, count=300),
        delay_last=pct(5.5, 10.0, count=300),
    )
    v = judge(grew)
    assert v.bottleneck
    assert v.saturation == [
        "its own receive delay grew over the run: p50 0.60 ms in the first third, 5.50 ms in the last"
    ]
    # doubling below a millisecond, or from too few deliveries, is not growth
    assert not judge(signs(delay_first=pct(0.3, 1.0, 300), delay_last=pct(0.7, 1.5, 300))).saturation
    assert not judge(signs(delay_first=pct(0.6, 1.5, 10), delay_last=pct(5.5, 10.0, 10))).saturation


def test_without_probes_sustained_cpu_is_enough_and_says_the_share_is_unmeasured() -> None:
    v = judge(Signs(latency=pct(3.0, 9.0), cpu_busy_ratio=0.5))
    assert v.self_check == "estimated" and v.bottleneck
    assert v.detail is not None and v.detail.endswith(
        "its own share of the latency is not measured (no kernel-stamped probes)"
    )
    quiet = judge(Signs(latency=pct(3.0, 9.0), cpu_busy_ratio=0.1, send_lag=pct(0.1, 0.5)))
    assert not quiet.bottleneck and quiet.detail is None and quiet.added is None


def _row(start: float, cpu: float | None, n: int = 1, delay_us: list[int] | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"start_s": start, "end_s": start + n, "phase": "measure"}
    if cpu is not None:
        row["generator"] = {"cpu_pct_sum": cpu * n, "cpu_pct_n": n}
    if delay_us is not None:
        h = histograms.new_histogram()
        histograms.record_many(h, delay_us)
        row["histograms"] = {"generator_delay": histograms.encode(h)}
    return row


def test_cpu_busy_ratio_counts_full_intervals_and_folded_rows_by_their_mean() -> None:
    rows = [_row(0, 95.0), _row(1, 30.0), _row(2, None), _row(3, 92.0, n=2)]
    assert cpu_busy_ratio(rows) == 3 / 4
    assert cpu_busy_ratio([_row(0, None)]) is None


def test_signs_from_rows_compare_the_first_and_last_third_of_the_delay() -> None:
    rows = [_row(i, 40.0, delay_us=[500 + 800 * i] * 50) for i in range(9)]
    thirds = delay_thirds(rows)
    assert thirds is not None
    first, last = (histograms.summary_ms(h) for h in thirds)
    assert first["count"] == last["count"] == 150
    assert abs(float(first["p50"]) - 1.3) < 0.01 and abs(float(last["p50"]) - 6.1) < 0.01
    s = signs_from_rows(rows, pct(8.0, 12.0), {"generator_delay": pct(3.0, 7.0)}, {})
    assert s.cpu_busy_ratio == 0.0
    assert judge(s).saturation[0].startswith("its own receive delay grew over the run")
    assert delay_thirds(rows[:2]) is None


def test_the_per_interval_sign_is_written_once_per_process_and_only_for_measured_full_intervals() -> None:
    check = BottleneckCheck(interval_s=1.0)
    busy = {"phase": "measure", "start_s": 3.0, "end_s": 4.0, "generator": {"cpu_pct": 97.0}}
    assert check.check({**busy, "phase": "warmup"}) is None
    assert check.check({**busy, "start_s": 3.8}) is None  # too short to mean anything
    assert check.check({**busy, "generator": {"cpu_pct": 50.0, "loop_lag_ms_max": 2.0}}) is None
    first = check.check(busy, "w1")
    assert first == {
        "t_s": 4.0,
        "warning": "generator_busy",
        "detail": "the generator (w1) was at its limits in an interval: generator CPU at 97% of a core",
        "worker": "w1",
    }
    assert check.check(busy, "w1") is None
    assert check.check(busy, "w2") is not None


def _locust_file(path: Any, busy_worker: str | None) -> Any:
    """A two-worker results file as the Locust master writes it, each record through the per-worker sign."""
    from wsbench.core.results import ResultsWriter, read_results

    check = BottleneckCheck(interval_s=1.0)
    with ResultsWriter(path) as w:
        w.header(driver="locust", interval_s=1.0)
        for index in range(12):
            for worker in ("a", "b"):
                busy = worker == busy_worker
                delay_us = 20_000 + 1_000 * index if busy else 300
                lat, delay = histograms.new_histogram(), histograms.new_histogram()
                histograms.record_many(lat, [2_000 + delay_us] * 50)
                histograms.record_many(delay, [delay_us] * 10)
                record = {
                    "index": index,
                    "start_s": float(index),
                    "end_s": index + 1.0,
                    "phase": "measure",
                    "counters": {"sent": 1, "delivered": 50},
                    "histograms": {"latency": lat, "generator_delay": delay, "latency_socket": lat},
                    "generator": {"cpu_s": 0.97 if busy else 0.3, "cpu_pct": 97.0 if busy else 30.0},
                    "worker": worker,
                }
                w.interval(record)
                sign = check.check(record, worker)
                if sign is not None:
                    w.event("warning", sign.pop("t_s"), **sign)
        w.footer(status="completed")
    return read_results(path)


def test_a_locust_run_names_the_saturated_worker_and_spares_a_quiet_run(tmp_path: Any) -> None:
    from wsbench.core.summary import summarize

    s = summarize(_locust_file(tmp_path / "busy.jsonl", busy_worker="b"))
    g = s["generator"]
    assert g["bottleneck"] and g["cpu_busy_ratio"] == 1.0 and g["self_check"] == "measured"
    assert "(at its limits first at 1 s; workers b)" in g["bottleneck_detail"]
    assert g["bottleneck_detail"] in s["warnings"]
    quiet = summarize(_locust_file(tmp_path / "quiet.jsonl", busy_worker=None))
    assert not quiet["generator"]["bottleneck"] and quiet["generator"]["cpu_busy_ratio"] == 0.0
    assert not any("bottleneck" in w for w in quiet["warnings"])
    assert quiet["generator"]["delay_detail"].startswith("the generator added p50 0.30 ms / p99 0.30 ms")


def test_a_capacity_search_whose_deciding_stage_was_generator_bound_says_so(tmp_path: Any) -> None:
    from wsbench.core.results import ResultsWriter, read_results
    from wsbench.core.summary import generator_bound, summarize

    path = tmp_path / "search.jsonl"
    plan = [("step-1", 10, 100.0), ("step-2", 2, 400.0)]  # the top stage: 2 of 12 measured intervals
    scenario = {
        "search": {"thresholds": ["latency.p99 < 10ms"]},
        "resolved_stages": [{"name": n, "duration": float(d), "rate": r, "rate_to": None} for n, d, r in plan],
    }
    with ResultsWriter(path) as w:
        w.header(driver="asyncio", interval_s=1.0, scenario=scenario)
        index = 0
        for name, duration, _rate in plan:
            w.event("phase", float(index), name=name, phase_kind="measure")
            busy = name == "step-2"
            for _ in range(duration):
                delay_us = 30_000 if busy else 200
                lat, delay = histograms.new_histogram(), histograms.new_histogram()
                histograms.record_many(lat, [1_500 + delay_us] * 50)
                histograms.record_many(delay, [delay_us] * 10)
                w.interval(
                    {
                        "index": index,
                        "start_s": float(index),
                        "end_s": index + 1.0,
                        "phase": name,
                        "counters": {"sent": 1, "delivered": 50},
                        "histograms": {"latency": lat, "generator_delay": delay, "latency_socket": lat},
                        "generator": {"cpu_s": 0.98 if busy else 0.2, "cpu_pct": 98.0 if busy else 20.0},
                    }
                )
                index += 1
            w.event("threshold", float(index), stage=name, rate=_rate, passed=not busy, verdicts=[])
        w.footer(status="completed")
    s = summarize(read_results(path))
    assert not s["generator"]["bottleneck"]  # 2 busy intervals of 12: not the run as a whole
    top = s["stages"][1]
    assert [st["generator_bottleneck"] for st in s["stages"]] == [False, True]
    assert top["generator_detail"].startswith("the generator was the bottleneck: its CPU was at 90% of a core")
    assert f"in stage step-2: {top['generator_detail']}" in s["warnings"]
    assert s["capacity"]["stage_broke"] == "step-2" and generator_bound(s)
    assert not generator_bound({**s, "stages": [{**st, "generator_bottleneck": False} for st in s["stages"]]})


def test_a_generator_that_got_less_than_half_the_cpu_it_asked_for_is_starved() -> None:
    """The run-queue wait (wsbench.schedstat): ran 0.2 s, waited 0.8 s for a CPU, over 100 slices."""
    starved = CpuWait(wait_s=0.8, got_ratio=0.2, ms_per_slice=8.0)
    v = judge(signs(latency=pct(12.0, 30.0), delay=pct(9.0, 20.0), cpu_wait=starved))
    said = "its event loop got 20% of the CPU time it asked for, waiting 8.000 ms for a CPU each time it ran"
    assert v.saturation == [f"it was starved of CPU: {said}"]
    assert v.bottleneck and v.detail is not None
    assert v.detail.startswith("the generator was the bottleneck: it was starved")
    # the informational line says it on every run that has the figures, starved or not
    fed = judge(signs(cpu_wait=CpuWait(wait_s=0.01, got_ratio=0.97, ms_per_slice=0.02)))
    assert not fed.bottleneck and fed.saturation == []
    assert fed.added is not None and fed.added.endswith(
        "; its event loop got 97% of the CPU time it asked for, waiting 0.020 ms for a CPU each time it ran"
    )
    # at the limit it is not starved: half is the line (ran as long as it waited)
    assert judge(signs(cpu_wait=CpuWait(wait_s=1.0, got_ratio=0.5, ms_per_slice=1.0))).saturation == []
    # starved, but a slow server's latency dwarfs the generator's share: named, not the bottleneck
    slow = judge(signs(latency=pct(150.0, 200.0), delay=pct(0.9, 2.0), cpu_wait=starved))
    assert not slow.bottleneck and slow.added is not None and "signs of saturation (it was starved of CPU" in slow.added


def test_cpu_wait_sums_the_rows_and_is_absent_without_figures() -> None:
    rows = [
        {"generator": {"cpu_s": 0.3, "cpu_wait_s": 0.1, "cpu_slices": 40}},
        {"generator": {"cpu_s": 0.1, "cpu_wait_s": 0.5, "cpu_slices": 10}},
        {"generator": {"cpu_s": 5.0}},  # no figures (an old file, a kernel without schedstat): left out
    ]
    assert cpu_wait(rows) == CpuWait(wait_s=0.6, got_ratio=0.4, ms_per_slice=12.0)
    assert cpu_wait(rows[2:]) is None and cpu_wait([]) is None
    assert cpu_wait([{"generator": {"cpu_s": 0.0, "cpu_wait_s": 0.0, "cpu_slices": 0}}]) == CpuWait(0.0, None, None)
