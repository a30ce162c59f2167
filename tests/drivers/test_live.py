import io

from rich.console import Console

from wsbench.drivers.live import LiveView


def test_live_view_renders_progress() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with LiveView("broadcast", console) as view:
        view.update(
            {
                "phase": "measure",
                "elapsed_s": 5.0,
                "total_s": 20.0,
                "sent_rate": 200.0,
                "delivery_rate": 19800.0,
                "p50_ms": 1.5,
                "p99_ms": 8.25,
                "errors": 0,
                "clients": 100,
                "clients_total": 100,
                "cpu_pct": 23.0,
            }
        )
        rendered = view._render()
    text = Console(file=io.StringIO(), width=100, record=True)
    text.print(rendered)
    shown = text.export_text()
    for expected in ("broadcast", "measure", "100/100", "19,800/s", "8.25 ms", "23%", "5 / 20 s"):
        assert expected in shown, shown
    assert view.worst_p99 == 8.25
