"""The rich matrix: one column per server, categories as sections, a summary per server."""

from __future__ import annotations

from rich.console import Console

from wsbench.conform.model import CaseResult
from wsbench.conform.options import ServerOptions
from wsbench.conform.runner import Target, TargetReport
from wsbench.conform.table import counts, render


def report(label: str, verdicts: dict[str, str]) -> TargetReport:
    rep = TargetReport(
        Target(label, "embedded", ServerOptions(), kind=label), label, "http://127.0.0.1:1", duration_s=2.0
    )
    rep.results = [
        CaseResult(
            label,
            cid,
            cid.split(".")[0],
            "8.3",
            None,
            "t",
            "close 1002",
            f"{label} saw [bold]x[/]",
            v,
            reason="why" if v != "pass" else None,
        )  # type: ignore[arg-type]
        for cid, v in verdicts.items()
    ]
    return rep


def test_matrix_shows_every_server_and_verdict() -> None:
    a = report("tornado", {"framing.rsv1": "pass", "close.valid.1000": "deviation"})
    b = report("aiohttp", {"framing.rsv1": "fail", "shutdown.sigterm": "skipped"})
    console = Console(record=True, width=220)
    console.print(render([a, b]))
    out = console.export_text()
    for text in ("tornado", "aiohttp", "framing", "close", "shutdown", "FAIL", "known deviation", "skipped", "pass"):
        assert text in out
    assert "saw [bold]x[/]" in out  # observations are shown as text, never as markup
    assert "tornado (http://127.0.0.1:1): 1 pass, 0 fail, 1 known deviation(s), 0 skipped" in out
    assert "aiohttp (http://127.0.0.1:1): 0 pass, 1 fail" in out
    zero = {"pass": 0, "non-strict": 0, "informational": 0, "fail": 0, "deviation": 0, "skipped": 0}
    assert counts(b.results) == {**zero, "fail": 1, "skipped": 1}


def test_autobahn_style_verdicts_are_shown_and_counted() -> None:
    verdicts = {"framing.rsv1": "non-strict", "utf8.fail_fast.chops": "informational", "close.valid.1000": "pass"}
    a = report("ws", verdicts)
    console = Console(record=True, width=220)
    console.print(render([a]))
    out = console.export_text()
    assert "non-strict" in out and "informational" in out
    assert "ws (http://127.0.0.1:1): 1 pass, 1 non-strict, 1 informational, 0 fail" in out
