"""A comparison of two real short runs, Tornado against aiohttp, through ``wsbench compare SCENARIO``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.report.test_html import assert_self_contained
from wsbench.cli import main
from wsbench.core.results import read_results

pytestmark = pytest.mark.slow

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "broadcast.yaml"
SHORT = ["clients=20", "senders=4", "rate=100/s", "warmup=1s", "duration=3s", "drain=1s"]


def test_tornado_against_aiohttp(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    html = tmp_path / "compare.html"
    argv = ["compare", str(SCENARIO), "--server", "tornado", "--server", "aiohttp", "-o", str(tmp_path)]
    argv += [a for s in SHORT for a in ("--set", s)]
    argv += ["--json", "--html", str(html), "--threshold", "compare.loss <= 1x", "--threshold", "p99 < 1000x"]
    code = main(argv)
    out = capsys.readouterr().out
    data = json.loads(out)
    assert code == 0, data["thresholds"]
    assert [r["label"] for r in data["runs"]] == ["tornado", "aiohttp"]
    assert [r["status"] for r in data["runs"]] == ["completed", "completed"]
    for path in (r["path"] for r in data["runs"]):
        results = read_results(path)
        assert results.header["target"]["server"] in ("tornado", "aiohttp")
        assert Path(path).parent == tmp_path
    metrics = data["metrics"]
    # 4 senders x 100/s in total to 19 receivers each: about 1,900 deliveries/s for both servers
    for value in metrics["throughput"]["values"]:
        assert 1000 < value < 2500
    assert metrics["loss"]["values"] == [0.0, 0.0] and metrics["loss"]["verdicts"] == ["same"]
    # both reference servers report cpu_s in /stats (SPEC 5.1): CPU per delivery is theirs, not wsbench's
    assert metrics["cpu_per_delivery"]["title"].startswith("server ")
    for key in ("p50", "p99", "p99_9", "cpu_per_delivery", "rss"):
        values, ratio = metrics[key]["values"], metrics[key]["ratios"][0]
        assert all(v is not None and v > 0 for v in values), key
        assert ratio == pytest.approx(values[1] / values[0], rel=1e-4), key
        low, high = metrics[key]["intervals"][0]
        assert low <= ratio <= high, key
    assert data["headline"].startswith(("Faster: tornado", "Faster: aiohttp", "No run is faster"))
    page = html.read_text(encoding="utf-8")
    assert_self_contained(page)
    assert page.count('data-drawn="yes"') == 6
    assert "tornado / aiohttp" not in page and "aiohttp / tornado" in page
