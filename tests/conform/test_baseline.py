"""Known deviations: loading with file:line:key errors, and how they change verdicts."""

from __future__ import annotations

from pathlib import Path

import pytest

from wsbench.conform.baseline import (
    Baseline,
    Deviation,
    apply_baseline,
    default_baseline_path,
    framework_warnings,
    load_baseline,
)
from wsbench.conform.cases import BY_ID
from wsbench.conform.model import CaseResult
from wsbench.errors import ScenarioError, UsageError

GOOD = """\
deviations:
  - server: tornado
    case: framing.unmasked
    clause: "8.3"
    framework: tornado 6.6.1
    reason: accepted by WebSocketProtocol13
  - server: aiohttp
    case: limits.size.exact
    clause: 9.1
    framework: aiohttp 3.14.5
    reason: max_msg_size is exclusive
    upstream: https://example.invalid/issue/1
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "baseline.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_load_good_baseline(tmp_path: Path) -> None:
    baseline = load_baseline(write(tmp_path, GOOD), BY_ID)
    assert [(d.server, d.case, d.clause, d.line) for d in baseline.deviations] == [
        ("tornado", "framing.unmasked", "8.3", 2),
        ("aiohttp", "limits.size.exact", "9.1", 7),
    ]
    assert baseline.find("aiohttp", "limits.size.exact") is not None
    assert baseline.find("tornado", "limits.size.exact") is None


def test_the_shipped_baseline_loads() -> None:
    path = default_baseline_path()
    assert path is not None and path.name == "known-deviations.yaml"
    baseline = load_baseline(path, BY_ID)
    for d in baseline.deviations:
        assert d.reason and d.framework and d.server in ("tornado", "aiohttp")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD.replace("framing.unmasked", "framing.unmaskd"), r"baseline.yaml:3: deviations\[0\].case: no case"),
        (
            GOOD.replace('"8.3"', '"8.4"'),
            r"baseline.yaml:4: deviations\[0\].clause: case framing.unmasked checks SPEC 8.3",
        ),
        (
            GOOD.replace("    reason: max_msg_size is exclusive\n", ""),
            r"baseline.yaml:7: deviations\[1\].reason: Field required",
        ),
        (GOOD.replace("reason: accepted", "why: accepted"), r"deviations\[0\].why: Extra inputs"),
        (
            GOOD + GOOD.split("\n", 1)[1].split("  - server: aiohttp")[0],
            r"baseline.yaml:13: deviations\[2\]: tornado framing.unmasked is already listed at line 2",
        ),
        ("deviations: {}\n", r"baseline.yaml:1: deviations: expected a list"),
        ("- a\n", r"expected a mapping with one key"),
        ("deviations: [\n", r"baseline.yaml:2: \(yaml\)"),
    ],
)
def test_bad_baselines_name_file_line_and_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        load_baseline(write(tmp_path, text), BY_ID)


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read the baseline"):
        load_baseline(tmp_path / "nope.yaml", BY_ID)


def test_empty_file_is_an_empty_baseline(tmp_path: Path) -> None:
    assert load_baseline(write(tmp_path, "# nothing yet\n"), BY_ID).deviations == []


def result(case_id: str, verdict: str) -> CaseResult:
    case = BY_ID[case_id]
    return CaseResult("tornado", case.id, case.category, case.clause, case.rfc, case.title, "x", "seen", verdict)  # type: ignore[arg-type]


def baseline_of(*cases: str) -> Baseline:
    return Baseline(
        "b.yaml",
        [
            Deviation("tornado", c, BY_ID[c].clause, "tornado 6.6.1", "upstream says so", None, "b.yaml", i + 1)
            for i, c in enumerate(cases)
        ],
    )


def test_apply_turns_listed_failures_into_deviations_and_listed_passes_into_failures() -> None:
    results = [
        result("framing.unmasked", "fail"),
        result("framing.rsv1", "pass"),
        result("shutdown.sigterm", "skipped"),
        result("limits.binary", "fail"),
    ]
    warnings = apply_baseline(results, "tornado", baseline_of("framing.unmasked", "framing.rsv1", "shutdown.sigterm"))
    assert [r.verdict for r in results] == ["deviation", "fail", "skipped", "fail"]
    assert results[0].reason == "known deviation (tornado 6.6.1): upstream says so"
    assert (
        results[1].stale_baseline
        and "b.yaml:2" in (results[1].reason or "")
        and "passes now" in (results[1].reason or "")
    )
    assert not results[3].stale_baseline  # an unlisted failure stays a plain failure
    assert warnings == ["b.yaml:3: tornado shutdown.sigterm was skipped, so this baseline entry was not checked"]


def test_entries_of_other_servers_do_not_apply() -> None:
    results = [result("framing.unmasked", "fail")]
    apply_baseline(results, "aiohttp", baseline_of("framing.unmasked"))
    assert results[0].verdict == "fail"


def test_framework_version_warning() -> None:
    b = baseline_of("framing.unmasked")
    assert framework_warnings(b, "tornado", "6.6.1") == []
    assert "runs 6.7.0: re-check" in framework_warnings(b, "tornado", "6.7.0")[0]
    assert framework_warnings(b, "aiohttp", "9") == []
