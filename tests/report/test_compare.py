from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.report.synthetic import write_run
from wsbench.core.results import read_results
from wsbench.errors import UsageError
from wsbench.report.compare import Comparison, compare_runs, load_runs


def _compare(*paths: Path, labels: list[str | None] | None = None) -> Comparison:
    return compare_runs(load_runs([read_results(p) for p in paths], labels))


def test_ratios_values_and_winner(tornado_file: Path, aiohttp_file: Path) -> None:
    c = _compare(tornado_file, aiohttp_file)
    assert c.labels == ["tornado", "aiohttp"]
    p50 = c.row("p50")
    base, other = p50.cells
    assert base.verdict == "baseline"
    assert other.ratio == pytest.approx(other.value / base.value)
    assert 0.75 < other.ratio < 0.85  # 1.6 ms against 2.0 ms lognormal medians
    assert other.verdict == "better" and p50.winner == 1 and not p50.winner_within_noise
    assert other.low <= other.ratio <= other.high and other.high < 1.0
    # loss: 0 against 30 lost is infinitely worse, and beyond noise
    loss = c.row("loss").cells[1]
    assert math.isinf(loss.ratio) and loss.verdict == "worse"
    assert c.row("loss").winner == 0
    # RSS: 30 MiB against 40 MiB
    rss = c.row("rss").cells[1]
    assert 0.7 < rss.ratio < 0.8 and rss.verdict == "better"
    assert c.headline().startswith("Faster: aiohttp. Latency, run / base as in the table: aiohttp / tornado p50 0.80x")


def test_identical_runs_are_the_same(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a.jsonl", seed=7)
    b = write_run(tmp_path / "b.jsonl", seed=7)
    c = _compare(a, b)
    for row in c.rows:
        cell = row.cells[1]
        assert cell.ratio == 1.0, row.spec.key
        assert cell.verdict == "same"
        assert row.winner is None
    assert c.headline().startswith("No latency difference") or "within the measured noise" in c.headline()


def test_noise_mark_is_calibrated_on_runs_from_one_distribution(tmp_path: Path) -> None:
    """Runs drawn from the same distribution are judged 'within noise' (95% intervals: ~1 in 20 is not);
    a 10 % shift of the median is always detected."""
    noise_p50 = noise_p99 = 0
    pairs = 8
    for k in range(pairs):
        a = write_run(tmp_path / f"a{k}.jsonl", seed=100 + k, stall_every=0)
        b = write_run(tmp_path / f"b{k}.jsonl", seed=200 + k, stall_every=0)
        c = _compare(a, b)
        noise_p50 += c.row("p50").cells[1].within_noise
        noise_p99 += c.row("p99").cells[1].within_noise
        shifted = write_run(tmp_path / f"s{k}.jsonl", seed=300 + k, stall_every=0, base_ms=2.2)
        s = _compare(a, shifted)
        assert s.row("p50").cells[1].verdict == "worse"
        assert s.row("p50").winner == 0
    assert noise_p50 >= pairs - 2
    assert noise_p99 >= pairs - 2


def test_stalls_make_the_tail_noisy(tornado_file: Path, tmp_path: Path) -> None:
    """With 500 ms-class stalls in some intervals, p99.9 depends on which intervals a run had: a p99.9
    ratio is within noise even when its value differs by a lot."""
    other = write_run(tmp_path / "o.jsonl", seed=11, stall_every=5)
    cell = _compare(tornado_file, other).row("p99_9").cells[1]
    assert cell.within_noise
    assert cell.high / cell.low > 2


def test_comparison_is_reproducible(tornado_file: Path, aiohttp_file: Path) -> None:
    first = _compare(tornado_file, aiohttp_file).to_dict()
    second = _compare(tornado_file, aiohttp_file).to_dict()
    assert first == second
    assert first["metrics"]["loss"]["ratios"] == [None] and first["metrics"]["loss"]["ratio_infinite"] == [True]


def test_three_runs_and_duplicate_labels(tmp_path: Path, tornado_file: Path, aiohttp_file: Path) -> None:
    again = write_run(tmp_path / "again.jsonl", server="tornado", seed=5)
    c = _compare(tornado_file, aiohttp_file, again)
    assert c.labels == ["tornado (tornado)", "aiohttp", "tornado (again)"]
    assert len(c.row("p50").cells) == 3
    assert c.row("p50").winner == 1
    c = _compare(tornado_file, again, labels=["old", "new"])
    assert c.labels == ["old", "new"]


def test_truncated_run_still_compares_with_a_warning(tornado_file: Path, truncated_file: Path) -> None:
    c = _compare(tornado_file, truncated_file)
    assert any("no footer" in w for w in c.warnings)
    assert any("cut short" in w for w in c.warnings)
    assert c.row("p50").cells[1].value is not None
    assert c.row("loss").cells[1].value is not None  # from the intervals, as far as they go


def test_missing_server_samples(tornado_file: Path, tmp_path: Path) -> None:
    bare = write_run(tmp_path / "bare.jsonl", seed=4, with_server_samples=False)
    c = _compare(tornado_file, bare)
    assert c.row("rss").cells[1].value is None and c.row("rss").cells[1].verdict == "n/a"
    assert c.row("rss").winner is None
    c = _compare(bare, bare)
    assert c.row("rss").note == "no /stats samples"


def test_needs_two_load_runs(tornado_file: Path, conformance_file: Path) -> None:
    with pytest.raises(UsageError, match="at least two"):
        compare_runs(load_runs([read_results(tornado_file)]))
    with pytest.raises(UsageError, match="conformance file holds no load run"):
        _compare(tornado_file, conformance_file)


def test_repeats_are_pooled_and_their_spread_counts_as_noise(tmp_path: Path) -> None:
    """One repeat of each run drew a busy machine (+20 % latency). Judged on one repeat each, the
    difference looks real; pooled over two interleaved repeats, the between-repeat spread enters the
    interval and the difference is (rightly) within noise."""
    a1 = write_run(tmp_path / "a1.jsonl", base_ms=2.0, seed=1, stall_every=0)
    a2 = write_run(tmp_path / "a2.jsonl", base_ms=2.4, seed=2, stall_every=0)
    b1 = write_run(tmp_path / "b1.jsonl", server="aiohttp", base_ms=2.4, seed=3, stall_every=0)
    b2 = write_run(tmp_path / "b2.jsonl", server="aiohttp", base_ms=2.0, seed=4, stall_every=0)
    single = _compare(a1, b1).row("p50").cells[1]
    assert single.verdict == "worse" and single.ratio > 1.15
    results = [read_results(p) for p in (a1, b1, a2, b2)]
    pooled = compare_runs(load_runs(results, ["tornado", "aiohttp", "tornado", "aiohttp"]))
    assert pooled.labels == ["tornado", "aiohttp"]
    assert [len(run.parts) for run in pooled.runs] == [2, 2]
    cell = pooled.row("p50").cells[1]
    assert cell.within_noise and cell.low < 1.0 < cell.high
    # the pooled value is the percentile of the merged histograms of both repeats
    from wsbench.core import histograms

    merged = histograms.merge([read_results(a1).histogram("latency"), read_results(a2).histogram("latency")])
    assert pooled.row("p99").cells[0].value == histograms.summary_ms(merged)["p99"]
    lost, expected = pooled.runs[0].parts[0].footer["accounting"], pooled.runs[0].parts[1].footer["accounting"]
    assert pooled.row("loss").cells[0].value == 100.0 * (lost["lost"] + expected["lost"]) / (
        lost["expected"] + expected["expected"]
    )
    assert pooled.to_dict()["runs"][0]["repeats"][1]["path"].endswith("a2.jsonl")


def test_a_file_name_yields_to_a_given_label(tmp_path: Path, tornado_file: Path) -> None:
    other = write_run(tmp_path / "other.jsonl", server="tornado", seed=9)
    c = compare_runs(load_runs([read_results(tornado_file), read_results(other)], [None, "tornado"]))
    assert c.labels == ["tornado (tornado)", "tornado"]


def test_a_broken_run_is_compared_with_a_warning(tmp_path: Path, tornado_file: Path) -> None:
    import json

    broken = tmp_path / "broken.jsonl"
    lines = write_run(tmp_path / "b.jsonl", seed=8).read_text().splitlines()
    footer = json.loads(lines[-1])
    footer.update(status="broken", reason="server died")
    broken.write_text("\n".join([*lines[:-1], json.dumps(footer)]) + "\n")
    c = _compare(tornado_file, broken)
    assert any("broken (server died)" in w for w in c.warnings)
    assert "--repeat 3" in c.method


def test_headline_warns_when_the_generator_was_the_bottleneck(tmp_path: Path, aiohttp_file: Path) -> None:
    busy = write_run(tmp_path / "busy.jsonl", server="tornado", seed=1, generator_bottleneck=True)
    c = _compare(busy, aiohttp_file)
    assert c.generator_bound == ["tornado"]
    assert c.headline().startswith("Faster: aiohttp.")
    assert "Caveat: the load generator was the bottleneck during tornado" in c.headline()
    assert (
        "tornado: the generator was the bottleneck: its CPU was at 90% of a core or more in 100% of the measured "
        "intervals (at its limits first at 5 s); its own share of the latency is not measured (no kernel-stamped "
        "probes)"
    ) in c.warnings
    assert "Caveat" not in _compare(aiohttp_file, aiohttp_file).headline()


def test_cpu_per_delivery_is_the_servers_when_every_run_reports_cpu_s(tmp_path: Path) -> None:
    # cumulative /stats cpu_s growing by 0.20 s and 0.30 s per 1-second interval; the same deliveries
    lean = write_run(tmp_path / "lean.jsonl", seed=3, server_cpu_pct=20.0)
    heavy = write_run(tmp_path / "heavy.jsonl", seed=3, server_cpu_pct=30.0)
    c = _compare(lean, heavy)
    row = c.row("cpu_per_delivery")
    assert row.spec.title.startswith("server ")
    base, other = row.cells
    assert other.ratio == pytest.approx(1.5, rel=1e-3) and other.verdict == "worse" and row.winner == 0
    run = load_runs([read_results(lean)])[0]
    delivered = run.counters["delivered"][run.measured]
    assert base.value == pytest.approx(0.2e6 * delivered.size / delivered.sum(), rel=1e-3)
    # one run without cpu_s: both fall back to the generator's CPU, said in the title
    bare = write_run(tmp_path / "bare.jsonl", seed=3)
    assert _compare(lean, bare).row("cpu_per_delivery").spec.title.startswith("gen. ")


def _headline_ratios(c: Comparison) -> list[tuple[str, str, str, float]]:
    """Every ``RUN / BASE [KEY] RATIOx`` the headline states: (run, base, key, ratio)."""
    import re

    out = []
    text = c.headline()
    for clause in re.split(r"[;:] ", text):
        m = re.search(r"(\S+(?: \(\d+\))?) / (\S+(?: \(\d+\))?) (.*)", clause)
        if not m:
            continue
        run, base, rest = m.groups()
        key = None
        for word in re.findall(r"(p50|p99)? ?([\d.]+)x", rest):
            key = word[0] or key or ("p99" if "latency p99" in text else "p50")
            out.append((run, base, key, float(word[1])))
    return out


@pytest.mark.parametrize("order", ["base slower", "base faster", "same server twice"])
def test_the_headline_states_every_ratio_as_the_table_does(
    tornado_file: Path, aiohttp_file: Path, tmp_path: Path, order: str
) -> None:
    """Issue 15: an A/A comparison's table gave ``aiohttp (2) / aiohttp`` = 1.06x for p99 while the
    headline said ``aiohttp vs aiohttp (2) 0.95x``. Every ratio in the headline is run / base now."""
    if order == "base slower":
        c = _compare(tornado_file, aiohttp_file)
    elif order == "base faster":
        c = _compare(aiohttp_file, tornado_file)
        assert c.headline().startswith("Faster: aiohttp (the base).")
    else:
        a = write_run(tmp_path / "a.jsonl", seed=3)
        b = write_run(tmp_path / "b.jsonl", seed=4)
        c = _compare(a, b, labels=["aiohttp", "aiohttp (2)"])
    stated = _headline_ratios(c)
    assert stated, c.headline()
    for run, base, key, value in stated:
        assert base == c.labels[0], c.headline()
        cell = c.row(key).cells[c.labels.index(run)]
        assert value == pytest.approx(round(cell.ratio, 2)), (c.headline(), key, cell.ratio)
