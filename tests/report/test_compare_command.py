"""``wsbench compare`` on results files, through the real CLI entry point (in-process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wsbench.cli import main


def test_compare_files_prints_table_and_writes_html(
    tornado_file: Path, aiohttp_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "compare.html"
    code = main(["compare", str(tornado_file), str(aiohttp_file), "--html", str(out), "--threshold", "p50 < 1.1x"])
    assert code == 0
    text = capsys.readouterr().out
    assert "Comparison against tornado" in text and "aiohttp/tornado" in text
    assert "Faster: aiohttp" in text
    assert out.exists() and "Faster: aiohttp" in out.read_text(encoding="utf-8")


def test_failed_ratio_threshold_exits_1(
    tornado_file: Path, aiohttp_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # aiohttp lost 30 deliveries where the baseline lost none: a regression the gate must catch
    code = main(["compare", str(aiohttp_file), "--baseline", str(tornado_file), "--threshold", "compare.loss <= 1.0x"])
    assert code == 1
    assert "FAILED" in capsys.readouterr().out


def test_json_output(tornado_file: Path, aiohttp_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["compare", str(tornado_file), str(aiohttp_file), "--json", "--threshold", "compare.p50 < 0.9x"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["baseline"] == "tornado"
    assert [r["label"] for r in data["runs"]] == ["tornado", "aiohttp"]
    p50 = data["metrics"]["p50"]
    assert p50["winner"] == "aiohttp" and p50["verdicts"] == ["better"]
    assert 0.75 < p50["ratios"][0] < 0.85
    assert data["thresholds"][0]["passed"] is True
    assert set(data["metrics"]) == {"throughput", "p50", "p99", "p99_9", "loss", "cpu_per_delivery", "rss"}


def test_labels(tornado_file: Path, aiohttp_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(tornado_file), str(aiohttp_file), "--json", "--label", "old", "--label", "new"]) == 0
    assert json.loads(capsys.readouterr().out)["baseline"] == "old"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["compare", "A"], "at least two runs"),
        (["compare", "A", "missing.jsonl"], "no such results file"),
        (["compare", "A", "B", "--threshold", "p98 < 2x"], "unknown metric 'p98'"),
        (["compare", "A", "B", "--server", "tornado"], "apply to a scenario"),
        (["compare", "A", "B", "--repeat", "2"], "apply to a scenario"),
        (["compare", "scenario.yaml", "--server", "tornado", "--server", "aiohttp", "--repeat", "0"], "--repeat 0"),
        (["compare", "scenario.yaml", "--server", "tornado"], "at least 2 --server"),
        (["compare", "nothere.yaml", "--server", "tornado", "--server", "aiohttp"], "no such scenario file"),
        (["compare", "scenario.yaml", "A", "--server", "tornado", "--server", "aiohttp"], "either one scenario"),
        (["compare", "A", "C"], "conformance file holds no load run"),
    ],
)
def test_usage_errors_exit_2_with_a_clear_message(
    args: list[str],
    message: str,
    tornado_file: Path,
    aiohttp_file: Path,
    conformance_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "scenario.yaml").write_text("clients: 2\n")
    names = {"A": str(tornado_file), "B": str(aiohttp_file), "C": str(conformance_file)}
    assert main([names.get(a, a) for a in args]) == 2
    err = capsys.readouterr().err
    assert message in " ".join(err.split()), err
    assert "Traceback" not in err


def test_same_label_pools_files_as_repeats(
    tornado_file: Path, aiohttp_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.report.synthetic import write_run

    t2 = write_run(tmp_path / "t2.jsonl", server="tornado", seed=21, generator_bottleneck=True)
    a2 = write_run(tmp_path / "a2.jsonl", server="aiohttp", seed=22, base_ms=1.6)
    html = tmp_path / "pooled.html"
    files = [str(tornado_file), str(aiohttp_file), str(t2), str(a2)]
    labels = ["--label", "T", "--label", "A", "--label", "T", "--label", "A"]
    assert main(["compare", *files, *labels, "--json", "--html", str(html)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["label"] for r in data["runs"]] == ["T", "A"]
    assert [len(r["repeats"]) for r in data["runs"]] == [2, 2]
    page = html.read_text(encoding="utf-8")
    assert page.count('class="run"') == 4 and "T #2" in page and "A #1" in page
    top = page[page.index('id="warnings"') : page.index("</section>", page.index('id="warnings"'))]
    assert top.count("the generator was the bottleneck") == 1  # named once, by repeat
    assert "T #2: the generator was the bottleneck" in page


def test_label_count_must_match(tornado_file: Path, aiohttp_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(tornado_file), str(aiohttp_file), "--label", "x"]) == 2
    assert "give one per file" in capsys.readouterr().err


def test_an_incomplete_run_exits_3_after_comparing(
    tornado_file: Path, truncated_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compare", str(tornado_file), str(truncated_file)]) == 3
    out = capsys.readouterr().out
    assert "Comparison against tornado" in out and "no footer" in " ".join(out.split())
    # a failed ratio threshold still says 1: the regression is the news
    assert main(["compare", str(tornado_file), str(truncated_file), "--threshold", "p50 < 0.5x"]) == 1
