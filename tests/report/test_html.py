from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.report.synthetic import write_run
from wsbench.core.results import read_results
from wsbench.report.compare import compare_runs, load_runs
from wsbench.report.compare_thresholds import RatioThreshold, evaluate_thresholds
from wsbench.report.html import render_comparison, render_report, write_html

MAX_BYTES = 600_000  # small enough to attach to a CI run


def assert_self_contained(html: str) -> None:
    """Nothing in the page points outside it: no script, no stylesheet link, no src, only #fragment hrefs."""
    assert "<script" not in html.lower()
    assert "<link" not in html.lower()
    assert not re.search(r"<[a-z][^>]*\ssrc\s*=", html, re.IGNORECASE)
    assert "@import" not in html
    assert not re.search(r"url\(\s*['\"]?(?!#)", html), "CSS url() other than a #fragment"
    for href in re.findall(r'href="([^"]*)"', html):
        assert href.startswith("#"), href


def test_run_report(tornado_file: Path) -> None:
    html = render_report(read_results(tornado_file))
    assert_self_contained(html)
    assert len(html.encode()) < MAX_BYTES
    assert html.count('data-drawn="yes"') == 6 and 'data-drawn="no"' not in html
    for section in (
        "Thresholds",
        "Latency percentiles (ms)",
        "Delivery accounting",
        "Close codes and errors",
        "Generator and server",
        "Target",
        "Versions",
        "Scenario as resolved",
    ):
        assert section in html, section
    assert "latency.p99 &lt; 50ms" in html
    assert '<span class="badge completed">completed</span>' in html
    assert 'id="warnings"' not in html
    assert "38,000" in html  # deliveries delivered, from the footer's accounting
    assert '<td>error</td><td>timeout</td><td class="num">1</td>' in html  # an error event, by kind
    assert "<td>close</td><td>1000</td>" in html


def test_truncated_report_renders_with_a_visible_warning(truncated_file: Path) -> None:
    html = render_report(read_results(truncated_file))
    assert '<span class="badge truncated">truncated</span>' in html
    warnings = html[html.index('id="warnings"') : html.index("</section>", html.index('id="warnings"'))]
    assert "no footer" in warnings and "cut short" in warnings
    assert "losses unknown" in html and "losses are unknown: the run has no footer" in warnings
    assert html.count('data-drawn="yes"') == 6


def test_conformance_matrix(conformance_file: Path) -> None:
    html = render_report(read_results(conformance_file))
    assert_self_contained(html)
    assert "Conformance matrix" in html and 'id="plots"' not in html
    matrix = html[html.index('class="matrix"') :]
    assert "<th>tornado</th><th>aiohttp</th>" in matrix
    assert matrix.count('<td class="pass"') == 10 and matrix.count('<td class="fail"') == 2  # 1 + its detail row
    assert matrix.count('<td class="deviation"') == 2
    assert "Cases that did not pass" in html


def test_text_from_the_file_is_escaped(tmp_path: Path) -> None:
    evil = '<img src=x onerror="alert(1)">'
    a = write_run(tmp_path / "a.jsonl", server=evil, seed=1)
    b = write_run(tmp_path / "b.jsonl", server="aiohttp", seed=2)
    html = render_report(read_results(a))
    assert evil not in html and "&lt;img src=x" in html
    comparison = compare_runs(load_runs([read_results(a), read_results(b)]))
    html = render_comparison(comparison)
    assert evil not in html
    assert_self_contained(html)


def test_comparison_report(tornado_file: Path, aiohttp_file: Path, tmp_path: Path) -> None:
    comparison = compare_runs(load_runs([read_results(tornado_file), read_results(aiohttp_file)]))
    verdicts = evaluate_thresholds(comparison, [RatioThreshold.parse("compare.p99 < 1.1x")])
    html = render_comparison(comparison, verdicts)
    assert_self_contained(html)
    assert len(html.encode()) < MAX_BYTES
    assert "Faster: aiohttp" in html
    ratios = html[html.index('id="ratios"') : html.index("</section>", html.index('id="ratios"'))]
    assert '<td class="better">0.80x [0.80–0.81]</td>' in ratios
    assert "≈" in ratios and "bootstrap" in ratios
    assert "compare.p99 &lt; 1.1x" in ratios
    assert html.count('data-drawn="yes"') == 6
    assert html.count('class="run"') == 2
    out = write_html(html, tmp_path / "sub" / "compare.html")
    assert out.read_text(encoding="utf-8") == html


@pytest.mark.parametrize("with_server_samples", [False])
def test_plot_without_data_says_why(tmp_path: Path, with_server_samples: bool) -> None:
    path = write_run(tmp_path / "r.jsonl", with_server_samples=with_server_samples)
    html = render_report(read_results(path))
    assert html.count('data-drawn="no"') == 1
    assert "Nothing to draw: the target offered no /stats samples." in html


def test_conformance_matrix_of_a_real_conform_run(tmp_path: Path) -> None:
    """The matrix from what `wsbench conform` really writes (two reference servers, a quick subset)."""
    from wsbench.cli import main

    out = tmp_path / "conform.jsonl"
    assert main(["conform", "--server", "tornado", "--server", "aiohttp", "--only", "http,login", "-o", str(out)]) == 0
    results = read_results(out)
    html = render_report(results)
    assert_self_contained(html)
    assert "wsbench conformance: tornado, aiohttp" in html
    matrix = html[html.index('class="matrix"') :]
    assert "<th>tornado</th><th>aiohttp</th>" in matrix
    assert matrix.count('<td class="pass"') == len(results.cases)
    assert "http.not_found" in matrix and "Target tornado" in html and "Target aiohttp" in html


def test_wsbench_report_html_option(truncated_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from wsbench.cli import main

    out = tmp_path / "out" / "report.html"
    assert main(["report", str(truncated_file), "--html", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    assert f"HTML report: {out}" in captured.err
    assert '"status": "truncated"' in captured.out  # --json output stays pure JSON on stdout
    html = out.read_text(encoding="utf-8")
    assert 'id="warnings"' in html and "no footer" in html


def test_the_server_growth_names_its_span_or_why_there_is_none(tmp_path: Path) -> None:
    short = render_report(read_results(write_run(tmp_path / "short.jsonl")))
    assert re.search(r"<td>server growth</td><td[^>]*>too short to estimate drift \(10 s, 11 samples", short)
    assert "server RSS growth" not in short
    long = render_report(read_results(write_run(tmp_path / "long.jsonl", measure_intervals=60, drift_min_span=30)))
    assert "server RSS growth (MiB/h over 60 s, Theil-Sen, 95% interval)" in long
    assert "too short to estimate drift" not in long
